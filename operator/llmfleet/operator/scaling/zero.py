"""Scale to and from zero around the HPA step: the demand a router holds, and an idle window.

An AutoscalePolicy with minReplicas 0 wraps recommend_replicas as follows (pure; the
caller passes what llmfleet-router's `llmfleet_router_requests_held` says for the service,
summed over the routers, and the engines' in-flight requests):

| replicas now | held | in flight | idle for the window | minReplicas used for this sync | so                     |
| ------------ | ---- | --------- | ------------------- | ------------------------------ | ---------------------- |
| 0            | > 0  | -         | -                   | 1                              | 0 -> 1: scale from zero |
| 0            | 0    | -         | -                   | 0                              | stays 0 (no pod, no metric: Hold) |
| > 0          | any  | any > 0 or held > 0 | no        | 1                              | the HPA as usual, never below 1 |
| > 0          | 0    | 0         | yes                 | 0                              | the HPA may go to 0 (through its scale-down window and policies) |

Held requests also join the queue the HPA sees: they are spread over the ready pods'
QueueDepth/InFlight values, so a burst that arrives while replicas start asks for more.

The idle clock (`last_active`) lives in the caller's memory: lost on an operator restart,
it restarts the window, which only delays a scale to zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from llmfleet.operator.api.autoscalepolicy import AutoscalePolicySpec
from llmfleet.operator.api.metric import MetricType
from llmfleet.operator.api.scaling_status import ScalingStatus
from llmfleet.operator.scaling.decision import ScaleDecision, recommend_replicas
from llmfleet.operator.scaling.replica_calculator import PodMetric

SCALE_FROM_ZERO_REASON = "requests held by the router with no replica (scale from zero)"


@dataclass(frozen=True)
class Demand:
    held: int = 0  # requests routers hold for the service: no replica could take them
    in_flight: float = 0.0  # waiting + running over the service's pods, as last scraped


def with_held_queue(pods: Sequence[PodMetric], held: int, metric: MetricType) -> list[PodMetric]:
    """The pods with the held requests added to their queue readings, evenly."""
    counted = [p for p in pods if p.ready and p.value is not None and not p.terminating]
    if held <= 0 or not counted or metric is MetricType.KV_CACHE_USAGE:
        return list(pods)
    share = held / len(counted)
    return [replace(p, value=p.value + share) if p in counted and p.value is not None else p for p in pods]


def recommend_with_zero(
    spec: AutoscalePolicySpec,
    current_replicas: int,
    pods: Sequence[PodMetric],
    previous: ScalingStatus,
    now: datetime,
    demand: Demand,
    last_active: datetime | None,
) -> tuple[ScaleDecision, datetime | None]:
    """recommend_replicas with the table above; returns the decision and the new idle clock."""
    pods = with_held_queue(pods, demand.held, spec.metric.type)
    if spec.min_replicas > 0:
        return recommend_replicas(spec, current_replicas, pods, previous, now), last_active
    active = demand.held > 0 or demand.in_flight > 0
    if active or last_active is None:
        last_active = now  # an unknown clock (restart) starts the window, never ends it
    if current_replicas == 0:
        floor = 1 if demand.held > 0 else 0
    else:
        idle = (now - last_active).total_seconds() >= spec.scale_to_zero_idle_seconds
        floor = 0 if idle else 1
    decision = recommend_replicas(spec.model_copy(update={"min_replicas": floor}), current_replicas, pods,
                                  previous, now)
    if current_replicas == 0 and decision.replicas > 0:
        decision = _reason(decision, SCALE_FROM_ZERO_REASON)
    return decision, last_active


def _reason(decision: ScaleDecision, reason: str) -> ScaleDecision:
    records = list(decision.status.decisions)
    if records and records[-1].time == decision.status.last_scale_time:
        records[-1] = records[-1].model_copy(update={"reason": reason})
    return replace(decision, reason=reason, status=decision.status.model_copy(update={"decisions": records}))
