"""The CPU kernels (cpu_kernels.py, one_token.py) against plain torch.

Each check runs on every build the compiler here can make: this CPU's (-march=native: AVX-512 with
BF16 on the project's machines), AVX2 and portable C, so the paths other CPUs take are tested too.
The greedy-equality tests against transformers run with the kernels as well (test_reference.py).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from llmfleet.engine import cpu_kernels
from llmfleet.engine.attention import AttentionMetadata, PrefillChunk
from llmfleet.engine.model_runner import ModelRunner
from llmfleet.engine.one_token import OneTokenDecoder

from tools.tinymodel import TinySpec, make_tiny_model

BUILDS = {"native": cpu_kernels.DEFAULT_FLAGS,
          "avx2": ("-O3", "-march=x86-64-v3", "-fopenmp", "-shared", "-fPIC"),
          "portable": ("-O3", "-march=x86-64", "-fopenmp", "-shared", "-fPIC")}
TOL = {torch.float32: dict(atol=1e-4, rtol=1e-5), torch.bfloat16: dict(atol=0.1, rtol=0.02)}


@pytest.fixture(scope="module", params=list(BUILDS))
def lib(request, tmp_path_factory):
    if cpu_kernels.compiler() is None:
        pytest.fail("no C compiler on PATH: the kernels cannot be built or tested")
    return cpu_kernels.open_library(cpu_kernels.build(tmp_path_factory.mktemp("kernels"), BUILDS[request.param]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows,cols", [(1, 1), (7, 13), (64, 64), (130, 80), (33, 1000)])
def test_matrix_vector_product_equals_f_linear(lib, dtype, rows, cols):
    g = torch.Generator().manual_seed(rows * cols)
    w = torch.randn(rows, cols, generator=g).to(dtype)
    x = torch.randn(1, cols, generator=g).to(dtype)
    b = torch.randn(rows, generator=g).to(dtype)
    for bias in (None, b):
        want = F.linear(x.float(), w.float(), None if bias is None else bias.float())
        got = cpu_kernels.linear(x, w, bias, lib)
        assert got.dtype == dtype and got.shape == (1, rows)
        torch.testing.assert_close(got.float(), want, **TOL[dtype])


def prefill(runner: ModelRunner, tokens: list[int], table: list[int]) -> None:
    """Write the prompt's keys and values with the eager path, at the slots the block table gives."""
    bs = runner.block_size
    slots = torch.tensor([table[p // bs] * bs + p % bs for p in range(len(tokens))])
    meta = AttentionMetadata(slots, 0, None, None, [PrefillChunk(0, len(tokens), 0, torch.tensor(table))])
    runner.model(torch.tensor(tokens), torch.arange(len(tokens)), runner.kv_caches, meta,
                 torch.tensor([len(tokens) - 1]))


def eager_decode(runner: ModelRunner, token: int, table: list[int], ctx_len: int) -> torch.Tensor:
    bs, pos = runner.block_size, ctx_len - 1
    width = -(-ctx_len // bs)
    meta = AttentionMetadata(torch.tensor([table[pos // bs] * bs + pos % bs]), 1, torch.tensor([table[:width]]),
                             torch.tensor([ctx_len]), [])
    return runner.model(torch.tensor([token]), torch.tensor([pos]), runner.kv_caches, meta, torch.tensor([0]))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("spec", [
    TinySpec(arch="llama", seed=7),  # grouped-query attention (4 heads over 2 KV heads)
    TinySpec(arch="qwen2", seed=8, hidden_size=80, intermediate_size=136),  # q/k/v bias; sizes off the vector width
    TinySpec(arch="qwen3", seed=9, head_dim=24),  # q/k head norms; 4 heads of 24 over a hidden size of 64
], ids=["llama-gqa", "qwen2-bias-odd-sizes", "qwen3-qk-norm"])
def test_one_token_decode_equals_the_eager_step(tmp_path, lib, spec, dtype):
    runner = ModelRunner(make_tiny_model(tmp_path / "m", spec), device="cpu", dtype=dtype, max_model_len=128,
                         num_kv_blocks=40, block_size=4, use_cpu_kernels=True, kernel_cache_dir=tmp_path / "k")
    decoder = OneTokenDecoder(runner.model, runner.kv_caches, runner.max_model_len, lib)
    g = torch.Generator().manual_seed(spec.seed)
    tokens = torch.randint(3, spec.vocab_size, (37,), generator=g).tolist()
    table = [9, 3, 31, 4, 5, 17, 0, 22, 11, 12, 30]  # scattered blocks, as after prefix-cache hits and frees
    prefill(runner, tokens[:-1], table)
    # the eager step writes the last token's key and value first; the kernel writes the same slot again
    want = eager_decode(runner, tokens[-1], table, len(tokens))
    k_before = [k.clone() for k, _ in runner.kv_caches]
    got = decoder(tokens[-1], table, len(tokens))
    assert got.shape == want.shape == (1, spec.vocab_size) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, **TOL[runner.dtype])
    for (k, _), before in zip(runner.kv_caches, k_before, strict=True):
        torch.testing.assert_close(k.float(), before.float(), **TOL[runner.dtype])
    if runner.dtype == torch.float32:
        assert got.argmax() == want.argmax()


def test_runner_sends_only_lone_decodes_to_the_kernels(tiny_llama, tmp_path):
    from llmfleet.engine.config import EngineConfig
    from llmfleet.engine.llm_engine import LLMEngine
    from llmfleet.engine.sequence import SamplingParams

    eng = LLMEngine(EngineConfig(model=str(tiny_llama), device="cpu", dtype="float32", max_model_len=128,
                                 compile=False, compile_cache_dir=str(tmp_path)))
    assert eng.runner.one_token is not None  # on by default on CPU
    params = SamplingParams(max_tokens=5, temperature=0.0, ignore_eos=True)
    eng.generate([[5, 6, 7], [8, 9]], params)  # two together: batched decodes, no kernel step
    assert eng.runner.one_token_steps == 0
    eng.generate([[5, 6, 7]], params)
    assert eng.runner.one_token_steps == eng.runner.lone_decode_steps == 4


def test_without_a_compiler_the_runner_loads_without_kernels(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_kernels, "_lib", None)
    monkeypatch.setattr(cpu_kernels, "_tried", False)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    runner = ModelRunner(tiny_llama, device="cpu", dtype="float32", max_model_len=64, kernel_cache_dir=tmp_path)
    assert runner.one_token is None
    assert runner.model.layers[0].qkv.weight.numel() == 0  # no plain copy kept when nothing reads it
