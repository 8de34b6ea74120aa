"""Reading the engines' /metrics: a tolerant Prometheus text parser and a bounded async scraper.

| reading            | llmfleet engine                          | vLLM (engine kind `vllm`)               |
| ------------------ | ---------------------------------------- | --------------------------------------- |
| requests waiting   | llmfleet_engine_requests_waiting         | vllm:num_requests_waiting               |
| requests running   | llmfleet_engine_requests_running         | vllm:num_requests_running               |
| KV-cache usage     | llmfleet_engine_kv_cache_usage_ratio     | vllm:kv_cache_usage_perc (gpu_cache_usage_perc before v0.10) |
| generated tokens   | llmfleet_engine_generation_tokens_total  | vllm:generation_tokens_total            |
| model load seconds | llmfleet_engine_model_load_seconds       | (none: pod start → Ready instead)       |

The llmfleet names win when both are present (the engine exports both). Series of one
name with different labels are summed. A line that does not parse is skipped, not fatal:
one odd exporter line must not blind the autoscaler. A pod that does not answer within
the timeout, answers non-200, or reports neither waiting gauge yields an error, which the
autoscaler treats as a missing metric.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import httpx
from llmfleet.operator.scaling.metrics import EngineSample

DEFAULT_TIMEOUT_SECONDS = 2.0
DEFAULT_CONCURRENCY = 16
MAX_BODY_BYTES = 4 * 1024 * 1024  # an engine's exposition is a few KB; refuse anything absurd

# reading -> candidate metric names, preferred first
NAMES: dict[str, tuple[str, ...]] = {
    "waiting": ("llmfleet_engine_requests_waiting", "vllm:num_requests_waiting"),
    "running": ("llmfleet_engine_requests_running", "vllm:num_requests_running"),
    "kv": ("llmfleet_engine_kv_cache_usage_ratio", "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "tokens": ("llmfleet_engine_generation_tokens_total", "vllm:generation_tokens_total"),
    "load": ("llmfleet_engine_model_load_seconds",),
    "draining": ("llmfleet_engine_draining",),
}

# name{labels} value [timestamp]; label values may hold spaces and escaped quotes.
_LINE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'(?:\{(?P<labels>(?:[^"}]|"(?:[^"\\]|\\.)*")*)\})?'
    r'\s+(?P<value>\S+)(?:\s+\S+)?\s*$'
)


def parse_exposition(text: str) -> dict[str, float]:
    """{metric name: sum over its series} from Prometheus text format; bad lines are skipped."""
    totals: dict[str, float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            continue
        try:
            value = float(match["value"])
        except ValueError:
            continue
        if math.isnan(value):
            continue
        name = match["name"]
        totals[name] = totals.get(name, 0.0) + value
    return totals


def _first(values: Mapping[str, float], names: Iterable[str]) -> float | None:
    for name in names:
        if name in values:
            return values[name]
    return None


@dataclass(frozen=True)
class EngineScrape:
    """What one pod's /metrics said at `timestamp` (or why it said nothing)."""

    pod: str
    timestamp: datetime
    waiting: float | None = None
    running: float | None = None
    kv_cache_usage: float | None = None
    generation_tokens: float | None = None
    model_load_seconds: float | None = None
    draining: bool = False
    error: str | None = None

    @property
    def sample(self) -> EngineSample | None:
        """The autoscaler's view; None when the pod gave no usable queue reading."""
        if self.error is not None or self.waiting is None:
            return None
        return EngineSample(
            timestamp=self.timestamp,
            requests_waiting=self.waiting,
            requests_running=self.running or 0.0,
            kv_cache_usage=self.kv_cache_usage or 0.0,
        )

    @property
    def in_flight(self) -> float:
        return (self.waiting or 0.0) + (self.running or 0.0)


def engine_scrape(pod: str, text: str, timestamp: datetime) -> EngineScrape:
    """Interpret one exposition; an exposition without a waiting gauge is an error."""
    values = parse_exposition(text)
    waiting = _first(values, NAMES["waiting"])
    if waiting is None:
        return EngineScrape(pod, timestamp, error="no requests-waiting gauge in /metrics")
    return EngineScrape(
        pod,
        timestamp,
        waiting=waiting,
        running=_first(values, NAMES["running"]),
        kv_cache_usage=_first(values, NAMES["kv"]),
        generation_tokens=_first(values, NAMES["tokens"]),
        model_load_seconds=_first(values, NAMES["load"]),
        draining=bool(_first(values, NAMES["draining"]) or 0.0),
    )


@dataclass(frozen=True)
class ScrapeTarget:
    pod: str
    url: str  # http://<pod IP>:<port>/metrics


async def _scrape_one(
    client: httpx.AsyncClient, target: ScrapeTarget, sem: asyncio.Semaphore, now: datetime
) -> EngineScrape:
    async with sem:
        try:
            resp = await client.get(target.url)
        except (httpx.HTTPError, OSError) as exc:
            return EngineScrape(target.pod, now, error=f"{type(exc).__name__}: {exc}"[:300])
    if resp.status_code != 200:
        return EngineScrape(target.pod, now, error=f"HTTP {resp.status_code}")
    if len(resp.content) > MAX_BODY_BYTES:
        return EngineScrape(target.pod, now, error="exposition too large")
    return engine_scrape(target.pod, resp.text, now)


async def scrape_engines(
    targets: Iterable[ScrapeTarget],
    now: datetime,
    *,
    client: httpx.AsyncClient | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> dict[str, EngineScrape]:
    """Scrape every target at once (at most `concurrency` in flight), each within `timeout`."""
    targets = list(targets)
    if not targets:
        return {}
    sem = asyncio.Semaphore(concurrency)
    own = client is None
    client = client or httpx.AsyncClient(timeout=timeout)
    try:
        results = await asyncio.gather(*(_scrape_one(client, t, sem, now) for t in targets))
    finally:
        if own:
            await client.aclose()
    return {r.pod: r for r in results}
