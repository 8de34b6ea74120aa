"""How draining pods count in the fleet: the pods that still serve, and the replica each drain keeps
in its Deployment for its replacement (the surge)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .drain_state import DRAIN_STARTED, DRAIN_SURGE, Capacity


def is_leaving(pod: Mapping[str, Any]) -> bool:
    """A pod being drained or terminating: it is leaving, not capacity."""
    meta = pod.get("metadata") or {}
    return meta.get("deletionTimestamp") is not None or DRAIN_STARTED in (meta.get("annotations") or {})


def serving_pods(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The pods the autoscaler counts as capacity (current replicas, metric sources)."""
    return [p for p in pods if not is_leaving(p)]


def surge_by_capacity(pods: Iterable[Mapping[str, Any]]) -> dict[Capacity, int]:
    """Extra replicas kept for drained or advised pods that are still there (not terminating)."""
    counts: dict[Capacity, int] = {"any": 0, "ondemand": 0, "spot": 0}
    for pod in pods:
        meta = pod.get("metadata") or {}
        surge = (meta.get("annotations") or {}).get(DRAIN_SURGE)
        if meta.get("deletionTimestamp") is None and surge in counts:
            counts[surge] += 1
    return counts


def deployment_replicas(split: Iterable[int], pods: Iterable[Mapping[str, Any]]) -> dict[Capacity, int]:
    """spec.replicas of the -ondemand and -spot Deployments: the split plus the surge.
    (A service without a pool has one Deployment: its replicas + surge_by_capacity(pods)["any"].)

    A drained pod still counts in its ReplicaSet until it terminates, so its Deployment keeps
    one replica for it (the surge) until then; when it terminates, the surge drops in the
    same step and the ReplicaSet creates nothing more."""
    ondemand, spot = split
    surge = surge_by_capacity(pods)
    return {"ondemand": ondemand + surge["ondemand"], "spot": spot + surge["spot"]}


def replicas_without_surge(spec_replicas: int, pods: Iterable[Mapping[str, Any]]) -> int:
    """The autoscaler's current_replicas: the Deployments' spec.replicas minus the replicas
    kept for drained or advised pods, so a drain neither looks like a scale-up nor hides one.
    Pair it with serving_pods() for the metric samples."""
    return max(0, spec_replicas - sum(surge_by_capacity(pods).values()))
