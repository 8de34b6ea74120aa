"""One scaling decision: the HPA's reconcile step as a pure function.

recommend_replicas(spec, current replicas, pods, previous status.scaling, now) →
ScaleDecision. The caller (the kopf handler, or the simulator) reads the world, calls
it, applies `replicas` to the generated Deployment(s) when `rescale`, and writes
`status` back to LLMService.status.scaling and `conditions` into its conditions.

Steps, as horizontal.go takes them:
1. bounds in force (schedules); a current count outside them goes straight to the bound;
2. the metric's proposal (replica_calculator), or onMetricsUnavailable when no ready
   pod has a fresh metric: Hold keeps the count and records nothing, Fallback proposes
   fallbackReplicas, which then goes through the same windows and limits;
3. stabilization, then rate limits and bounds (behavior);
4. history: the recommendation, and the scale event and decision when the count changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from llmfleet.operator.api.autoscalepolicy import AutoscalePolicySpec, OnMetricsUnavailable
from llmfleet.operator.api.common import Condition
from llmfleet.operator.api.scaling_status import (
    DECISION_HISTORY_LIMIT,
    BoundsInForce,
    Recommendation,
    ScaleDecisionRecord,
    ScalingStatus,
)
from llmfleet.operator.scaling.behavior import (
    limit_scale_rate,
    prune_scale_events,
    record_scale_event,
    stabilize_recommendation,
)
from llmfleet.operator.scaling.replica_calculator import PodMetric, ReplicaCalculation, calculate_replicas
from llmfleet.operator.scaling.schedule import bounds_in_force

METRICS_AVAILABLE = "MetricsAvailable"
ABLE_TO_SCALE = "AbleToScale"
SCALING_LIMITED = "ScalingLimited"


@dataclass(frozen=True)
class ScaleDecision:
    replicas: int  # the count the target should have after this sync
    rescale: bool  # replicas != current: patch the Deployment(s), emit SuccessfulRescale
    reason: str  # why, for the event and the decision history ("" when nothing changes)
    metric_replicas: int | None  # the unstabilized proposal (None on Hold or a bounds correction)
    metric_average: float | None  # metric average over ready pods with a metric
    bounds: BoundsInForce
    conditions: list[Condition]  # MetricsAvailable, AbleToScale, ScalingLimited
    status: ScalingStatus  # the next LLMService.status.scaling


def _condition(type_: str, ok: bool, reason: str, message: str, now: datetime) -> Condition:
    return Condition(
        type=type_, status="True" if ok else "False", reason=reason, message=message, last_transition_time=now
    )


def _schedule_note(bounds: BoundsInForce) -> str:
    return f" (schedules in force: {', '.join(bounds.active_schedules)})" if bounds.active_schedules else ""


def _metrics_condition(
    spec: AutoscalePolicySpec,
    calc: ReplicaCalculation | None,
    pods: Sequence[PodMetric],
    current: int,
    now: datetime,
) -> tuple[Condition, bool]:
    """The MetricsAvailable condition, and whether Fallback applies."""
    metric = spec.metric.type.value
    if calc is not None:
        return _condition(
            METRICS_AVAILABLE,
            True,
            "ValidMetricFound",
            f"{calc.ready_count} ready pod(s) reported {metric}; average {calc.average:g} "
            f"(target {spec.metric.target_average_value:g})",
            now,
        ), False
    live = [p for p in pods if not p.terminating]
    if not any(p.ready for p in live):
        # Every pod is still loading its model (or none exists yet): nothing has failed,
        # the fleet is starting. Holding is the only sensible reading, whatever the policy.
        return _condition(
            METRICS_AVAILABLE,
            False,
            "NoReadyPods",
            f"no ready pod to measure yet; holding {current} replicas",
            now,
        ), False
    if spec.on_metrics_unavailable is OnMetricsUnavailable.FALLBACK:
        return _condition(
            METRICS_AVAILABLE,
            False,
            "UsingFallbackReplicas",
            f"no ready pod reported a fresh {metric}; scaling towards fallbackReplicas "
            f"{spec.fallback_replicas}",
            now,
        ), True
    return _condition(
        METRICS_AVAILABLE,
        False,
        "HoldingReplicas",
        f"no ready pod reported a fresh {metric}; holding {current} replicas (onMetricsUnavailable: Hold)",
        now,
    ), False


def recommend_replicas(
    spec: AutoscalePolicySpec,
    current_replicas: int,
    pods: Sequence[PodMetric],
    previous: ScalingStatus,
    now: datetime,
) -> ScaleDecision:
    """Decide the replica count for one LLMService at `now` (timezone-aware).

    current_replicas is the replicas last set on the target (the Deployments' spec),
    as the HPA reads scale.spec.replicas: pods still starting are part of it.
    """
    bounds = bounds_in_force(spec, now)
    calc = calculate_replicas(current_replicas, pods, spec.metric.target_average_value, spec.tolerance)
    metrics_condition, use_fallback = _metrics_condition(spec, calc, pods, current_replicas, now)

    recommendations = list(previous.recommendations)
    if not recommendations:
        # The HPA seeds a new autoscaler's history with the current count, so the first
        # five minutes cannot scale down on a single low sample.
        recommendations = [Recommendation(timestamp=now, replicas=current_replicas)]

    conditions = [metrics_condition]
    metric_replicas: int | None = None
    metric = spec.metric.type.value
    if current_replicas > bounds.max_replicas:
        # Out of bounds (a policy edit or a schedule starting): straight to the bound, no
        # windows, as the HPA does for an edited maxReplicas.
        desired, reason = (
            bounds.max_replicas,
            "Current number of replicas above maxReplicas" + _schedule_note(bounds),
        )
        conditions.append(_condition(SCALING_LIMITED, True, "TooManyReplicas", reason, now))
    elif current_replicas < bounds.min_replicas:
        desired, reason = (
            bounds.min_replicas,
            "Current number of replicas below minReplicas" + _schedule_note(bounds),
        )
        conditions.append(_condition(SCALING_LIMITED, True, "TooFewReplicas", reason, now))
    elif calc is None and not use_fallback:
        desired, reason = current_replicas, ""  # Hold: like the HPA on a metrics error, record nothing
    else:
        if calc is not None:
            metric_replicas = calc.replicas
            up_reason, down_reason = f"{metric} above target", f"{metric} below target"
        else:
            metric_replicas = spec.fallback_replicas
            up_reason = down_reason = f"metrics unavailable, fallbackReplicas {spec.fallback_replicas}"
        assert metric_replicas is not None
        stabilized = stabilize_recommendation(
            spec.behavior, current_replicas, metric_replicas, recommendations, now
        )
        recommendations = stabilized.recommendations
        limited = limit_scale_rate(
            spec.behavior,
            current_replicas,
            stabilized.replicas,
            bounds.min_replicas,
            bounds.max_replicas,
            previous.scale_events,
            now,
        )
        desired = limited.replicas
        reason = (
            up_reason if desired > current_replicas else down_reason if desired < current_replicas else ""
        )
        conditions.append(_condition(ABLE_TO_SCALE, True, stabilized.reason, stabilized.message, now))
        conditions.append(
            _condition(
                SCALING_LIMITED,
                limited.limited,
                limited.reason,
                limited.message + _schedule_note(bounds),
                now,
            )
        )

    rescale = desired != current_replicas
    if rescale:
        events = record_scale_event(spec.behavior, previous.scale_events, current_replicas, desired, now)
        decisions = [
            *previous.decisions,
            ScaleDecisionRecord(time=now, from_=current_replicas, to=desired, reason=reason),
        ]
        decisions = decisions[-DECISION_HISTORY_LIMIT:]
    else:
        events = prune_scale_events(spec.behavior, previous.scale_events, now)
        decisions = list(previous.decisions)

    status = previous.model_copy(
        update={
            "desired_replicas": desired,
            "current_metric": calc.average if calc is not None else None,
            "metric_type": spec.metric.type,
            "last_sync_time": now,
            "last_scale_time": now if rescale else previous.last_scale_time,
            "decisions": decisions,
            "recommendations": recommendations,
            "scale_events": events,
        }
    )
    return ScaleDecision(
        replicas=desired,
        rescale=rescale,
        reason=reason,
        metric_replicas=metric_replicas,
        metric_average=calc.average if calc is not None else None,
        bounds=bounds,
        conditions=conditions,
        status=status,
    )


def merge_conditions(existing: Sequence[Condition], new: Sequence[Condition]) -> list[Condition]:
    """Replace conditions by type; keep lastTransitionTime when a condition's status did not change."""
    merged = {c.type: c for c in existing}
    for cond in new:
        old = merged.get(cond.type)
        if old is not None and old.status == cond.status:
            cond = cond.model_copy(update={"last_transition_time": old.last_transition_time})
        merged[cond.type] = cond
    return list(merged.values())
