"""Paged attention in plain torch: the same code on CPU and CUDA.

A step's tokens are laid out flat: first one token per decoding sequence, then
each prefill chunk's tokens. New keys and values are written into the block pool
at their slots (slot = block id * block_size + offset), then

- decodes gather their context from the pool through a padded block table and
  attend in one batched scaled_dot_product_attention call with a length mask; a lone
  decode whose context fills consecutive blocks reads it as a view, with no gather;
- a prefill chunk that starts at position 0 attends causally to its own keys;
  one that continues a cached prefix or an earlier chunk gathers its context and
  uses a causal mask shifted by the context already computed.

The cache tensor is [num_blocks, block_size, num_kv_heads, head_dim] per layer.

A step of decodes only can also take the decode path (`decode_attention`): the same
maths written as reductions over the cache indexed through the block table, with no
gathered copy in between once compiled (inductor fuses the indexing into the reductions,
so each step reads the blocks where they are). On CUDA the same contract is served by a
Triton kernel (triton_attention.py), tested against this function.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class PrefillChunk:
    start: int  # first index in the flat token batch
    num_tokens: int
    context_start: int  # tokens of this sequence already in the cache before this chunk
    block_table: torch.Tensor  # [num_blocks_for_this_sequence] int64


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # [T] int64
    num_decodes: int
    decode_block_tables: torch.Tensor | None  # [B, max_blocks] int64 (padded with 0)
    decode_context_lens: torch.Tensor | None  # [B] int64, including the new token
    prefills: list[PrefillChunk]
    decode_mask: torch.Tensor | None = None  # [B, 1, 1, max_blocks * block_size], built once per step
    # A lone decode whose context fills consecutive blocks (the usual case at batch 1: the block
    # manager hands out fresh blocks in order): (first slot, context length), read as a view of the
    # pool with no gather and no mask.
    decode_span: tuple[int, int] | None = None

    def mask_for_decodes(self, block_size: int) -> torch.Tensor:
        if self.decode_mask is None:
            assert self.decode_block_tables is not None and self.decode_context_lens is not None
            length = self.decode_block_tables.shape[1] * block_size
            positions = torch.arange(length, device=self.decode_context_lens.device)
            self.decode_mask = (positions[None, :] < self.decode_context_lens[:, None])[:, None, None, :]
        return self.decode_mask


@dataclass
class DecodeBatch:
    """A step of decodes only, as fixed-shape tensors (the inputs of a compiled or captured decode)."""

    slot_mapping: torch.Tensor  # [B] int64: where each sequence's new key and value go
    block_tables: torch.Tensor  # [B, W] int64, padded with any valid block id
    context_lens: torch.Tensor  # [B] int64, including the new token


def write_kv(k_cache: torch.Tensor, v_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             slot_mapping: torch.Tensor) -> None:
    num_kv_heads, head_dim = k.shape[1], k.shape[2]
    # index_put_ rather than index_copy_: inductor turns it into a scatter into the cache itself,
    # where a functionalised index_copy_ copied the whole pool every step.
    k_cache.view(-1, num_kv_heads, head_dim).index_put_((slot_mapping,), k)
    v_cache.view(-1, num_kv_heads, head_dim).index_put_((slot_mapping,), v)


def paged_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor,
                    v_cache: torch.Tensor, meta: AttentionMetadata, scale: float) -> torch.Tensor:
    """q: [T, Hq, D]; k, v: [T, Hkv, D] for this step's tokens. Returns [T, Hq, D]."""
    block_size = k_cache.shape[1]
    hkv, d = k_cache.shape[2], k_cache.shape[3]
    span = meta.decode_span
    if span is not None and not meta.prefills:
        return _lone_decode(q, k, v, k_cache.view(-1, hkv, d), v_cache.view(-1, hkv, d), span, scale)
    write_kv(k_cache, v_cache, k, v, meta.slot_mapping)
    out = torch.empty_like(q)

    b = meta.num_decodes
    if span is not None:
        out[:1] = _lone_decode(q, None, None, k_cache.view(-1, hkv, d), v_cache.view(-1, hkv, d), span, scale)
    elif b:
        tables = meta.decode_block_tables
        assert tables is not None and meta.decode_context_lens is not None
        length = tables.shape[1] * block_size
        # index_select copies whole blocks at memory speed; advanced indexing (k_cache[tables]) is ~5x slower
        flat = tables.view(-1)
        keys = k_cache.index_select(0, flat).view(b, length, hkv, d).transpose(1, 2)
        values = v_cache.index_select(0, flat).view(b, length, hkv, d).transpose(1, 2)
        o = F.scaled_dot_product_attention(q[:b].unsqueeze(2), keys, values, attn_mask=meta.mask_for_decodes(block_size),
                                           scale=scale, enable_gqa=True)
        out[:b] = o.squeeze(2)

    for chunk in meta.prefills:
        s, n = chunk.start, chunk.num_tokens
        qs = q[s:s + n].transpose(0, 1).unsqueeze(0)  # [1, Hq, n, D]
        if chunk.context_start == 0:
            ks = k[s:s + n].transpose(0, 1).unsqueeze(0)
            vs = v[s:s + n].transpose(0, 1).unsqueeze(0)
            o = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale, enable_gqa=True)
        else:
            total = chunk.context_start + n
            nblocks = -(-total // block_size)
            blocks = chunk.block_table[:nblocks]
            ks = k_cache.index_select(0, blocks).view(-1, hkv, d)[:total].transpose(0, 1).unsqueeze(0)
            vs = v_cache.index_select(0, blocks).view(-1, hkv, d)[:total].transpose(0, 1).unsqueeze(0)
            q_pos = torch.arange(chunk.context_start, total, device=q.device)
            k_pos = torch.arange(total, device=q.device)
            mask = (k_pos[None, :] <= q_pos[:, None])[None, None]
            o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=scale, enable_gqa=True)
        out[s:s + n] = o[0].transpose(0, 1)
    return out


def _lone_decode(q: torch.Tensor, k: torch.Tensor | None, v: torch.Tensor | None, k_slots: torch.Tensor,
                 v_slots: torch.Tensor, span: tuple[int, int], scale: float) -> torch.Tensor:
    """One decode whose context is the slots [first, first + length): written (unless k and v are None:
    already written) and attended to as views of the pool, with no gather and no mask. Returns [1, Hq, D]."""
    first, length = span
    if k is not None and v is not None:
        k_slots[first + length - 1].copy_(k[0])
        v_slots[first + length - 1].copy_(v[0])
    keys = k_slots[first:first + length].transpose(0, 1).unsqueeze(0)
    values = v_slots[first:first + length].transpose(0, 1).unsqueeze(0)
    return F.scaled_dot_product_attention(q[:1].unsqueeze(2), keys, values, scale=scale, enable_gqa=True).squeeze(2)


def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor,
                     v_cache: torch.Tensor, batch: DecodeBatch, scale: float) -> torch.Tensor:
    """One new token per sequence. q: [B, Hq, D]; k, v: [B, Hkv, D]. Returns [B, Hq, D].

    Eager, the indexing below materialises each context (as the gather path does); compiled,
    it becomes indirect loads inside the two reductions, so the cache is read in place."""
    write_kv(k_cache, v_cache, k, v, batch.slot_mapping)
    return paged_decode_reference(q, k_cache, v_cache, batch.block_tables, batch.context_lens, scale)


def paged_decode_reference(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           block_tables: torch.Tensor, context_lens: torch.Tensor, scale: float) -> torch.Tensor:
    """Attention of one query per sequence over its paged context, in plain torch (fp32 accumulation)."""
    b, hq, d = q.shape
    block_size, hkv = k_cache.shape[1], k_cache.shape[2]
    length = block_tables.shape[1] * block_size
    group = hq // hkv
    qg = q.float().view(b, 1, hkv, group, d)
    keys = k_cache[block_tables].view(b, length, hkv, 1, d)
    scores = (qg * keys.float()).sum(-1) * scale  # [B, L, Hkv, G]
    positions = torch.arange(length, device=q.device)
    past_end = (positions[None, :] >= context_lens[:, None])[:, :, None, None]
    probs = torch.softmax(scores.masked_fill(past_end, float("-inf")), dim=1)
    values = v_cache[block_tables].view(b, length, hkv, 1, d)
    out = (probs.unsqueeze(-1) * values.float()).sum(1)  # [B, Hkv, G, D]
    return out.view(b, hq, d).to(q.dtype)
