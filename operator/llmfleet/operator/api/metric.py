"""The metric an AutoscalePolicy scales on (the engine's queue, in-flight requests or KV-cache
usage, averaged over ready pods) and its target."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from .base import ApiModel


class MetricType(StrEnum):
    """Which engine gauge, per ready pod, drives the scale."""

    QUEUE_DEPTH = "QueueDepth"  # llmfleet_engine_requests_waiting
    IN_FLIGHT = "InFlight"  # requests_waiting + requests_running
    KV_CACHE_USAGE = "KVCacheUsage"  # kv_cache_usage_ratio, in [0, 1]


class MetricTarget(ApiModel):
    """The metric and its target average per ready replica."""

    type: MetricType = Field(
        MetricType.QUEUE_DEPTH,
        description=(
            "QueueDepth: requests waiting to be scheduled (llmfleet_engine_requests_waiting); "
            "InFlight: waiting + running requests; KVCacheUsage: fraction of the KV cache in use (0..1)."
        ),
    )
    target_average_value: float = Field(
        # 0.001 and 1e6 bound average/target: a tiny target made every sync overflow
        ge=0.001,
        le=1000000,
        description=(
            "Target value of the metric averaged over ready replicas, e.g. 4 waiting requests per "
            "replica for QueueDepth or 0.8 for KVCacheUsage. desired = ceil(ready x average / target)."
        ),
    )
