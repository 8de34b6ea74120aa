"""Parsing engine /metrics (llmfleet and vLLM names, garbage) and scraping with timeouts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
from llmfleet.operator.adapters.scrape import ScrapeTarget, engine_scrape, parse_exposition, scrape_engines

NOW = datetime(2026, 1, 1, tzinfo=UTC)

LLMFLEET = """\
# HELP llmfleet_engine_requests_waiting Requests queued.
# TYPE llmfleet_engine_requests_waiting gauge
llmfleet_engine_requests_waiting 3.0
llmfleet_engine_requests_running 2.0
llmfleet_engine_kv_cache_usage_ratio 0.25
llmfleet_engine_generation_tokens_total 1234.0
llmfleet_engine_model_load_seconds 4.5
llmfleet_engine_draining 0.0
vllm:num_requests_waiting 3.0
vllm:num_requests_running 2.0
"""

VLLM = """\
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="chat"} 4.0
vllm:num_requests_waiting{engine="1",model_name="chat"} 1.0
vllm:num_requests_running{engine="0",model_name="chat"} 7.0
vllm:kv_cache_usage_perc{engine="0",model_name="chat"} 0.5
vllm:generation_tokens_total{model_name="chat"} 99.0
"""


def test_llmfleet_names():
    s = engine_scrape("p", LLMFLEET, NOW)
    assert (s.waiting, s.running, s.kv_cache_usage, s.generation_tokens, s.model_load_seconds) == (3, 2, 0.25, 1234, 4.5)
    assert s.in_flight == 5 and not s.draining and s.error is None
    assert s.sample.requests_waiting == 3 and s.sample.timestamp == NOW


def test_vllm_names_summed_over_label_sets():
    s = engine_scrape("p", VLLM, NOW)
    assert (s.waiting, s.running, s.kv_cache_usage, s.generation_tokens) == (5, 7, 0.5, 99)
    assert s.model_load_seconds is None


def test_garbage_lines_are_skipped_not_fatal():
    text = (
        "this is not prometheus\n"
        'llmfleet_engine_requests_waiting{label="with } brace and \\"quote\\""} 2 1700000000000\n'
        "llmfleet_engine_requests_running notanumber\n"
        "llmfleet_engine_kv_cache_usage_ratio NaN\n"
        "{}\n"
    )
    values = parse_exposition(text)
    assert values == {"llmfleet_engine_requests_waiting": 2.0}
    s = engine_scrape("p", text, NOW)
    assert s.waiting == 2 and s.running is None and s.sample.requests_running == 0


def test_no_queue_gauge_is_an_error():
    s = engine_scrape("p", "<html>not metrics</html>", NOW)
    assert s.error and s.sample is None


def test_scrape_engines_timeouts_errors_and_concurrency_bound():
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        host = request.url.host
        if host == "10.0.0.9":
            raise httpx.ConnectTimeout("timed out", request=request)
        if host == "10.0.0.8":
            return httpx.Response(503, text="draining")
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, text=LLMFLEET)

    targets = [ScrapeTarget(f"pod-{i}", f"http://10.0.0.{i}:8000/metrics") for i in range(10)]

    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await scrape_engines(targets, NOW, client=client, concurrency=3)

    results = asyncio.run(go())
    assert set(results) == {t.pod for t in targets}
    assert results["pod-9"].error.startswith("ConnectTimeout")
    assert results["pod-8"].error == "HTTP 503"
    assert results["pod-0"].waiting == 3
    assert peak <= 3


def test_unreachable_pod_is_an_error():
    # Port 9 (discard) on loopback: refused at once; the scrape reports it and carries on.
    results = asyncio.run(scrape_engines([ScrapeTarget("p", "http://127.0.0.1:9/metrics")], NOW, timeout=0.5))
    assert results["p"].error is not None
