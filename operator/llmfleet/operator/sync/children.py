"""Small pure decisions the reconciler makes between reading the world and writing it.

| function              | question                                                          |
| --------------------- | ----------------------------------------------------------------- |
| capacities            | which Deployments does this service have: `any`, or on-demand + spot? |
| deployment_counts     | what spec.replicas does each generated Deployment hold now?      |
| split_without_surge   | the pooled split they hold, without the replicas kept for drains (split_replicas' `current`) |
| current_replicas      | what count do the generated Deployments hold now (the HPA's scale.spec.replicas)? |
| pod_metrics           | how does each pod look to the replica calculator?                 |
| scale_down_costs      | which pod-deletion-cost annotations must change before a scale-down? |
| stale_deployments     | which owned Deployments are no longer wanted (pool added/removed)? |
| edited_since_applied  | which Deployments did someone else edit since our last apply (their generation moved on)? |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from llmfleet.operator.adapters.scrape import EngineScrape
from llmfleet.operator.api.metric import MetricType
from llmfleet.operator.render.context import Capacity
from llmfleet.operator.render.labels import CAPACITY_LABEL, deployment_name
from llmfleet.operator.scaling import POD_DELETION_COST_ANNOTATION, PodMetric, fresh_value, pod_deletion_costs
from llmfleet.operator.spot.fleet_pods import surge_by_capacity
from llmfleet.operator.status import pod_ready, pod_terminating


def capacities(pooled: bool) -> tuple[Capacity, ...]:
    return ("ondemand", "spot") if pooled else ("any",)


def deployment_counts(deployments: Sequence[dict], name: str, pooled: bool) -> dict[Capacity, int | None]:
    """{capacity: spec.replicas} of the service's wanted Deployments (None: it does not exist yet)."""
    by_name = {d["metadata"]["name"]: d for d in deployments}
    out: dict[Capacity, int | None] = {}
    for c in capacities(pooled):
        d = by_name.get(deployment_name(name, c))
        out[c] = None if d is None else d["spec"].get("replicas", 1)
    return out


def split_without_surge(deployments: Sequence[dict], name: str, pods: Sequence[dict]) -> tuple[int, int] | None:
    """(ondemand, spot) the pooled Deployments ask for now, minus the replicas kept for
    draining pods (spot.split_replicas' `current`); None before both exist."""
    counts = deployment_counts(deployments, name, True)
    if counts["ondemand"] is None or counts["spot"] is None:
        return None
    surge = surge_by_capacity(pods)
    return max(0, counts["ondemand"] - surge["ondemand"]), max(0, counts["spot"] - surge["spot"])


def owned_by(obj: dict, uid: str | None) -> bool:
    return any(ref.get("uid") == uid and ref.get("controller") for ref in obj["metadata"].get("ownerReferences") or [])


def current_replicas(deployments: Sequence[dict], name: str, pooled: bool) -> int | None:
    """Sum of spec.replicas over the service's wanted Deployments; None when none exists yet."""
    wanted = {deployment_name(name, c) for c in capacities(pooled)}
    counts = [d["spec"].get("replicas", 1) for d in deployments if d["metadata"]["name"] in wanted]
    return sum(counts) if counts else None


def stale_deployments(deployments: Sequence[dict], name: str, pooled: bool) -> list[str]:
    """Owned Deployments of a capacity this service no longer has (its spotPoolRef changed)."""
    wanted = {deployment_name(name, c) for c in capacities(pooled)}
    return sorted(d["metadata"]["name"] for d in deployments if d["metadata"]["name"] not in wanted)


def edited_since_applied(deployments: Sequence[dict], applied: Mapping[str, int]) -> list[str]:
    """The Deployments whose metadata.generation is past the one our last apply returned: their
    spec was edited by someone else since (the API server moves the generation on every spec
    change, and only then). A Deployment we never applied in this process is not judged."""
    return sorted(d["metadata"]["name"] for d in deployments
                  if d["metadata"]["name"] in applied
                  and int(d["metadata"].get("generation") or 0) > applied[d["metadata"]["name"]])


def pod_metrics(
    pods: Sequence[dict],
    scrapes: Mapping[str, EngineScrape],
    metric: MetricType,
    now: datetime,
    sync_period_seconds: int,
) -> list[PodMetric]:
    """The replica calculator's view: ready or starting, a fresh value or none, terminating."""
    out = []
    for pod in pods:
        name = pod["metadata"]["name"]
        scrape = scrapes.get(name)
        sample = scrape.sample if scrape is not None else None
        ready = pod_ready(pod)
        out.append(
            PodMetric(
                name=name,
                ready=ready,
                value=fresh_value(metric, sample, now, sync_period_seconds) if ready else None,
                terminating=pod_terminating(pod),
            )
        )
    return out


def scale_down_costs(pods: Sequence[dict], scrapes: Mapping[str, EngineScrape]) -> dict[str, str]:
    """{pod: new pod-deletion-cost} for ready pods whose annotation differs from their in-flight count.

    Pods that are not ready carry no cost: the ReplicaSet controller removes them first anyway.
    """
    inflight = {
        p["metadata"]["name"]: scrapes[p["metadata"]["name"]].in_flight
        for p in pods
        if pod_ready(p) and p["metadata"]["name"] in scrapes and scrapes[p["metadata"]["name"]].error is None
    }
    wanted = pod_deletion_costs(inflight)
    current = {
        p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(POD_DELETION_COST_ANNOTATION)
        for p in pods
    }
    return {pod: cost for pod, cost in wanted.items() if current.get(pod) != cost}


def pods_by_capacity(pods: Sequence[dict], capacity: Capacity) -> list[dict]:
    return [p for p in pods if (p["metadata"].get("labels") or {}).get(CAPACITY_LABEL) == capacity]
