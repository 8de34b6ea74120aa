"""Block pool bookkeeping: allocation, prefix sharing, LRU eviction, everything returned."""

from __future__ import annotations

import pytest
from llmfleet.engine.block_manager import BlockManager
from llmfleet.engine.sequence import SamplingParams, Sequence


def seq(tokens: list[int]) -> Sequence:
    return Sequence("r", tokens, SamplingParams())


def compute_all(bm: BlockManager, s: Sequence) -> None:
    """What a model step does to the bookkeeping: allocate, mark computed, register full blocks."""
    bm.allocate(s, s.num_uncomputed_tokens)
    s.num_computed_tokens = len(s)
    bm.commit_computed(s)


def test_allocation_rounds_up_to_blocks_and_free_returns_them():
    bm = BlockManager(num_blocks=8, block_size=4)
    s = seq(list(range(10)))
    assert bm.blocks_needed(s, 10) == 3
    compute_all(bm, s)
    assert len(s.block_table) == 3 and bm.num_free_blocks == 5
    bm.free(s)
    assert bm.num_free_blocks == 8 and bm.usage == 0.0 and s.block_table == []


def test_shared_prefix_reuses_full_blocks_only_and_leaves_a_token_to_compute():
    bm = BlockManager(num_blocks=16, block_size=4)
    a = seq(list(range(10)))
    compute_all(bm, a)
    b = seq(list(range(10)) + [99])
    assert bm.match_prefix(b) == 8  # two full blocks; the partial third block is never shared
    assert b.block_table == a.block_table[:2]
    assert bm.ref_count[a.block_table[0]] == 2
    c = seq(list(range(8)))  # exactly two blocks: the last token must still be computed
    assert bm.match_prefix(c) == 4


def test_different_prefix_same_block_tokens_do_not_match():
    bm = BlockManager(num_blocks=16, block_size=4)
    a = seq([1, 2, 3, 4, 5, 6, 7, 8, 0])
    compute_all(bm, a)
    b = seq([9, 9, 9, 9, 5, 6, 7, 8, 0])  # second block equal, first differs: chained hash differs
    assert bm.match_prefix(b) == 0


def test_freed_prefix_blocks_stay_cached_until_evicted_lru():
    bm = BlockManager(num_blocks=4, block_size=2)
    a = seq([1, 2, 3, 4, 5])
    compute_all(bm, a)
    bm.free(a)
    assert bm.num_free_blocks == 4  # cached blocks count as free
    hit = seq([1, 2, 3, 4, 6])
    assert bm.match_prefix(hit) == 4
    bm.free(hit)
    # a new unrelated sequence needing all 4 blocks evicts the cached ones
    big = seq([7, 7, 7, 7, 7, 7, 7, 7])
    compute_all(bm, big)
    bm.free(big)
    assert bm.match_prefix(seq([1, 2, 3, 4, 6])) == 0


def test_tail_blocks_are_evicted_before_the_prefix():
    bm = BlockManager(num_blocks=4, block_size=2)
    a = seq([1, 2, 3, 4, 5, 6, 9])
    compute_all(bm, a)  # 3 full blocks + 1 partial
    bm.free(a)
    other = seq([8, 8])
    compute_all(bm, other)  # takes the uncached partial block first, then...
    other2 = seq([7, 7])
    compute_all(bm, other2)  # ...evicts the least recently freed: the tail block [5, 6]
    assert bm.match_prefix(seq([1, 2, 3, 4, 5, 6, 0])) == 4


def test_allocate_without_room_is_a_programming_error():
    bm = BlockManager(num_blocks=1, block_size=2)
    with pytest.raises(RuntimeError):
        bm.allocate(seq([1, 2, 3]), 3)


def test_prefix_cache_can_be_disabled():
    bm = BlockManager(num_blocks=8, block_size=2, enable_prefix_caching=False)
    a = seq([1, 2, 3, 4, 5])
    compute_all(bm, a)
    assert bm.match_prefix(seq([1, 2, 3, 4, 5])) == 0
