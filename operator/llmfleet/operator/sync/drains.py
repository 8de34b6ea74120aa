"""Which of a service's pods drain this sync, and the ordered actions for each (pure).

| function      | question                                                                 |
| ------------- | ------------------------------------------------------------------------ |
| needs_engine  | whose engine `/drain` state must be read before planning (the observe step reads it) |
| plan_drains   | per pod on a noticed node, or already marked: plan_drain / plan_advisory / clear_advisory |
| with_marks    | the pods as they will be once the steps' Annotates are written (their surge counts) |

A DrainStep keeps its plan's actions in order. The executor runs the Annotates (and posts the
ANNOUNCE_AT_ONCE events) before the Deployments are applied, so the surge is in the counts
before anything else happens; the rest (POST /drain, events, Wait, Evict, Delete) after.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from llmfleet.operator.spot.drain import clear_advisory, drain_stop_by, plan_advisory, plan_drain, unconfirmed
from llmfleet.operator.spot.drain_state import Action, Annotate, EngineDrain, PodDrain
from llmfleet.operator.spot.notice import Notice

log = logging.getLogger("llmfleet.operator.spot")

# Announcements of a drain or replacement that began: posted right after their marks are
# written, so a restart in between (the marks say it began) never loses or repeats them.
ANNOUNCE_AT_ONCE = frozenset({"DrainStarted", "ReplacementStarted"})


@dataclass
class DrainStep:
    """One pod's plan: `actions` in order; `drain` when it is a drain (not an advisory)."""

    pod: str
    actions: list[Action] = field(default_factory=list)
    drain: bool = False
    at_risk: int = 0  # requests in flight when a kill-bounded eviction/delete is issued
    stop_by: datetime | None = None  # D - M: the pod must be gone by then


def _draining(pod: PodDrain, notice: Notice | None) -> bool:
    """A drain (rather than an advisory or nothing): already started, or an interruption notice."""
    return pod.marks.started is not None or (notice is not None and notice.kind != "Advisory")


def needs_engine(pod: Mapping, notices: Mapping[str, Notice], supports_drain: bool) -> bool:
    """Read this pod's engine /drain before planning: it drains and has an address to ask
    (before the first step too: a short notice may evict at once)."""
    p = PodDrain.from_pod(pod)
    return (supports_drain and not p.terminating and _draining(p, notices.get(p.node or ""))
            and bool((pod.get("status") or {}).get("podIP")))


def plan_drains(pods: Sequence[Mapping], notices: Mapping[str, Notice], engines: Mapping[str, EngineDrain | None],
                now: datetime, *, margin: int, drain_grace: int, supports_drain: bool) -> list[DrainStep]:
    """Every pod that is on a noticed node or already marked as draining, with its actions.

    `engines`: pod name -> its /drain answer (missing or None: no answer). `margin` is
    drainDeadlineMarginSeconds. Terminating pods are left to the kubelet (preStop and grace)."""
    out: list[DrainStep] = []
    for pod in pods:
        p = PodDrain.from_pod(pod)
        notice = notices.get(p.node or "")
        if p.terminating:
            continue  # evicted or deleted (or going for another reason): the kubelet runs preStop and grace
        if not _draining(p, notice):
            actions = plan_advisory(p, notice) if notice is not None else clear_advisory(p)
            if actions:
                out.append(DrainStep(p.name, list(actions)))
            continue
        try:
            plan = plan_drain(p, notice, now, margin=margin, drain_grace=drain_grace,
                              engine=engines.get(p.name), supports_drain=supports_drain)
        except ValueError as exc:  # marks without a deadline (edited by hand): nothing to work to
            log.warning("%s", exc)
            continue
        # an unconfirmed notice backs off without a deadline: the PDB is never bypassed
        stop_by = None if unconfirmed(notice) else drain_stop_by(p, notice, margin, now)
        out.append(DrainStep(p.name, list(plan.actions), True, plan.at_risk, stop_by))
    return out


def with_marks(pods: Sequence[dict], steps: Sequence[DrainStep]) -> list[dict]:
    """Copies of `pods` with every step's Annotates applied (merge-patch semantics)."""
    out = copy.deepcopy(list(pods))
    by_name = {p["metadata"]["name"]: p for p in out}
    for step in steps:
        pod = by_name.get(step.pod)
        for action in step.actions:
            if pod is not None and isinstance(action, Annotate):
                set_annotations(pod, action.annotations)
    return out


def set_annotations(pod: dict, annotations: Mapping[str, str | None]) -> None:
    """Merge `annotations` into the pod's own (None removes a key), as the API server does."""
    own = pod["metadata"].setdefault("annotations", {})
    for key, value in annotations.items():
        if value is None:
            own.pop(key, None)
        else:
            own[key] = value
