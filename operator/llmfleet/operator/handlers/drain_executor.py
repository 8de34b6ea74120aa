"""Runs the drain steps of a plan (sync.drains) against the API server and the engines.

    begin    per step, in order: the Annotates (drain marks, surge) and the ANNOUNCE_AT_ONCE
             events; the rest is kept for `finish`. A pod that went meanwhile drops its step.
    finish   the rest, in order: PostDrain, RecordEvent, Wait (the earliest says when to look
             again), Evict (429 -> after_eviction's backoff marks), Delete.

The pods passed in are updated in place as the API server would (marks, a deletionTimestamp
on an evicted or deleted pod), so the caller's counts and status follow the writes.
The spot stories (tests/operator/test_spot_simulation.py) run this same executor.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llmfleet.operator import metrics
from llmfleet.operator.adapters.kube import KubeError
from llmfleet.operator.spot.drain import after_eviction
from llmfleet.operator.spot.drain_state import (
    EVICTION_ATTEMPTS,
    EVICTION_RETRY_AT,
    Annotate,
    Delete,
    Evict,
    PodDrain,
    PostDrain,
    RecordEvent,
    Surge,
    Wait,
)
from llmfleet.operator.spot.notice import format_rfc3339, parse_rfc3339
from llmfleet.operator.sync.drains import ANNOUNCE_AT_ONCE, DrainStep, set_annotations

log = logging.getLogger("llmfleet.operator.spot")

# (pod IP, POST?, drain token for a POST) -> the /drain JSON, None if no answer
EngineCall = Callable[[str, bool, str | None], Awaitable[dict | None]]
Recorder = Callable[[RecordEvent], None]


@dataclass
class Outcome:
    drained: int = 0  # pods evicted or deleted this sync
    cut: int = 0  # requests in flight when a shortened-grace eviction/delete was issued
    wake: datetime | None = None  # the earliest Wait
    killed: bool = False  # a pod was evicted or deleted: re-read the pods at the next sync

    def wake_at(self, at: datetime) -> None:
        self.wake = at if self.wake is None else min(self.wake, at)


def _log_refusal(attempts: int) -> bool:
    """One EvictionRefused event for the 1st, 2nd and every 10th attempt: one per retry would flood."""
    return attempts in (1, 2) or attempts % 10 == 0


@dataclass
class DrainExecutor:
    kube: Any  # adapters.kube.Kube: patch, evict, delete
    engine: EngineCall
    token: str | None = None  # the service's drain token: POST /drain needs it

    async def _annotate(self, namespace: str, pod: dict, annotations: Mapping[str, str | None]) -> None:
        await self.kube.patch("Pod", namespace, pod["metadata"]["name"], {"metadata": {"annotations": annotations}})
        set_annotations(pod, annotations)

    async def begin(self, namespace: str, steps: list[DrainStep], pods: Mapping[str, dict],
                    announce: Recorder) -> list[tuple[DrainStep, list]]:
        """The marks first, so the Deployments applied next include the surge; returns each
        started step with the actions left for `finish`."""
        out: list[tuple[DrainStep, list]] = []
        for step in steps:
            pod = pods[step.pod]
            rest: list = []
            try:
                for action in step.actions:
                    if isinstance(action, Annotate):
                        await self._annotate(namespace, pod, action.annotations)
                    elif isinstance(action, RecordEvent) and action.reason in ANNOUNCE_AT_ONCE:
                        announce(action)
                    elif not isinstance(action, Surge):  # Surge: the annotation is its durable form
                        rest.append(action)
            except KubeError as exc:  # the pod went meanwhile (404), or a conflict: the next sync sees
                log.info("pod %s: drain marks not written: %s", step.pod, exc)
                continue
            if step.drain or rest:
                out.append((step, rest))
        return out

    async def finish(self, namespace: str, started: list[tuple[DrainStep, list]], pods: Mapping[str, dict],
                     record: Recorder, now: datetime) -> Outcome:
        outcome = Outcome()

        def gone(pod: dict, step: DrainStep) -> None:
            # Until its watch event arrives, a sync from the cached pods must not evict or
            # delete (and count) it again: mark it terminating here and have the next sync re-read.
            pod["metadata"].setdefault("deletionTimestamp", format_rfc3339(now))
            outcome.killed = True
            outcome.drained += 1
            outcome.cut += step.at_risk
            metrics.DRAINS.inc()

        for step, rest in started:
            pod, name = pods[step.pod], step.pod
            for action in rest:
                if isinstance(action, PostDrain):
                    ip = (pod.get("status") or {}).get("podIP")
                    if (await self.engine(ip, True, self.token) if ip else None) is None:
                        log.info("pod %s: POST /drain got no answer; polling again", name)
                    outcome.wake_at(now)  # look at the engine again at the next step
                elif isinstance(action, RecordEvent):
                    attempts = int((pod["metadata"].get("annotations") or {}).get(EVICTION_ATTEMPTS, "1") or 1)
                    if action.reason != "EvictionRefused" or _log_refusal(attempts):
                        record(action)
                elif isinstance(action, Wait):
                    outcome.wake_at(action.until)
                elif isinstance(action, Evict):
                    await self._evict(namespace, pod, step, action, record, now, outcome, gone)
                elif isinstance(action, Delete):
                    try:
                        await self.kube.delete("Pod", namespace, name, grace_seconds=action.grace_seconds)
                    except KubeError as exc:
                        log.warning("deleting %s: %s", name, exc)
                        outcome.wake_at(now)
                        continue
                    gone(pod, step)
        return outcome

    async def _evict(self, namespace: str, pod: dict, step: DrainStep, action: Evict, record: Recorder,
                     now: datetime, outcome: Outcome, gone: Callable[[dict, DrainStep], None]) -> None:
        name = step.pod
        result = await self.kube.evict(namespace, name, action.grace_seconds)
        kind = result.split(":", 1)[0]
        if kind == "Error":
            log.warning("evicting %s: %s", name, result)
        fresh = PodDrain.from_pod(pod)
        for follow in after_eviction(fresh, kind, now, step.stop_by):
            if isinstance(follow, Annotate):
                try:
                    await self._annotate(namespace, pod, follow.annotations)
                except KubeError as exc:
                    log.info("pod %s: %s", name, exc)
            elif isinstance(follow, RecordEvent):
                if follow.reason != "EvictionRefused" or _log_refusal(fresh.marks.eviction_attempts + 1):
                    record(follow)
        if kind == "Evicted":
            gone(pod, step)
        else:
            retry = parse_rfc3339((pod["metadata"].get("annotations") or {}).get(EVICTION_RETRY_AT))
            outcome.wake_at(retry or now)
