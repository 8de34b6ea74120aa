"""The drain of one engine pod off a node that is going away, as a state machine over plain data.

Timeline (D = the node's deadline, M = drainDeadlineMarginSeconds, G = the pod's
terminationGracePeriodSeconds):

| time                       | what happens                                                          |
| -------------------------- | --------------------------------------------------------------------- |
| notice seen                | mark the pod, Surge the replacement, POST /drain (not-ready at once)  |
| in_flight = 0 after grace  | Evict with grace min(G, D-M-now): nothing left to wait for            |
| evict_by  = D - M - G      | Evict anyway: the latest eviction that still gets the pod its full G  |
| 429 (PDB)                  | retry with backoff (1, 2, 4, 5, 5 … s), each attempt recorded on the pod |
| delete_at = D - M - 5 s    | Delete with grace D-M-now: waiting longer lets SIGKILL land mid-request |
| D - M                      | the pod is gone; requests still in flight then are the cut ones       |

Why wait for evict_by instead of evicting at once: the engine's own --shutdown-timeout caps
how long it finishes requests after SIGTERM; a drained pod that is not yet terminating keeps
finishing them without that cap, and the endpoints already dropped it.

State that survives an operator restart lives on the pod (annotations below) and in the
engine (GET /drain: draining, in_flight); nothing is kept in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeGuard

from .signals import Notice, format_rfc3339, parse_rfc3339

Capacity = Literal["any", "ondemand", "spot"]  # the pod's llmfleet.dev/capacity label (its Deployment)

DRAIN_STARTED = "llmfleet.dev/drain-started"  # RFC 3339: when the operator started the drain
DRAIN_DEADLINE = "llmfleet.dev/drain-deadline"  # RFC 3339: the node deadline the drain works to
DRAIN_SURGE = (
    "llmfleet.dev/drain-surge"  # "spot" | "ondemand" | "any": the Deployment keeping +1 for this pod
)
EVICTION_ATTEMPTS = "llmfleet.dev/eviction-attempts"  # refused evictions so far (429 or error)
EVICTION_RETRY_AT = "llmfleet.dev/eviction-retry-at"  # RFC 3339: not before this time again

CAPACITY_LABEL = "llmfleet.dev/capacity"  # same key as render.labels.CAPACITY_LABEL
DELETE_BEFORE_STOP_SECONDS = 5  # delete (bypassing the PDB) this long before D - M at the latest
BACKOFF_SECONDS = (1, 2, 4, 5)  # eviction calls are cheap; a replacement turning ready is noticed within 5 s
POLL_SECONDS = 2  # how often a waiting drain looks at the engine again


# --- actions: what the handler does, in order ------------------------------------------


@dataclass(frozen=True)
class Annotate:
    pod: str
    annotations: dict[str, str | None]  # None removes the annotation (merge-patch semantics)


@dataclass(frozen=True)
class Surge:
    """Start the replacement now: the pod's own Deployment runs `delta` more replicas, so its
    ReplicaSet creates the replacement while the draining pod still counts as one of its pods.
    Where the replacement lands is the split's business: another spot node while spot is
    schedulable, else the fallback puts the replica on the on-demand Deployment.

    Durable form: the pod's DRAIN_SURGE annotation (set by the Annotate in the same plan);
    the handler sets replicas with deployment_replicas(), so a restart never surges twice."""

    capacity: Capacity
    delta: int


@dataclass(frozen=True)
class PostDrain:
    pod: str  # POST /drain to the pod's engine


@dataclass(frozen=True)
class Wait:
    until: datetime
    why: str


@dataclass(frozen=True)
class Evict:
    pod: str
    grace_seconds: int  # DeleteOptions.gracePeriodSeconds in the Eviction body


@dataclass(frozen=True)
class Delete:
    pod: str
    grace_seconds: int


@dataclass(frozen=True)
class RecordEvent:
    pod: str
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = Annotate | Surge | PostDrain | Wait | Evict | Delete | RecordEvent


# --- inputs ------------------------------------------------------------------------------


def _is_capacity(value: object) -> TypeGuard[Capacity]:
    return value in ("any", "ondemand", "spot")


@dataclass(frozen=True)
class DrainMarks:
    """The drain state written on the pod by the operator (see the annotation keys above)."""

    started: datetime | None = None
    deadline: datetime | None = None
    surge: Capacity | None = None
    eviction_attempts: int = 0
    eviction_retry_at: datetime | None = None

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str] | None) -> DrainMarks:
        a = annotations or {}
        surge = a.get(DRAIN_SURGE)
        attempts = a.get(EVICTION_ATTEMPTS, "0")
        return cls(
            started=parse_rfc3339(a.get(DRAIN_STARTED)),
            deadline=parse_rfc3339(a.get(DRAIN_DEADLINE)),
            surge=surge if _is_capacity(surge) else None,
            eviction_attempts=int(attempts) if attempts.isdigit() else 0,
            eviction_retry_at=parse_rfc3339(a.get(EVICTION_RETRY_AT)),
        )


@dataclass(frozen=True)
class PodDrain:
    """One engine pod, as plan_drain needs it."""

    name: str
    node: str | None
    capacity: Capacity
    termination_grace_seconds: int
    terminating: bool = False  # metadata.deletionTimestamp is set (evicted or deleted)
    marks: DrainMarks = field(default_factory=DrainMarks)

    @classmethod
    def from_pod(cls, pod: Mapping[str, Any]) -> PodDrain:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        capacity = (meta.get("labels") or {}).get(CAPACITY_LABEL)
        return cls(
            name=meta.get("name", ""),
            node=spec.get("nodeName"),
            capacity=capacity if capacity in ("spot", "ondemand") else "any",
            termination_grace_seconds=int(spec.get("terminationGracePeriodSeconds", 30)),
            terminating=meta.get("deletionTimestamp") is not None,
            marks=DrainMarks.from_annotations(meta.get("annotations")),
        )


@dataclass(frozen=True)
class EngineDrain:
    """The engine's answer to POST or GET /drain (None where the engine did not answer)."""

    draining: bool
    in_flight: int
    accepting: bool = False
    # Per in-flight request, the engine's estimate of the seconds it still needs (max_tokens left
    # x step time: an upper bound); None from engines that do not say (older ones, vLLM).
    seconds_left: tuple[float, ...] | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> EngineDrain:
        left = body.get("seconds_left")
        seconds_left = None
        if isinstance(left, list) and all(isinstance(x, int | float) for x in left):
            seconds_left = tuple(float(x) for x in left)
        return cls(bool(body.get("draining")), int(body.get("in_flight") or 0), bool(body.get("accepting")),
                   seconds_left)

    def cut_by(self, grace: int, full_grace: int) -> int:
        """The requests a stop with `grace` seconds would cut: those the engine estimates need longer;
        without estimates, every request in flight when the grace is shorter than the pod's own
        (`full_grace`), else none (the engine's --shutdown-timeout bounds those, by the user's choice)."""
        if self.seconds_left is not None:
            return sum(1 for s in self.seconds_left if s > grace)
        return self.in_flight if grace < full_grace else 0


@dataclass(frozen=True)
class DrainPlan:
    actions: list[Action]
    phase: Literal["Started", "Draining", "Evicting", "Deleting", "Terminating"]
    at_risk: int = 0  # requests in flight when a kill-bounded eviction/delete is issued
    reason: str = ""


# --- the plan ------------------------------------------------------------------------------


def backoff_seconds(attempts: int) -> int:
    return BACKOFF_SECONDS[min(max(attempts, 1), len(BACKOFF_SECONDS)) - 1]


def _stop_by(pod: PodDrain, notice: Notice | None, margin: int) -> datetime:
    noticed = notice.deadline if notice is not None else None
    deadlines = [d for d in (pod.marks.deadline, noticed) if d is not None]
    if not deadlines:
        raise ValueError(
            f"pod {pod.name}: no notice and no {DRAIN_DEADLINE} annotation: nothing to drain for"
        )
    return min(deadlines) - timedelta(seconds=margin)


def _kill(
    pod: PodDrain, engine: EngineDrain | None, stop_by: datetime, now: datetime, delete: bool
) -> DrainPlan:
    left = int((stop_by - now).total_seconds())
    grace = max(1, min(pod.termination_grace_seconds, left))
    at_risk = engine.cut_by(grace, pod.termination_grace_seconds) if engine is not None else 0
    first = delete or pod.marks.eviction_attempts == 0  # announce once, not on every retry
    actions: list[Action] = []
    if delete:
        actions.append(Delete(pod.name, grace))
        actions.append(
            RecordEvent(
                pod.name,
                "Warning",
                "DrainDeleted",
                f"deleted with {grace}s grace: too close to the node deadline to wait for the PodDisruptionBudget",
            )
        )
    else:
        actions.append(Evict(pod.name, grace))
    if at_risk and first:
        actions.append(
            RecordEvent(
                pod.name,
                "Warning",
                "RequestsAtRisk",
                f"{at_risk} of {engine.in_flight if engine else 0} request(s) in flight need longer than the {grace}s "
                f"left before the node deadline margin"
                f"{' (the engine estimates)' if engine and engine.seconds_left is not None else ''}: they will be cut",
            )
        )
    return DrainPlan(actions, "Deleting" if delete else "Evicting", at_risk, f"grace {grace}s")


def plan_drain(
    pod: PodDrain,
    notice: Notice | None,
    now: datetime,
    *,
    margin: int,
    drain_grace: int,
    engine: EngineDrain | None,
    pdb_allows: bool | None = None,
    supports_drain: bool = True,
) -> DrainPlan:
    """The next actions for one pod on an interrupted node (call again after each of them).

    notice: the node's Interruption notice (None if the signal went away after the drain
        started: the drain continues to the deadline recorded on the pod).
    margin: the pool's drainDeadlineMarginSeconds; drain_grace: the service's drainGraceSeconds.
    engine: the engine's last /drain answer (or its scraped running + waiting requests before a
        drain), None if it did not answer.
    pdb_allows: the PDB's status.disruptionsAllowed > 0, when known; False skips the doomed
        eviction call and waits as for a 429.
    supports_drain: False for engines without /drain (vLLM): no PostDrain, evict on the timeline.
    """
    if notice is not None and notice.kind != "Interruption":
        notice = None  # an advisory drains nothing (plan_advisory); a drain already begun goes on
    stop_by = _stop_by(pod, notice, margin)
    if pod.terminating:
        return DrainPlan(
            [], "Terminating", reason="evicted or deleted; the kubelet runs preStop and the grace period"
        )
    evict_by = stop_by - timedelta(seconds=pod.termination_grace_seconds)
    delete_at = stop_by - timedelta(seconds=DELETE_BEFORE_STOP_SECONDS)
    actions: list[Action] = []
    started = pod.marks.started
    if started is None:
        started = now
        marks: dict[str, str | None] = {
            DRAIN_STARTED: format_rfc3339(now),
            DRAIN_DEADLINE: format_rfc3339(stop_by + timedelta(seconds=margin)),
        }
        if pod.marks.surge is None:  # an advisory may have started the replacement already
            marks[DRAIN_SURGE] = pod.capacity
        actions.append(Annotate(pod.name, marks))
        if pod.marks.surge is None:
            actions.append(Surge(pod.capacity, 1))
        if supports_drain:
            actions.append(PostDrain(pod.name))
        where = notice.source if notice is not None else "recorded deadline"
        actions.append(
            RecordEvent(
                pod.name,
                "Normal",
                "DrainStarted",
                f"node {pod.node} goes at {format_rfc3339(stop_by + timedelta(seconds=margin))} ({where}); draining, replacement started",
            )
        )
    elif supports_drain and engine is not None and not engine.draining:
        actions.append(PostDrain(pod.name))  # the engine restarted, or the first POST was lost

    if now >= delete_at:
        plan = _kill(pod, engine, stop_by, now, delete=True)
        return DrainPlan(actions + plan.actions, plan.phase, plan.at_risk, plan.reason)
    retry_at = pod.marks.eviction_retry_at
    if retry_at is not None and now < retry_at:
        return DrainPlan(
            actions + [Wait(min(retry_at, delete_at), "eviction refused; backing off")], "Draining"
        )
    idle = (
        engine is not None
        and (engine.draining or not supports_drain)
        and engine.in_flight == 0
        and (now - started).total_seconds() >= drain_grace
    )
    if idle or now >= evict_by:
        if pdb_allows is False:
            return DrainPlan(
                actions + after_eviction(pod, "TooManyRequests", now, stop_by),
                "Draining",
                reason="the PodDisruptionBudget allows no disruption now",
            )
        plan = _kill(pod, engine, stop_by, now, delete=False)
        why = "nothing in flight" if idle else "latest eviction that keeps the full grace"
        return DrainPlan(actions + plan.actions, plan.phase, plan.at_risk, f"{why}; {plan.reason}")
    wake = min(evict_by, now + timedelta(seconds=POLL_SECONDS))
    if supports_drain and engine is not None and engine.in_flight == 0:
        wake = min(wake, started + timedelta(seconds=drain_grace))
    in_flight = "unknown" if engine is None else engine.in_flight
    return DrainPlan(
        actions + [Wait(max(wake, now), f"{in_flight} request(s) in flight")],
        "Started" if pod.marks.started is None else "Draining",
    )


def after_eviction(
    pod: PodDrain, result: str, now: datetime, stop_by: datetime | None = None
) -> list[Action]:
    """What to record after the handler's Evict call: result is "Evicted", "TooManyRequests"
    (HTTP 429: the PDB said no), "NotFound" (already gone) or "Error" (any other failure)."""
    if result in ("Evicted", "NotFound"):
        return (
            [RecordEvent(pod.name, "Normal", "DrainEvicted", f"evicted from node {pod.node}")]
            if result == "Evicted"
            else []
        )
    attempts = pod.marks.eviction_attempts + 1
    retry = now + timedelta(seconds=backoff_seconds(attempts))
    if stop_by is not None:
        retry = min(retry, stop_by - timedelta(seconds=DELETE_BEFORE_STOP_SECONDS))
    why = (
        "the PodDisruptionBudget allows no disruption now"
        if result == "TooManyRequests"
        else "the eviction failed"
    )
    return [
        Annotate(pod.name, {EVICTION_ATTEMPTS: str(attempts), EVICTION_RETRY_AT: format_rfc3339(retry)}),
        RecordEvent(
            pod.name,
            "Warning",
            "EvictionRefused",
            f"{why} (attempt {attempts}); retrying at {format_rfc3339(retry)}",
        ),
    ]


# --- advisories, surge and what the autoscaler counts --------------------------------------


def plan_advisory(pod: PodDrain, notice: Notice) -> list[Action]:
    """A rebalance recommendation: start the replacement now, drain nothing."""
    if pod.marks.surge is not None or pod.marks.started is not None or pod.terminating:
        return []
    return [
        Annotate(pod.name, {DRAIN_SURGE: pod.capacity}),
        Surge(pod.capacity, 1),
        RecordEvent(
            pod.name,
            "Normal",
            "ReplacementStarted",
            f"node {pod.node}: {notice.source}; starting a replacement, draining nothing",
        ),
    ]


def clear_advisory(pod: PodDrain) -> list[Action]:
    """The advisory went away before any interruption: drop the surge (the extra replica goes)."""
    if pod.marks.surge is None or pod.marks.started is not None:
        return []
    return [Annotate(pod.name, {DRAIN_SURGE: None}), Surge(pod.marks.surge, -1)]


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
