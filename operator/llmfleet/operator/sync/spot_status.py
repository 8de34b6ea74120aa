"""The spot parts of the status (pure): the service's SpotInterrupted condition and status.spot,
the fallback's events, and a SpotPool's status fields."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from llmfleet.operator.api.common import Condition
from llmfleet.operator.api.llmservice_status import MAX_DRAINING_PODS
from llmfleet.operator.api.spotpool import SpotPoolSpec
from llmfleet.operator.spot.drain_state import DRAIN_DEADLINE, DRAIN_STARTED, DRAIN_SURGE
from llmfleet.operator.spot.pool_notices import check_notice_length, interrupted_nodes_status
from llmfleet.operator.spot.split import is_spot_node

from .spot_view import SpotView


def draining_pods(pods: list[dict]) -> list[dict]:
    """status.spot.drainingPods: the pods carrying drain marks."""
    out = []
    for pod in pods:
        a = pod["metadata"].get("annotations") or {}
        if DRAIN_STARTED in a:
            out.append({"name": pod["metadata"]["name"], "node": (pod.get("spec") or {}).get("nodeName"),
                        "startedAt": a.get(DRAIN_STARTED), "deadline": a.get(DRAIN_DEADLINE)})
    return sorted(out, key=lambda x: x["name"])


def draining_status(pods: list[dict]) -> dict:
    """status.spot's drainingPods (the first MAX_DRAINING_PODS by name) and drainingPodCount."""
    draining = draining_pods(pods)
    return {"drainingPods": draining[:MAX_DRAINING_PODS], "drainingPodCount": len(draining)}


def _first(names: list[str], shown: int = 20) -> str:
    """Names for a condition message, the first `shown` of them: a mass interruption must not
    outgrow the message's bound (32 KiB) or the status write."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def interrupted_condition(pods: list[dict]) -> Condition:
    draining = draining_pods(pods)
    if draining:
        nodes = sorted({d["node"] or "?" for d in draining})
        return Condition(type="SpotInterrupted", status="True", reason="Draining",
                         message=f"{len(draining)} pod(s) draining off reclaimed node(s) {_first(nodes)}: "
                                 + _first([d["name"] for d in draining]))
    advised = [p["metadata"]["name"] for p in pods if DRAIN_SURGE in (p["metadata"].get("annotations") or {})]
    if advised:
        return Condition(type="SpotInterrupted", status="False", reason="ReplacementStarted",
                         message=f"rebalance recommendation: replacement started for {', '.join(advised)}")
    return Condition(type="SpotInterrupted", status="False", reason="NoInterruption",
                     message="no engine pod of this service is on a node with an interruption notice")


def fallback_event(before: Mapping, after: Mapping) -> tuple[str, str] | None:
    """(reason, message) when the fallback moved replicas, else None."""
    b, a = int(before.get("fallbackReplicas") or 0), int(after.get("fallbackReplicas") or 0)
    if a > b:
        return "SpotFallback", f"{a} spot replica(s) run on on-demand nodes (was {b})"
    if a < b:
        return "SpotReturned", f"{b - a} replica(s) back to spot ({a} still on on-demand)"
    return None


def pool_status_fields(obj: Mapping, pool: SpotPoolSpec, view: SpotView, needed: int, drained: int, cut: int,
                       now: datetime) -> dict:
    """The SpotPool status fields that differ from `obj`'s: node counts, interruptions (counters
    add to `obj`'s), NoticeTooShort for the longest drain (`needed` seconds) of its services."""
    old = obj.get("status") or {}
    entries, new = interrupted_nodes_status(view.scan.notices, old.get("interruptedNodes"), now)
    spot_nodes = [n for n in view.nodes if is_spot_node(n, pool)]
    od_sel = pool.on_demand.node_selector
    od_nodes = [n for n in view.nodes if not is_spot_node(n, pool) and all(
        ((n["metadata"].get("labels") or {}).get(k) == v) for k, v in od_sel.items())]
    check = check_notice_length(spot_nodes, pool, needed, view.scan.notices).condition()
    old_conds = [Condition.model_validate(c) for c in old.get("conditions") or []]
    prev = next((c for c in old_conds if c.type == "NoticeTooShort"), None)
    cond = Condition(type="NoticeTooShort", observed_generation=obj["metadata"].get("generation"),
                     last_transition_time=(prev.last_transition_time if prev is not None
                                           and prev.status == check["status"] else now),
                     **{k: check[k] for k in ("status", "reason", "message")})
    conds = [c for c in old_conds if c.type != "NoticeTooShort"] + [cond]
    fields = {
        "observedGeneration": obj["metadata"].get("generation"),
        "spotNodes": len(spot_nodes),
        "onDemandNodes": len(od_nodes),
        "interruptionsSeen": int(old.get("interruptionsSeen") or 0) + new,
        "podsDrained": int(old.get("podsDrained") or 0) + drained,
        "requestsCut": int(old.get("requestsCut") or 0) + cut,
        "interruptedNodes": entries,
        "interruptedNodeCount": len(view.scan.notices),
        "conditions": [c.to_wire() for c in conds],
    }
    return {k: v for k, v in fields.items() if old.get(k) != v}
