"""The decode path's attention against the eager path's, and the Triton kernel against both.

The eager path (`paged_attention`: gathered context + scaled_dot_product_attention) is what
the greedy-equality tests check against transformers; the decode path must agree with it
on every layout a block table can take: scattered blocks, padding, grouped-query heads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from llmfleet.engine.attention import AttentionMetadata, DecodeBatch, decode_attention, paged_attention


def _case(seed: int, hq: int, hkv: int, d: int = 16, block_size: int = 4, lens=(1, 7, 13, 4)):
    g = torch.Generator().manual_seed(seed)
    num_blocks = 24
    k_cache = torch.randn(num_blocks, block_size, hkv, d, generator=g)
    v_cache = torch.randn(num_blocks, block_size, hkv, d, generator=g)
    perm = torch.randperm(num_blocks - 1, generator=g).tolist()  # blocks scattered through the pool
    width = max(-(-n // block_size) for n in lens)
    tables, slots = [], []
    for n in lens:
        own = [perm.pop() for _ in range(-(-n // block_size))]
        tables.append(own + [num_blocks - 1] * (width - len(own)))  # padding points at a block never read
        slots.append(own[(n - 1) // block_size] * block_size + (n - 1) % block_size)
    b = len(lens)
    q = torch.randn(b, hq, d, generator=g)
    k = torch.randn(b, hkv, d, generator=g)
    v = torch.randn(b, hkv, d, generator=g)
    batch = DecodeBatch(torch.tensor(slots), torch.tensor(tables), torch.tensor(lens))
    return q, k, v, k_cache, v_cache, batch


@pytest.mark.parametrize("hq,hkv", [(4, 4), (6, 2), (4, 1)], ids=["mha", "gqa", "mqa"])
def test_decode_path_equals_the_eager_path(hq, hkv):
    q, k, v, k_cache, v_cache, batch = _case(0, hq, hkv)
    ek, ev = k_cache.clone(), v_cache.clone()
    meta = AttentionMetadata(batch.slot_mapping, len(q), batch.block_tables, batch.context_lens, [])
    expected = paged_attention(q, k, v, ek, ev, meta, scale=0.25)
    got = decode_attention(q, k, v, k_cache, v_cache, batch, scale=0.25)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(k_cache, ek) and torch.equal(v_cache, ev)  # the new keys and values went to the same slots


def test_decode_path_ignores_what_lies_past_each_context():
    q, k, v, k_cache, v_cache, batch = _case(1, 4, 2)
    before = decode_attention(q, k, v, k_cache.clone(), v_cache.clone(), batch, scale=0.3)
    pad = k_cache.shape[0] - 1
    k_cache[pad], v_cache[pad] = 1e4, 1e4  # garbage in the padding block
    after = decode_attention(q, k, v, k_cache, v_cache, batch, scale=0.3)
    torch.testing.assert_close(after, before)


TRITON_CHECK = textwrap.dedent("""
    import json, sys, torch
    sys.path[:0] = json.loads(sys.argv[1])
    from test_decode_attention import _case
    from llmfleet.engine.attention import decode_attention
    from llmfleet.engine.triton_attention import triton_decode_attention
    worst = 0.0
    for seed, (hq, hkv, d, bs) in enumerate([(4, 4, 16, 4), (6, 2, 16, 4), (4, 1, 8, 16), (3, 3, 12, 8)]):
        lens = (1, 9, 31, 16) if bs > 4 else (1, 7, 13, 4)
        q, k, v, kc, vc, batch = _case(seed, hq, hkv, d, bs, lens)
        ref = decode_attention(q, k, v, kc.clone(), vc.clone(), batch, 0.2)
        got = triton_decode_attention(q, k, v, kc, vc, batch, 0.2)
        worst = max(worst, (got - ref).abs().max().item())
    print(json.dumps({"max_abs_err": worst}))
""")


def test_triton_kernel_matches_the_reference_in_the_interpreter(tmp_path):
    pytest.importorskip("triton", reason="the CUDA kernel's tests need triton, installed with torch's CUDA wheel")
    import os

    env = {**os.environ, "TRITON_INTERPRET": "1"}  # Triton's CPU interpreter: set before triton is imported
    out = subprocess.run([sys.executable, "-c", TRITON_CHECK, json.dumps([os.path.dirname(__file__)])],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    # odd head dims and group sizes go through the kernel's masks; fp32 throughout
    assert json.loads(out.stdout.strip().splitlines()[-1])["max_abs_err"] < 1e-5
