"""Greedy outputs equal Hugging Face transformers' generate on the same checkpoint.

The oracle is an independent implementation; every scheduling path must leave
the tokens unchanged: batching, chunked prefill, prefix-cache hits, preemption.
Every test runs three ways: eager torch; with the decode step compiled (decode_graph.py);
and with a lone decode in the C kernels (one_token.py, cpu_kernels.py), the default on CPU.
Both sides run in float32, whatever dtype the CPU would get by default.
"""

from __future__ import annotations

import random

import pytest
import torch
import transformers
from llmfleet.engine.config import EngineConfig
from llmfleet.engine.llm_engine import LLMEngine
from llmfleet.engine.sequence import SamplingParams

from tools.tinymodel import TinySpec, make_tiny_model

NEW = 12


def reference(model_dir, prompts: list[list[int]], new_tokens: int = NEW) -> list[list[int]]:
    hf = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = []
    for p in prompts:
        ids = hf.generate(torch.tensor([p]), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                          do_sample=False, eos_token_id=None, pad_token_id=0)
        out.append(ids[0, len(p):].tolist())
    return out


@pytest.fixture(params=["eager", "compiled", "kernels"])
def mode(request):
    return request.param


@pytest.fixture
def engine(mode, compile_cache):
    made: list[LLMEngine] = []

    def make(model_dir, **kw) -> LLMEngine:
        kw.setdefault("max_model_len", 128)
        eng = LLMEngine(EngineConfig(model=str(model_dir), device="cpu", dtype="float32", compile=mode == "compiled",
                                     cpu_kernels=mode == "kernels", compile_cache_dir=str(compile_cache), **kw))
        made.append(eng)
        return eng

    yield make
    for eng in made:  # the path under test was really taken
        assert (eng.runner.compiled_steps > 0) == (mode == "compiled")
        # every lone decode (there is none where requests only ever run in batches)
        want = eng.runner.lone_decode_steps if mode == "kernels" else 0
        assert eng.runner.one_token_steps == want


def greedy(n: int = NEW) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True)


def random_prompts(n: int, lo: int, hi: int, vocab: int = 512, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, vocab) for _ in range(rng.randint(lo, hi))] for _ in range(n)]


def test_single_request(tiny_llama, engine):
    prompts = random_prompts(1, 10, 10)
    assert engine(tiny_llama).generate(prompts, greedy()) == reference(tiny_llama, prompts)


def test_many_concurrent_requests_of_mixed_lengths(tiny_llama, engine):
    prompts = random_prompts(10, 1, 60, seed=1)
    eng = engine(tiny_llama, max_num_seqs=8)
    assert eng.generate(prompts, greedy()) == reference(tiny_llama, prompts)
    assert eng.blocks.usage == 0.0  # every block returned


def test_prefix_cache_hits_do_not_change_outputs(tiny_llama, engine):
    shared = random_prompts(1, 40, 40, seed=2)[0]
    prompts = [shared + tail for tail in random_prompts(4, 1, 9, seed=3)] + [shared]
    eng = engine(tiny_llama, block_size=8)
    first = eng.generate(prompts[:1], greedy())
    rest = eng.generate(prompts[1:], greedy())
    assert eng.blocks.prefix_hits >= 4 * 40 - 8  # later requests found the shared blocks
    assert first + rest == reference(tiny_llama, prompts)


def test_chunked_prefill(tiny_llama, engine):
    prompts = random_prompts(3, 50, 90, seed=4)
    eng = engine(tiny_llama, max_num_batched_tokens=16, block_size=4)
    assert eng.generate(prompts, greedy()) == reference(tiny_llama, prompts)


def test_preemption_with_a_tiny_kv_pool(tiny_llama, engine):
    prompts = random_prompts(6, 20, 40, seed=5)
    # 64 tokens of cache: one max-length sequence fits, six do not
    eng = engine(tiny_llama, max_model_len=64, num_kv_blocks=16, block_size=4, max_num_batched_tokens=32)
    out = eng.generate(prompts, greedy(20))
    assert eng.scheduler.num_preemptions > 0
    assert out == reference(tiny_llama, prompts, 20)
    assert eng.blocks.usage == 0.0


@pytest.mark.parametrize("spec", [
    TinySpec(arch="qwen2", seed=1),
    TinySpec(arch="llama", tie_word_embeddings=True, seed=2),
    TinySpec(arch="mistral", seed=3),
    TinySpec(arch="llama", seed=4, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    TinySpec(arch="llama", seed=5, shards=3, num_heads=4, num_kv_heads=4),
    # q/k head norms, head_dim apart from hidden/heads (as Qwen3-0.6B: 16 heads of 128 over 1024), tied head
    TinySpec(arch="qwen3", seed=7, head_dim=32, tie_word_embeddings=True),
], ids=["qwen2-bias", "tied-embeddings", "mistral", "llama3-rope", "sharded-mha", "qwen3"])
def test_architectures(tmp_path, spec, engine):
    model_dir = make_tiny_model(tmp_path / "m", spec)
    if spec.shards > 1:
        assert (model_dir / "model.safetensors.index.json").exists()
    prompts = random_prompts(3, 5, 70, seed=6)
    assert engine(model_dir).generate(prompts, greedy()) == reference(model_dir, prompts)


def test_qwen3_lone_decode(tmp_path, engine, mode):
    """Every decode of one request is a lone decode: in kernels mode the C layer applies the q/k head norms."""
    model_dir = make_tiny_model(tmp_path / "m", TinySpec(arch="qwen3", seed=8, head_dim=32))
    prompts = random_prompts(1, 30, 30, seed=9)
    eng = engine(model_dir)
    assert eng.generate(prompts, greedy(20)) == reference(model_dir, prompts, 20)
    assert eng.runner.lone_decode_steps >= 19
