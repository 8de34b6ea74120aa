"""Sampling parameters as clients use them: seeds, top-k/top-p, stop strings and ids, min/max tokens."""

from __future__ import annotations

import pytest
import torch
from llmfleet.engine.config import EngineConfig
from llmfleet.engine.llm_engine import LLMEngine
from llmfleet.engine.sampler import sample
from llmfleet.engine.sequence import SamplingParams, Sequence


@pytest.fixture(scope="module")
def eng(tiny_llama):
    return LLMEngine(EngineConfig(model=str(tiny_llama), device="cpu", max_model_len=256))


PROMPT = [10, 20, 30, 40, 50]


def run(eng, **kw) -> tuple[list[int], str, str]:
    """Return (token ids, text, finish reason) of one request."""
    eng.add_request("x", PROMPT, SamplingParams(**kw))
    ids, text, reason = [], "", None
    while eng.has_work:
        for out in eng.step():
            if out.request_id != "x":
                continue
            ids += out.new_token_ids
            text += out.text_delta
            reason = out.finish_reason
    return ids, text, reason


def test_same_seed_same_tokens_different_seed_different_tokens(eng):
    kw = dict(max_tokens=20, temperature=1.0, ignore_eos=True)
    assert run(eng, seed=1, **kw)[0] == run(eng, seed=1, **kw)[0]
    assert run(eng, seed=1, **kw)[0] != run(eng, seed=2, **kw)[0]


def test_seeded_output_does_not_depend_on_batch_neighbours(eng):
    kw = dict(max_tokens=15, temperature=0.8, top_p=0.9, seed=5, ignore_eos=True)
    alone = run(eng, **kw)[0]
    eng.add_request("noise", [7, 8, 9], SamplingParams(max_tokens=30, temperature=1.0, ignore_eos=True))
    assert run(eng, **kw)[0] == alone


def test_top_k_one_is_greedy(eng):
    greedy = run(eng, max_tokens=10, temperature=0.0, ignore_eos=True)[0]
    assert run(eng, max_tokens=10, temperature=1.3, top_k=1, seed=3, ignore_eos=True)[0] == greedy


def test_top_p_keeps_the_smallest_set_reaching_p():
    s = Sequence("t", [1], SamplingParams(temperature=1.0, top_p=0.5, seed=0))
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))
    draws = {sample([s], logits.clone(), [])[0] for _ in range(50)}
    assert draws == {0}  # 0.6 alone reaches 0.5


def test_max_tokens_gives_length(eng):
    ids, _, reason = run(eng, max_tokens=7, temperature=0.0, ignore_eos=True)
    assert len(ids) == 7 and reason == "length"


def test_stop_token_ids_and_min_tokens(eng):
    greedy = run(eng, max_tokens=12, temperature=0.0, ignore_eos=True)[0]
    stop_at = greedy[3]
    first = greedy.index(stop_at)
    ids, _, reason = run(eng, max_tokens=12, temperature=0.0, ignore_eos=True, stop_token_ids=[stop_at])
    assert ids == greedy[:first + 1] and reason == "stop"
    # min_tokens masks the stop id until enough tokens are out: output then differs from greedy
    ids, _, _ = run(eng, max_tokens=12, temperature=0.0, ignore_eos=True, stop_token_ids=[stop_at],
                    min_tokens=first + 2)
    assert stop_at not in ids[:first + 2]


def test_stop_string_truncates_text_and_is_not_emitted(eng):
    _, full, _ = run(eng, max_tokens=30, temperature=0.0, ignore_eos=True)
    needle = full[10:13]
    assert needle and needle in full
    _, text, reason = run(eng, max_tokens=30, temperature=0.0, ignore_eos=True, stop=[needle])
    assert reason == "stop"
    assert text == full[:full.index(needle)]


def test_eos_stops_unless_ignored(eng):
    # force the model's eos by making it the only allowed... use the engine's eos list as stop ids
    greedy = run(eng, max_tokens=10, temperature=0.0, ignore_eos=True)[0]
    eng.eos_token_ids.append(greedy[2])
    try:
        ids, _, reason = run(eng, max_tokens=10, temperature=0.0)
        assert reason == "stop" and ids == greedy[:greedy.index(greedy[2]) + 1]
        ids, _, reason = run(eng, max_tokens=10, temperature=0.0, ignore_eos=True)
        assert reason == "length" and ids == greedy
    finally:
        eng.eos_token_ids.pop()


# Parameters the HTTP edge refuses (test_hardening.py), given straight to the engine: each may
# fail its own request, never its batch neighbours.
UNSAMPLEABLE = [
    dict(temperature=1.0, seed=2**64),  # past torch's 64-bit seed
    dict(temperature=1e-40),  # logits / T overflow: NaN probabilities
    dict(temperature=0.0, stop_token_ids=[10**9, -5], min_tokens=4),  # ids outside the logits
]


@pytest.mark.parametrize("params", UNSAMPLEABLE, ids=["seed", "temperature", "stop_token_ids"])
def test_one_unsampleable_request_fails_alone(eng, params):
    eng.add_request("good", [7, 8, 9], SamplingParams(max_tokens=8, temperature=1.0, seed=1, ignore_eos=True))
    eng.add_request("bad", PROMPT, SamplingParams(max_tokens=8, ignore_eos=True, **params))
    outs: dict[str, list] = {"good": [], "bad": []}
    while eng.has_work:
        for out in eng.step():
            outs[out.request_id].append(out)
    good = outs["good"]
    assert sum(len(o.new_token_ids) for o in good) == 8 and good[-1].finish_reason == "length"
    assert all(o.error is None for o in good)
    if params.get("stop_token_ids"):  # out-of-range ids are not indexed: the request simply runs
        assert outs["bad"][-1].finish_reason == "length" and outs["bad"][-1].error is None
    else:
        assert outs["bad"][-1].finish_reason == "error" and "sampling failed" in outs["bad"][-1].error
    assert eng.blocks.usage == 0  # the failed request's blocks went back to the pool


async def _collect(stream) -> list:
    return [out async for out in stream]


def test_a_failing_request_does_not_cut_a_concurrent_stream(tiny_llama):
    """Through the async engine, as the server drives it: one stream in flight while a request
    with an unsampleable seed fails."""
    import asyncio

    from llmfleet.engine.async_engine import AsyncEngine
    from llmfleet.engine.errors import EngineError
    from llmfleet.engine.metrics import EngineMetrics

    engine = AsyncEngine(LLMEngine(EngineConfig(model=str(tiny_llama), device="cpu", max_model_len=256)),
                         EngineMetrics(), max_waiting=8)

    async def scenario():
        good = asyncio.ensure_future(_collect(engine.generate(
            "good", [7, 8, 9], SamplingParams(max_tokens=40, temperature=1.0, ignore_eos=True))))
        bad = asyncio.ensure_future(_collect(engine.generate(
            "bad", PROMPT, SamplingParams(max_tokens=40, temperature=1.0, seed=2**64, ignore_eos=True))))
        return await asyncio.gather(good, bad, return_exceptions=True)

    try:
        good, bad = asyncio.run(scenario())
    finally:
        engine.shutdown()
    assert not isinstance(good, BaseException), good
    assert sum(len(o.new_token_ids) for o in good) == 40 and good[-1].finish_reason == "length"
    assert isinstance(bad, EngineError) and "sampling failed" in bad.message
