"""A drain's plain data: the marks it writes on the pod (annotations, the state that survives a
restart), what it reads of the pod and of the engine, and the actions a plan is made of."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeGuard

from llmfleet.operator.spot.notice import parse_rfc3339

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
