"""How many replicas run on on-demand and how many on spot nodes, with fallback to on-demand.

| rule           | replicas                                                                   |
| -------------- | -------------------------------------------------------------------------- |
| base           | the first min(total, onDemandBase) are on-demand, always                   |
| share          | spot = floor((total - base) * maxSpotShare / 100): spot never exceeds the share |
| scale-down     | spot goes first: spot = min(current spot, new target spot)                 |
| scale-up       | new replicas go to spot up to the target; a running on-demand pod is never |
|                | swapped for a spot pod that still has to load its model                    |
| fallback       | no schedulable spot node → every spot replica without a running pod on a   |
|                | spot node moves to on-demand at once; spot pods Pending (unschedulable)    |
|                | longer than fallback.pendingSeconds → that many move                       |
| return         | spot schedulable, nothing Pending too long, for fallback.returnAfterSeconds |
|                | since both the last sign of missing spot room and the nodes' readiness → back |

The fallback state (replicas moved, since when) lives in the LLMService's status.spot
(fallbackReplicas, fallbackSince), so it survives an operator restart; spot readiness is
read from the nodes themselves (Ready condition's lastTransitionTime).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llmfleet.operator.api.common import Toleration
from llmfleet.operator.api.spotpool import SpotPoolSpec
from llmfleet.operator.spot.notice import Notice, parse_rfc3339

_DRAIN_STARTED = "llmfleet.dev/drain-started"  # drain.DRAIN_STARTED (drain imports nothing from here)


@dataclass(frozen=True)
class SpotCapacity:
    """What the cluster says about spot capacity right now (see observe_spot_capacity)."""

    schedulable_nodes: int  # spot nodes Ready, not cordoned, no untolerated taint, no notice
    pending_too_long: int  # spot pods unschedulable for longer than fallback.pendingSeconds
    available_since: datetime | None = None  # since when some schedulable spot node has been Ready
    placed: int = 0  # spot pods running on spot nodes without an interruption notice, not leaving


@dataclass(frozen=True)
class FallbackState:
    """Spot replicas running on on-demand nodes; kept in status.spot.fallbackReplicas/fallbackSince."""

    replicas: int = 0
    # the last time the reason to fall back was seen (replicas moved, or spot still unable to hold them):
    # the return waits returnAfterSeconds from here, whatever the nodes' Ready history
    since: datetime | None = None

    def to_status(self) -> dict[str, Any]:
        return {
            "fallbackActive": self.replicas > 0,
            "fallbackReplicas": self.replicas,
            "fallbackSince": None if self.since is None else self.since.isoformat(),
        }

    @classmethod
    def from_status(cls, spot_status: Mapping[str, Any] | None) -> FallbackState:
        spot_status = spot_status or {}
        replicas = spot_status.get("fallbackReplicas")
        if replicas is None:  # written before fallbackReplicas existed: a bool only
            replicas = 1 if spot_status.get("fallbackActive") else 0
        since = spot_status.get("fallbackSince")
        if isinstance(since, str):
            since = parse_rfc3339(since)
        return cls(int(replicas), since)


@dataclass(frozen=True)
class Split:
    ondemand: int
    spot: int
    fallback: FallbackState
    reason: str  # one sentence, for the event / the status' last scale reason

    def __iter__(self) -> Iterator[int]:
        return iter((self.ondemand, self.spot))


def target_split(total: int, pool: SpotPoolSpec) -> tuple[int, int]:
    """(ondemand, spot) by base and share alone."""
    base = min(total, pool.on_demand_base)
    spot = (total - base) * pool.max_spot_share // 100
    return total - spot, spot


def _fallback(
    state: FallbackState, wanted_spot: int, cap: SpotCapacity, pool: SpotPoolSpec, now: datetime
) -> tuple[FallbackState, str | None]:
    """(new state, why) — how many of the wanted spot replicas run on-demand instead.

    Only replicas spot cannot hold move: pods running on spot nodes without a notice stay
    (a rebalance taint on every spot node must not kill healthy spot pods)."""
    back_after = pool.fallback.return_after_seconds
    if wanted_spot == 0:
        return FallbackState(), None
    need, why = 0, None
    if cap.schedulable_nodes == 0:
        need, why = max(0, wanted_spot - cap.placed), "no schedulable spot node"
    if cap.pending_too_long > 0:
        need = max(need, state.replicas + cap.pending_too_long)
        why = f"{cap.pending_too_long} spot pod(s) Pending longer than {pool.fallback.pending_seconds}s"
    need = min(need, wanted_spot)
    if need > state.replicas:
        return FallbackState(need, now), why
    if state.replicas == 0:
        return state, None
    kept = FallbackState(min(state.replicas, wanted_spot), state.since)
    if why is not None:
        # still no room on spot: restart the quiet period, so that capacity coming back (a taint
        # lifted from nodes that stayed Ready all along) waits returnAfterSeconds before the return
        return FallbackState(kept.replicas, now), why
    quiet = state.since is None or (now - state.since).total_seconds() >= back_after
    ready = cap.available_since is not None and (now - cap.available_since).total_seconds() >= back_after
    if quiet and ready:
        return FallbackState(), f"spot capacity back for {back_after}s"
    return kept, "waiting for spot capacity to stay back"


def split_replicas(
    total: int,
    pool: SpotPoolSpec,
    capacity: SpotCapacity,
    fallback: FallbackState,
    now: datetime,
    current: tuple[int, int] | None = None,
) -> Split:
    """The replicas of the `-ondemand` and `-spot` Deployments for `total` serving replicas.

    `current` is (ondemand, spot) the Deployments ask for now, without surge (None on creation).
    Draining pods are not part of `total` or `current`: surge is added by deployment_replicas.
    """
    od_target, spot_target = target_split(total, pool)
    spot, why = (
        spot_target,
        f"base {min(total, pool.on_demand_base)}, {pool.max_spot_share}% of the rest on spot",
    )
    if current is not None:
        cur_total = sum(current)
        cur_spot = current[1] + fallback.replicas  # the spot replicas wanted before the fallback
        if total < cur_total:
            spot = min(cur_spot, spot_target)
            why = "scale-down removes spot replicas first"
        elif total > cur_total:
            spot = min(spot_target, cur_spot + total - cur_total)
            why = "new replicas go to spot up to the share"
        elif cur_spot > spot_target:
            spot = spot_target
            why = "spot above the share (the pool changed): the excess moves to on-demand"
        else:
            spot = cur_spot
            why = "unchanged"
    state, fb_why = _fallback(fallback, spot, capacity, pool, now)
    if fb_why is not None:
        why = f"fallback: {fb_why}" if state.replicas else fb_why
    return Split(total - spot + state.replicas, spot - state.replicas, state, why)


def _ready_since(node: Mapping[str, Any]) -> datetime | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            if cond.get("status") != "True":
                return None
            return parse_rfc3339(cond.get("lastTransitionTime")) or parse_rfc3339(
                (node.get("metadata") or {}).get("creationTimestamp")
            )
    return None


def tolerates(tolerations: Sequence[Toleration], taint: Mapping[str, Any]) -> bool:
    """core/v1 toleration matching, for NoSchedule/NoExecute taints."""
    for tol in tolerations:
        if tol.effect and tol.effect != taint.get("effect"):
            continue
        if not tol.key:
            if tol.operator == "Exists":
                return True
            continue
        if tol.key != taint.get("key"):
            continue
        if tol.operator == "Exists" or (tol.value or "") == (taint.get("value") or ""):
            return True
    return False


def is_spot_node(node: Mapping[str, Any], pool: SpotPoolSpec) -> bool:
    labels = (node.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in pool.spot.node_selector.items())


def node_schedulable(node: Mapping[str, Any], tolerations: Sequence[Toleration]) -> bool:
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return False
    return all(
        t.get("effect") not in ("NoSchedule", "NoExecute") or tolerates(tolerations, t)
        for t in spec.get("taints") or []
    )


def _unschedulable_since(pod: Mapping[str, Any]) -> datetime | None:
    status = pod.get("status") or {}
    if status.get("phase") != "Pending" or (pod.get("spec") or {}).get("nodeName"):
        return None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return parse_rfc3339(cond.get("lastTransitionTime")) or parse_rfc3339(
                (pod.get("metadata") or {}).get("creationTimestamp")
            )
    return None


def observe_spot_capacity(
    nodes: Sequence[Mapping[str, Any]],
    spot_pods: Sequence[Mapping[str, Any]],
    pool: SpotPoolSpec,
    notices: Sequence[Notice],
    now: datetime,
) -> SpotCapacity:
    """SpotCapacity from the cluster: `nodes` (any; spot ones are picked by the pool's selector)
    and the spot Deployment's pods. Nodes with a notice (advisory too) do not count."""
    noticed = {n.node for n in notices}
    ready: list[datetime] = []
    for node in nodes:
        name = (node.get("metadata") or {}).get("name")
        if (
            not is_spot_node(node, pool)
            or name in noticed
            or not node_schedulable(node, pool.spot.tolerations)
        ):
            continue
        since = _ready_since(node)
        if since is not None:
            ready.append(since)
    interrupted = {n.node for n in notices if n.kind == "Interruption"}
    spot_names = {(n.get("metadata") or {}).get("name") for n in nodes if is_spot_node(n, pool)}
    pending = placed = 0
    for pod in spot_pods:
        since = _unschedulable_since(pod)
        if since is not None and (now - since).total_seconds() > pool.fallback.pending_seconds:
            pending += 1
        meta = pod.get("metadata") or {}
        on: str | None = (pod.get("spec") or {}).get("nodeName")
        leaving = meta.get("deletionTimestamp") is not None or _DRAIN_STARTED in (
            meta.get("annotations") or {}
        )
        if on in spot_names and on not in interrupted and not leaving:
            placed += 1
    return SpotCapacity(len(ready), pending, min(ready) if ready else None, placed)
