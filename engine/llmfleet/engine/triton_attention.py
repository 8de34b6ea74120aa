"""Paged decode attention as a Triton kernel: the CUDA decode path's attention.

One program per (sequence, KV head) walks the sequence's block table up to its context
length, reading each key/value block where it lies in the pool (no gathered copy), and
keeps a running softmax (max, sum, weighted values) in registers, for all the query heads
that share the KV head (grouped-query attention). The loop bound is read from
`context_lens` on the device, so one launch serves any lengths and the kernel can be
captured in a CUDA graph with a fixed block-table width.

The contract is `attention.paged_decode_reference`'s; tests run this kernel on CPU with
Triton's interpreter (TRITON_INTERPRET=1) against it. Not yet run on a GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .attention import DecodeBatch, write_kv


@triton.jit
def _paged_decode_kernel(q_ptr, k_cache_ptr, v_cache_ptr, tables_ptr, lens_ptr, out_ptr, scale,
                         stride_qb, stride_qh, stride_kb, stride_kt, stride_kh, stride_tb, stride_ob, stride_oh,
                         GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_SIZE: tl.constexpr,
                         BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr):
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, BLOCK_D)
    offs_t = tl.arange(0, BLOCK_T)
    g_ok = offs_g < GROUP
    d_ok = offs_d < HEAD_DIM
    t_ok = offs_t < BLOCK_SIZE
    heads = kv_head * GROUP + offs_g
    q = tl.load(q_ptr + seq * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
                mask=g_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
    context_len = tl.load(lens_ptr + seq)
    m = tl.full([BLOCK_G], float("-inf"), tl.float32)
    total = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    for j in range(0, tl.cdiv(context_len, BLOCK_SIZE)):
        block = tl.load(tables_ptr + seq * stride_tb + j)
        kv_off = block * stride_kb + offs_t[:, None] * stride_kt + kv_head * stride_kh + offs_d[None, :]
        kv_ok = t_ok[:, None] & d_ok[None, :]
        k = tl.load(k_cache_ptr + kv_off, mask=kv_ok, other=0.0).to(tl.float32)  # [T, D]
        v = tl.load(v_cache_ptr + kv_off, mask=kv_ok, other=0.0).to(tl.float32)
        scores = tl.sum(q[:, None, :] * k[None, :, :], axis=2) * scale  # [G, T]
        live = (j * BLOCK_SIZE + offs_t < context_len) & t_ok
        scores = tl.where(live[None, :], scores, float("-inf"))
        m_new = tl.maximum(m, tl.max(scores, axis=1))
        alpha = tl.exp(m - m_new)
        p = tl.exp(scores - m_new[:, None])
        total = total * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v[None, :, :], axis=1)
        m = m_new
    out = acc / total[:, None]
    tl.store(out_ptr + seq * stride_ob + heads[:, None] * stride_oh + offs_d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=g_ok[:, None] & d_ok[None, :])


def paged_decode_triton(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                        context_lens: torch.Tensor, scale: float) -> torch.Tensor:
    """q: [B, Hq, D]; caches [num_blocks, block_size, Hkv, D] (contiguous in their last three dims)."""
    b, hq, d = q.shape
    block_size, hkv = k_cache.shape[1], k_cache.shape[2]
    group = hq // hkv
    q = q.contiguous()
    out = torch.empty_like(q)
    _paged_decode_kernel[(b, hkv)](
        q, k_cache, v_cache, block_tables, context_lens, out, scale,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), block_tables.stride(0),
        out.stride(0), out.stride(1),
        GROUP=group, HEAD_DIM=d, BLOCK_SIZE=block_size, BLOCK_G=triton.next_power_of_2(group),
        BLOCK_D=triton.next_power_of_2(d), BLOCK_T=triton.next_power_of_2(block_size))
    return out


def triton_decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor,
                            v_cache: torch.Tensor, batch: DecodeBatch, scale: float) -> torch.Tensor:
    """`attention.decode_attention`'s contract, with the Triton kernel reading the cache."""
    write_kv(k_cache, v_cache, k, v, batch.slot_mapping)
    return paged_decode_triton(q, k_cache, v_cache, batch.block_tables, batch.context_lens, scale)
