"""Per-pod metric values from the engine's gauges, and when a sample is too old to use.

| metric type  | per-pod value                                                      |
| ------------ | ------------------------------------------------------------------ |
| QueueDepth   | llmfleet_engine_requests_waiting (vllm:num_requests_waiting)       |
| InFlight     | requests_waiting + requests_running                                |
| KVCacheUsage | llmfleet_engine_kv_cache_usage_ratio (vllm:kv_cache_usage_perc)    |

A sample older than STALE_AFTER_SYNC_PERIODS sync periods is stale: the pod is then
treated as a pod with a missing metric, exactly as the HPA treats one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from llmfleet.operator.api.metric import MetricType

# Two periods: the scraper reads every pod each sync, so one missed scrape is tolerated
# (a slow pod, a timeout) but a pod silent for two syncs no longer speaks for itself.
STALE_AFTER_SYNC_PERIODS = 2


@dataclass(frozen=True)
class EngineSample:
    """The gauges scraped from one engine pod's /metrics at `timestamp`."""

    timestamp: datetime
    requests_waiting: float
    requests_running: float
    kv_cache_usage: float


def pod_metric_value(metric: MetricType, sample: EngineSample) -> float:
    """The value of `metric` for one pod."""
    if metric is MetricType.QUEUE_DEPTH:
        return sample.requests_waiting
    if metric is MetricType.IN_FLIGHT:
        return sample.requests_waiting + sample.requests_running
    return sample.kv_cache_usage


def is_stale(sample_time: datetime, now: datetime, sync_period_seconds: int) -> bool:
    """True when a sample is older than STALE_AFTER_SYNC_PERIODS sync periods."""
    return now - sample_time > timedelta(seconds=STALE_AFTER_SYNC_PERIODS * sync_period_seconds)


def fresh_value(
    metric: MetricType, sample: EngineSample | None, now: datetime, sync_period_seconds: int
) -> float | None:
    """The pod's metric value, or None when it has no sample or only a stale one."""
    if sample is None or is_stale(sample.timestamp, now, sync_period_seconds):
        return None
    return pod_metric_value(metric, sample)
