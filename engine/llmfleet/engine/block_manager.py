"""The paged KV cache's bookkeeping: which blocks each sequence owns, and prefix caching.

No torch here: blocks are integers indexing the preallocated cache tensors that
the model runner owns. Invariants:

| block state          | ref_count | in `_free_uncached` | in `_free_cached` (LRU) | in `_by_hash` |
| -------------------- | --------- | ------------------- | ----------------------- | ------------- |
| free, never filled   | 0         | yes                 | no                      | no            |
| free, holds a prefix | 0         | no                  | yes                     | yes           |
| in use               | >= 1      | no                  | no                      | if full       |

A full block is keyed by a chained hash: sha256(parent block's hash, its token ids),
so a key names the whole prefix up to that block's end, not just its own tokens.
Free cached blocks are reused by later requests with the same prefix, and are
evicted least-recently-freed first when a fresh block is needed.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict, deque

from .sequence import Sequence

ROOT_HASH = b""


def block_hash(parent: bytes, token_ids: list[int]) -> bytes:
    return hashlib.sha256(parent + array("q", token_ids).tobytes()).digest()


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.ref_count = [0] * num_blocks
        self.hash_of: list[bytes | None] = [None] * num_blocks
        self._free_uncached: deque[int] = deque(range(num_blocks))
        self._free_cached: OrderedDict[int, None] = OrderedDict()
        self._by_hash: dict[bytes, int] = {}
        # per sequence: hashes of its full blocks so far (chain state)
        self._seq_hashes: dict[int, list[bytes]] = {}
        # counters for metrics: prompt tokens looked up in the prefix cache, and found
        self.prefix_queries = 0
        self.prefix_hits = 0

    # -- capacity ---------------------------------------------------------------------------
    @property
    def num_free_blocks(self) -> int:
        return len(self._free_uncached) + len(self._free_cached)

    @property
    def usage(self) -> float:
        """Fraction of blocks held by live sequences (free cached blocks count as free)."""
        return 1.0 - self.num_free_blocks / self.num_blocks

    def blocks_needed(self, seq: Sequence, num_new_tokens: int) -> int:
        total = -(-(seq.num_computed_tokens + num_new_tokens) // self.block_size)
        return max(0, total - len(seq.block_table))

    def can_allocate(self, seq: Sequence, num_new_tokens: int) -> bool:
        return self.blocks_needed(seq, num_new_tokens) <= self.num_free_blocks

    # -- prefix cache --------------------------------------------------------------------------
    def match_prefix(self, seq: Sequence) -> int:
        """Attach cached blocks for the longest cached prefix of a sequence that owns no blocks.

        Returns the number of tokens found. At least one token is always left to
        compute, since the last prompt token's logits are needed to sample.
        """
        assert not seq.block_table and seq.num_computed_tokens == 0
        self._seq_hashes[seq.seq_id] = []
        if not self.enable_prefix_caching:
            return 0
        bs = self.block_size
        max_blocks = (len(seq.token_ids) - 1) // bs
        parent = ROOT_HASH
        hits = 0
        for i in range(max_blocks):
            h = block_hash(parent, seq.token_ids[i * bs:(i + 1) * bs])
            block = self._by_hash.get(h)
            if block is None:
                break
            self._take(block)
            seq.block_table.append(block)
            self._seq_hashes[seq.seq_id].append(h)
            parent = h
            hits += 1
        seq.num_computed_tokens = hits * bs
        seq.num_cached_tokens = hits * bs
        self.prefix_queries += len(seq.token_ids)
        self.prefix_hits += hits * bs
        return hits * bs

    def _take(self, block: int) -> None:
        if self.ref_count[block] == 0:
            self._free_cached.pop(block, None)
        self.ref_count[block] += 1

    # -- allocation --------------------------------------------------------------------------
    def allocate(self, seq: Sequence, num_new_tokens: int) -> None:
        """Give the sequence enough blocks to hold num_new_tokens more computed tokens."""
        need = self.blocks_needed(seq, num_new_tokens)
        if need > self.num_free_blocks:
            raise RuntimeError("allocate() called without can_allocate(): out of KV blocks")
        self._seq_hashes.setdefault(seq.seq_id, [])
        for _ in range(need):
            seq.block_table.append(self._pop_free())

    def _pop_free(self) -> int:
        if self._free_uncached:
            block = self._free_uncached.popleft()
        else:  # evict the least recently freed cached prefix block
            block, _ = self._free_cached.popitem(last=False)
            h = self.hash_of[block]
            if h is not None and self._by_hash.get(h) == block:
                del self._by_hash[h]
            self.hash_of[block] = None
        self.ref_count[block] = 1
        return block

    def commit_computed(self, seq: Sequence) -> None:
        """Register the sequence's newly filled blocks in the prefix cache (after a model step)."""
        if not self.enable_prefix_caching:
            return
        hashes = self._seq_hashes.setdefault(seq.seq_id, [])
        bs = self.block_size
        full = seq.num_computed_tokens // bs
        while len(hashes) < full:
            i = len(hashes)
            parent = hashes[-1] if hashes else ROOT_HASH
            h = block_hash(parent, seq.token_ids[i * bs:(i + 1) * bs])
            hashes.append(h)
            block = seq.block_table[i]
            if self.hash_of[block] is None and h not in self._by_hash:
                self.hash_of[block] = h
                self._by_hash[h] = block

    def free(self, seq: Sequence) -> None:
        """Return a sequence's blocks; full ones stay cached until evicted. Tail blocks go first."""
        for block in reversed(seq.block_table):
            self.ref_count[block] -= 1
            assert self.ref_count[block] >= 0
            if self.ref_count[block] == 0:
                if self.hash_of[block] is not None:
                    self._free_cached[block] = None
                else:
                    self._free_uncached.append(block)
        seq.block_table = []
        seq.num_computed_tokens = 0
        self._seq_hashes.pop(seq.seq_id, None)

    def reset_prefix_cache(self) -> None:
        for block in list(self._free_cached):
            self.hash_of[block] = None
            self._free_uncached.append(block)
        self._free_cached.clear()
        self._by_hash = {h: b for h, b in self._by_hash.items() if self.ref_count[b] > 0}
