"""Replica count from per-pod metrics: the arithmetic of the HPA's replica calculator.

usage ratio = average over ready pods with a metric / target. Within the tolerance
(|ratio - 1| <= tolerance, inclusive) the count stays; otherwise desired =
ceil(ratio x pods counted). Pods the metric cannot speak for are treated as the HPA
treats them, always in the direction that makes the change smaller:

| pod                             | on scale-up          | on scale-down          |
| ------------------------------- | -------------------- | ---------------------- |
| ready, metric                   | its value            | its value              |
| ready, metric missing or stale  | counted as 0         | counted as the target  |
| starting (not ready: loading)   | counted as 0         | left out               |
| terminating or failed           | left out             | left out               |

So a starting pod never counts as idle: it cannot pull a scale-down average down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The HPA works in milli-units, where 11/10 is exactly 1.1; in binary floating point
# |1 - 11/10| is a hair above 0.1, which would turn the inclusive tolerance exclusive for
# exactly such numbers. This slack keeps "within tolerance" as written on paper.
_EPSILON = 1e-9


def within_tolerance(usage_ratio: float, tolerance: float) -> bool:
    """|ratio - 1| <= tolerance, inclusive as in the HPA."""
    return abs(1.0 - usage_ratio) <= tolerance + _EPSILON


@dataclass(frozen=True)
class PodMetric:
    """One pod as the calculator sees it."""

    name: str
    ready: bool  # Ready condition True: model loaded and not draining
    value: float | None = None  # fresh metric value; None when missing or stale
    terminating: bool = False  # deletionTimestamp set, or phase Failed


@dataclass(frozen=True)
class ReplicaCalculation:
    """The calculator's answer; `replicas` is the HPA's metric proposal."""

    replicas: int
    usage_ratio: float  # over ready pods with a metric, before any rebalancing
    average: float  # the metric average over ready pods with a metric (status.currentMetric)
    ready_count: int  # ready pods with a metric
    missing: int  # ready pods without a fresh metric
    unready: int  # starting pods


# A ratio x pods above this is "as many as allowed": maxReplicas (at most 1000) clamps it later.
# math.ceil of an infinite ratio (a huge reading over a tiny target) raises OverflowError.
REPLICAS_CEILING = 1_000_000
READING_CEILING = 1e12  # no queue depth, in-flight count or cache ratio comes near this


def _ceil_replicas(value: float) -> int:
    return REPLICAS_CEILING if not value < REPLICAS_CEILING else math.ceil(value)


def calculate_replicas(
    current_replicas: int, pods: Sequence[PodMetric], target: float, tolerance: float
) -> ReplicaCalculation | None:
    """The replica count the metric asks for, or None when no ready pod has a metric.

    None is the HPA's "did not receive metrics for any ready pods": the caller decides
    what happens then (onMetricsUnavailable).
    """
    values: list[float] = []
    missing = 0
    unready = 0
    for pod in pods:
        if pod.terminating:
            continue  # going away: neither load nor capacity
        if not pod.ready:
            unready += 1  # the HPA's unready pod: loading a model takes minutes
            continue
        if pod.value is None:
            missing += 1
            continue
        # A reading is a tenant's engine's word: cap it, so sums and averages stay finite (an
        # infinite average would also be written to status, which JSON cannot carry).
        values.append(min(pod.value, READING_CEILING) if pod.value == pod.value else 0.0)
    if not values:
        return None

    ready_count = len(values)
    average = sum(values) / ready_count
    usage_ratio = average / target

    def result(replicas: int) -> ReplicaCalculation:
        return ReplicaCalculation(replicas, usage_ratio, average, ready_count, missing, unready)

    scale_up_with_unready = unready > 0 and usage_ratio > 1.0
    if not scale_up_with_unready and missing == 0:
        if within_tolerance(usage_ratio, tolerance):
            return result(current_replicas)  # the change would be too small
        return result(_ceil_replicas(usage_ratio * ready_count))

    # Fill in the pods the metric cannot speak for, then compute again.
    total = sum(values)
    counted = ready_count
    if missing:
        if usage_ratio < 1.0:
            total += missing * target  # scale-down: a silent pod may be busy; assume the target
        # scale-up (ratio >= 1): a silent pod may be idle; assume 0
        counted += missing
    if scale_up_with_unready:
        counted += unready  # scale-up: a starting pod is capacity on its way, with no load yet
    new_ratio = (total / counted) / target

    if (
        within_tolerance(new_ratio, tolerance)
        or (usage_ratio < 1.0 and new_ratio > 1.0)
        or (usage_ratio > 1.0 and new_ratio < 1.0)
    ):
        # Too small a change, or the assumptions flipped the direction: keep the count.
        return result(current_replicas)

    new_replicas = _ceil_replicas(new_ratio * counted)
    if (new_ratio < 1.0 and new_replicas > current_replicas) or (
        new_ratio > 1.0 and new_replicas < current_replicas
    ):
        # Counting more pods than the target has would reverse the direction: keep the count.
        return result(current_replicas)
    return result(new_replicas)
