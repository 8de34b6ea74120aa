"""Stabilization windows and rate limits: the HPA's normalizeDesiredReplicasWithBehaviors.

Order, as in the HPA: (1) stabilize the metric's recommendation against the recent ones
(scale-up takes the lowest within scaleUp.stabilizationWindowSeconds, scale-down the
highest within scaleDown's), then (2) limit the change by the direction's policies over
their periods, counted from the scale events, then clamp to min/max.

| policy type | scale-up limit                        | scale-down limit                    |
| ----------- | ------------------------------------- | ----------------------------------- |
| Pods        | periodStart + value                   | periodStart - value                 |
| Percent     | ceil(periodStart x (1 + value/100))   | trunc(periodStart x (1 - value/100))|

periodStart = current - added within the period + removed within the period. Percent
scale-up rounds up so a small fleet can always grow; scale-down truncates, i.e. the
number of pods it may remove rounds up. selectPolicy Max takes the policy allowing the
biggest change, Min the smallest, Disabled forbids the direction.

Time comparisons are strict, as in the HPA: an entry exactly `window` seconds old is
outside the window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from llmfleet.operator.api.hpa_behavior import (
    HPABehavior,
    HPAScalingRules,
    ScalingPolicySelect,
    ScalingPolicyType,
)
from llmfleet.operator.api.scaling_status import Recommendation, ScaleDirection, ScaleEvent


@dataclass(frozen=True)
class Stabilized:
    replicas: int
    reason: str  # ScaleUpStabilized | ScaleDownStabilized | ReadyForNewScale (AbleToScale)
    message: str
    recommendations: list[Recommendation]  # history with this recommendation recorded


@dataclass(frozen=True)
class Limited:
    replicas: int
    reason: str  # DesiredWithinRange | ScaleUpLimit | ScaleDownLimit | TooManyReplicas | TooFewReplicas
    message: str

    @property
    def limited(self) -> bool:
        """ScalingLimited condition status: the rate or the bounds changed the stabilized value."""
        return self.reason != "DesiredWithinRange"


def _after(timestamp: datetime, cutoff: datetime) -> bool:
    return timestamp > cutoff


def compact_recommendations(
    recommendations: Sequence[Recommendation], up_cutoff: datetime, down_cutoff: datetime
) -> list[Recommendation]:
    """The recommendations a window can still decide with (oldest first), the same min and max
    over every later window as the whole list: a recommendation matters to the scale-down window
    (a max) only while no later one is as high, to the scale-up window (a min) only while no
    later one is as low, and only while it is inside that window. A steady load keeps one entry
    instead of one per sync for the whole window (3,600 with syncPeriodSeconds 1), so a status
    write per sync stays small; an entry per distinct replica count at most (maxReplicas <= 1000)."""
    kept: list[Recommendation] = []
    later_min: int | None = None
    later_max: int | None = None
    for rec in sorted(recommendations, key=lambda r: r.timestamp, reverse=True):
        for_up = _after(rec.timestamp, up_cutoff) and (later_min is None or rec.replicas < later_min)
        for_down = _after(rec.timestamp, down_cutoff) and (later_max is None or rec.replicas > later_max)
        if later_min is None or for_up or for_down:  # the newest is always kept (the last recommendation)
            kept.append(rec)
        later_min = rec.replicas if later_min is None else min(later_min, rec.replicas)
        later_max = rec.replicas if later_max is None else max(later_max, rec.replicas)
    return kept[::-1]


def stabilize_recommendation(
    behavior: HPABehavior,
    current_replicas: int,
    desired_replicas: int,
    recommendations: Sequence[Recommendation],
    now: datetime,
) -> Stabilized:
    """Bring `desired_replicas` within the lowest/highest recent recommendations."""
    up_cutoff = now - timedelta(seconds=behavior.scale_up.stabilization_window_seconds)
    down_cutoff = now - timedelta(seconds=behavior.scale_down.stabilization_window_seconds)
    up_recommendation = desired_replicas
    down_recommendation = desired_replicas
    for rec in recommendations:
        if _after(rec.timestamp, up_cutoff):
            up_recommendation = min(up_recommendation, rec.replicas)
        if _after(rec.timestamp, down_cutoff):
            down_recommendation = max(down_recommendation, rec.replicas)

    # Scale up no further than the lowest recent recommendation, and down no further
    # than the highest: a spike must persist a window to scale up, a lull to scale down.
    replicas = current_replicas
    if replicas < up_recommendation:
        replicas = up_recommendation
    if replicas > down_recommendation:
        replicas = down_recommendation

    # Keep only what a window can still use; the HPA reuses one outdated slot per sync,
    # which keeps the same information in an unbounded list.
    kept = [rec for rec in recommendations if _after(rec.timestamp, min(up_cutoff, down_cutoff))]
    kept.append(Recommendation(timestamp=now, replicas=desired_replicas))
    kept = compact_recommendations(kept, up_cutoff, down_cutoff)

    if replicas == desired_replicas:
        return Stabilized(replicas, "ReadyForNewScale", "recommended size matches current size", kept)
    if desired_replicas >= current_replicas:
        return Stabilized(
            replicas,
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
            kept,
        )
    return Stabilized(
        replicas,
        "ScaleDownStabilized",
        "recent recommendations were higher than current one, applying the highest recent recommendation",
        kept,
    )


def replicas_changed_in_period(
    period_seconds: int, events: Sequence[ScaleEvent], direction: ScaleDirection, now: datetime
) -> int:
    """Replicas added (Up) or removed (Down) within the last `period_seconds`."""
    cutoff = now - timedelta(seconds=period_seconds)
    return sum(e.replica_change for e in events if e.direction is direction and _after(e.timestamp, cutoff))


def _period_start(
    current_replicas: int, period_seconds: int, events: Sequence[ScaleEvent], now: datetime
) -> int:
    added = replicas_changed_in_period(period_seconds, events, ScaleDirection.UP, now)
    removed = replicas_changed_in_period(period_seconds, events, ScaleDirection.DOWN, now)
    return current_replicas - added + removed


def scale_up_limit(
    current_replicas: int, events: Sequence[ScaleEvent], rules: HPAScalingRules, now: datetime
) -> int:
    """The most replicas the scale-up policies allow now."""
    if rules.select_policy is ScalingPolicySelect.DISABLED:
        return current_replicas
    proposals = []
    for policy in rules.policies:
        start = _period_start(current_replicas, policy.period_seconds, events, now)
        if policy.type is ScalingPolicyType.PODS:
            proposals.append(start + policy.value)
        else:
            # Rounded up: otherwise 1 replica at 50% would never grow.
            proposals.append(math.ceil(start * (1 + policy.value / 100)))
    # Max: the policy allowing the biggest change; Min: the smallest.
    return min(proposals) if rules.select_policy is ScalingPolicySelect.MIN else max(proposals)


def scale_down_limit(
    current_replicas: int, events: Sequence[ScaleEvent], rules: HPAScalingRules, now: datetime
) -> int:
    """The fewest replicas the scale-down policies allow now."""
    if rules.select_policy is ScalingPolicySelect.DISABLED:
        return current_replicas
    proposals = []
    for policy in rules.policies:
        start = _period_start(current_replicas, policy.period_seconds, events, now)
        if policy.type is ScalingPolicyType.PODS:
            proposals.append(start - policy.value)
        else:
            # Truncated toward zero, as the HPA's int32 conversion: the pods removed round up.
            proposals.append(int(start * (1 - policy.value / 100)))
    # Max (biggest change) is the lowest count; Min (smallest change) the highest.
    return max(proposals) if rules.select_policy is ScalingPolicySelect.MIN else min(proposals)


def limit_scale_rate(
    behavior: HPABehavior,
    current_replicas: int,
    desired_replicas: int,
    min_replicas: int,
    max_replicas: int,
    events: Sequence[ScaleEvent],
    now: datetime,
) -> Limited:
    """Apply the direction's policies and the bounds to a stabilized recommendation."""
    if desired_replicas > current_replicas:
        # A limit below current (events not yet expired) must not turn a scale-up into a scale-down.
        up_limit = max(scale_up_limit(current_replicas, events, behavior.scale_up, now), current_replicas)
        if max_replicas > up_limit:
            allowed, reason, message = (
                up_limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        else:
            allowed, reason, message = (
                max_replicas,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        if desired_replicas > allowed:
            return Limited(allowed, reason, message)
    elif desired_replicas < current_replicas:
        down_limit = min(
            scale_down_limit(current_replicas, events, behavior.scale_down, now), current_replicas
        )
        if min_replicas < down_limit:
            allowed, reason, message = (
                down_limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        else:
            allowed, reason, message = (
                min_replicas,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        if desired_replicas < allowed:
            return Limited(allowed, reason, message)
    return Limited(desired_replicas, "DesiredWithinRange", "the desired count is within the acceptable range")


def _longest_period(behavior: HPABehavior) -> int:
    return max(p.period_seconds for rules in (behavior.scale_up, behavior.scale_down) for p in rules.policies)


def record_scale_event(
    behavior: HPABehavior, events: Sequence[ScaleEvent], previous: int, new: int, now: datetime
) -> list[ScaleEvent]:
    """Events after scaling from `previous` to `new`, older than every policy period dropped.

    Both directions are kept for the longest period of either direction because each
    direction's period start counts the other's events too.
    """
    cutoff = now - timedelta(seconds=_longest_period(behavior))
    kept = [e for e in events if _after(e.timestamp, cutoff)]
    if new > previous:
        kept.append(ScaleEvent(timestamp=now, replica_change=new - previous, direction=ScaleDirection.UP))
    elif new < previous:
        kept.append(ScaleEvent(timestamp=now, replica_change=previous - new, direction=ScaleDirection.DOWN))
    return kept


def prune_scale_events(
    behavior: HPABehavior, events: Sequence[ScaleEvent], now: datetime
) -> list[ScaleEvent]:
    """Events still inside some policy period (nothing recorded)."""
    cutoff = now - timedelta(seconds=_longest_period(behavior))
    return [e for e in events if _after(e.timestamp, cutoff)]
