"""The LLMService status after a sync, and the events its transitions announce (pure).

Computed from the plan and from what the writes left (the Deployments as applied, the pods
as marked or evicted, an apply the API server refused), so status never runs ahead of them.
Events fire on transitions only: a sync that changes nothing announces nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from llmfleet.operator.api.common import Condition
from llmfleet.operator.api.llmservice_status import Cost
from llmfleet.operator.cost import fleet_cost
from llmfleet.operator.render import endpoint_url, selector_string, served_model_name
from llmfleet.operator.router_endpoint import router_status
from llmfleet.operator.scaling import merge_conditions
from llmfleet.operator.status import (
    Problem,
    compute_status,
    model_startup_seconds,
    pod_ready,
    pod_terminating,
)

from .children import pods_by_capacity
from .observation import Observation
from .plan import Event, SyncPlan
from .spot_status import draining_status, interrupted_condition

AUTOSCALER_CONDITIONS = ("MetricsAvailable", "AbleToScale", "ScalingLimited")


@dataclass
class StatusPlan:
    fields: dict  # the status fields we own (None: remove)
    events: list[Event] = field(default_factory=list)
    desired: int = 0  # shown as status.desiredReplicas and the desired-replicas gauge
    cost: Cost | None = None


def merge_patch(old: dict, new: dict) -> dict:
    """The JSON merge patch (RFC 7386) turning `old` into `new` for the keys `new` names.

    A None in `new` removes the key; keys `new` does not name are left alone (another
    writer's, such as status.kopf or the spot handler's fields).
    """
    patch: dict = {}
    for key, value in new.items():
        before = old.get(key)
        if value is None:
            if before is not None:
                patch[key] = None
        elif isinstance(value, dict) and isinstance(before, dict):
            inner = merge_patch(before, value)
            inner.update({k: None for k in before if k not in value})
            if inner:
                patch[key] = inner
        elif value != before:
            patch[key] = value
    return patch


def failed_status(obs: Observation, problem: Problem, now: datetime) -> dict:
    """A spec the operator cannot use: phase Failed, Ready/Progressing False, Degraded True."""
    gen = obs.body["metadata"].get("generation")
    conds = [Condition(type=t, status=s, reason=problem.reason, message=problem.message,
                       observed_generation=gen, last_transition_time=now)
             for t, s in (("Ready", "False"), ("Progressing", "False"), ("Degraded", "True"))]
    old = [Condition.model_validate(c) for c in (obs.body.get("status") or {}).get("conditions") or []]
    return {"phase": "Failed", "observedGeneration": gen,
            "conditions": [c.to_wire() for c in merge_conditions(old, conds)]}


def _with_condition(conditions: list[dict], cond: Condition) -> list[dict]:
    merged = merge_conditions([Condition.model_validate(c) for c in conditions], [cond])
    return [c.to_wire() for c in merged]


def plan_status(obs: Observation, plan: SyncPlan, deployments: list[dict], pods: list[dict],
                problem: Problem | None, now: datetime, extra: Sequence[Condition] = ()) -> StatusPlan:
    """`extra`: conditions the writes produced (the InferencePool's)."""
    assert plan.service is not None
    service, old = plan.service, obs.old_status
    name, namespace = service.metadata.name, service.metadata.namespace or ""
    generation = obs.body["metadata"].get("generation")
    desired = plan.desired if plan.desired is not None else (plan.current or 0)
    state = compute_status(generation=generation, desired=desired, deployments=deployments, pods=pods,
                           now=now, reference_problem=problem)

    ready_pods = [p for p in pods if pod_ready(p)]
    scraped = [(p, obs.scrapes[p["metadata"]["name"]]) for p in ready_pods if p["metadata"]["name"] in obs.scrapes]
    avg_queue = round(sum(s.waiting or 0.0 for _, s in scraped) / len(scraped), 2) if scraped else None
    loads = [(p["status"].get("startTime") or "", s.model_load_seconds) for p, s in scraped
             if s.model_load_seconds is not None]
    startup = max(loads)[1] if loads else model_startup_seconds(pods)
    ready_spot = len(pods_by_capacity(ready_pods, "spot"))
    cost = fleet_cost(service.spec.pricing, len(ready_pods) - ready_spot, ready_spot, obs.tokens_per_second)
    new: dict = {
        "observedGeneration": generation,
        "phase": state.phase,
        "replicas": state.replicas,
        "readyReplicas": state.ready_replicas,
        "desiredReplicas": state.desired_replicas,
        "readyText": state.ready_text,
        "selector": selector_string(name),
        "endpoint": endpoint_url(name, namespace),
        "servedModelName": served_model_name(service),
        "router": router_status(obs.router_url, service),
        "averageQueueDepth": avg_queue,
        "modelStartupSeconds": round(startup, 1) if startup is not None else None,
        "cost": cost.to_wire() if cost is not None else None,
        "lastScaleReason": old.get("lastScaleReason"),
    }
    if plan.pooled:
        live = [p for p in pods if not pod_terminating(p)]
        new["spotReplicas"] = len(pods_by_capacity(live, "spot"))
        new["onDemandReplicas"] = len(pods_by_capacity(live, "ondemand"))
    conditions = merge_conditions(
        [Condition.model_validate(c) for c in old.get("conditions") or []
         if plan.policy is not None or c.get("type") not in AUTOSCALER_CONDITIONS],
        [*state.conditions, *[c.model_copy(update={"observed_generation": generation}) for c in plan.conditions],
         *extra],
    )
    new["conditions"] = [c.to_wire() for c in conditions]
    new.update(plan.status)
    spot_cond = interrupted_condition(pods).model_copy(update={"observed_generation": generation})
    if plan.pooled and obs.spot is not None:
        new["conditions"] = _with_condition(new["conditions"], spot_cond)
        new["spot"] = {**(plan.spot_status or (old.get("spot") or {})), **draining_status(pods)}
    elif not plan.pooled:
        # No pool: the SpotInterrupted condition once a drain has touched the service (kept,
        # False, afterwards), status.spot only while a pod carries drain marks.
        had = any(c.get("type") == "SpotInterrupted" for c in old.get("conditions") or [])
        if obs.notices is not None or had:
            new["conditions"] = _with_condition(new["conditions"], spot_cond)
        draining = draining_status(pods)
        new["spot"] = draining if draining["drainingPodCount"] else None
    if plan.policy is None:
        new["scaling"] = None
    elif "scaling" not in new and obs.last_scaling is not None:
        new["scaling"] = obs.last_scaling.to_wire()
    return StatusPlan(new, announce(old, new, problem), desired, cost)


def announce(old: dict, new: dict, problem: Problem | None) -> list[Event]:
    """Events on transitions only (a timer must not repeat them every tick)."""
    out: list[Event] = []
    old_phase, new_phase = old.get("phase"), new.get("phase")
    ready: dict = next((c for c in new["conditions"] if c["type"] == "Ready"), {})
    old_ready: dict = next((c for c in old.get("conditions") or [] if c.get("type") == "Ready"), {})
    if problem is not None and old_ready.get("reason") != problem.reason:
        out.append(("Warning", problem.reason, problem.message))
    if old_phase != new_phase:
        kind = "Warning" if new_phase in ("Failed", "Degraded") else "Normal"
        degraded: dict = next((c for c in new["conditions"] if c["type"] == "Degraded"), {})
        message = degraded.get("message") if kind == "Warning" else ready.get("message")
        out.append((kind, f"Phase{new_phase}", f"{old_phase or 'New'} -> {new_phase}: {message}"))
    return out
