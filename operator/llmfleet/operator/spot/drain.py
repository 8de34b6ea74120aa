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

from datetime import datetime, timedelta

from llmfleet.operator.spot.notice import Notice, format_rfc3339

from .drain_state import (
    BACKOFF_SECONDS,
    DELETE_BEFORE_STOP_SECONDS,
    DRAIN_DEADLINE,
    DRAIN_STARTED,
    DRAIN_SURGE,
    EVICTION_ATTEMPTS,
    EVICTION_RETRY_AT,
    POLL_SECONDS,
    Action,
    Annotate,
    Delete,
    DrainPlan,
    EngineDrain,
    Evict,
    PodDrain,
    PostDrain,
    RecordEvent,
    Surge,
    Wait,
)

# --- the plan ------------------------------------------------------------------------------


def backoff_seconds(attempts: int) -> int:
    return BACKOFF_SECONDS[min(max(attempts, 1), len(BACKOFF_SECONDS)) - 1]


def unconfirmed(notice: Notice | None) -> bool:
    """An interruption notice whose deadline only an Event gives, already passed (signals.py)."""
    return notice is not None and notice.kind == "Interruption" and not notice.confirmed


def drain_stop_by(pod: PodDrain, notice: Notice | None, margin: int, now: datetime) -> datetime:
    """D - M: when the pod must be gone. An unconfirmed notice's deadline is not believed: the
    drain gets the pod's own grace from its start (recorded on the pod by the first plan)."""
    noticed = notice.deadline if notice is not None else None
    if unconfirmed(notice):
        noticed = None if pod.marks.deadline is not None else \
            now + timedelta(seconds=margin + pod.termination_grace_seconds)
    deadlines = [d for d in (pod.marks.deadline, noticed) if d is not None]
    if not deadlines:
        raise ValueError(
            f"pod {pod.name}: no notice and no {DRAIN_DEADLINE} annotation: nothing to drain for"
        )
    return min(deadlines) - timedelta(seconds=margin)


def _kill(
    pod: PodDrain, engine: EngineDrain | None, stop_by: datetime, now: datetime, delete: bool,
    full_grace: bool = False,
) -> DrainPlan:
    left = int((stop_by - now).total_seconds())
    grace = pod.termination_grace_seconds if full_grace else max(1, min(pod.termination_grace_seconds, left))
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
    stop_by = drain_stop_by(pod, notice, margin, now)
    # An unconfirmed notice never shortens the grace nor bypasses the PodDisruptionBudget.
    doubtful = unconfirmed(notice)
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

    if now >= delete_at and not doubtful:
        plan = _kill(pod, engine, stop_by, now, delete=True)
        return DrainPlan(actions + plan.actions, plan.phase, plan.at_risk, plan.reason)
    retry_at = pod.marks.eviction_retry_at
    if retry_at is not None and now < retry_at:
        return DrainPlan(
            actions + [Wait(retry_at if doubtful else min(retry_at, delete_at), "eviction refused; backing off")],
            "Draining",
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
        plan = _kill(pod, engine, stop_by, now, delete=False, full_grace=doubtful)
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


