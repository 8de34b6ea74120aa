"""One pod as the status sees it: ready, terminating, the problem it shows (first match wins; the
table in status/__init__.py), and how long its model took to load."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

INIT_DOWNLOAD_CONTAINER = "fetch-model"

_IMAGE_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"}
_START_REASONS = {
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "StartError",
    "ContainerCannotRun",
}

@dataclass(frozen=True)
class Problem:
    reason: str
    message: str
    failure: bool = True


def pod_condition(pod: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)


def pod_ready(pod: dict[str, Any]) -> bool:
    cond = pod_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True" and not pod_terminating(pod)


def pod_terminating(pod: dict[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp")) or (pod.get("status") or {}).get(
        "phase"
    ) in ("Failed", "Succeeded")


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _container_problem(status: dict[str, Any], *, init: bool) -> Problem | None:
    name = status.get("name", "?")
    state = status.get("state") or {}
    waiting = state.get("waiting")
    terminated = state.get("terminated")
    last = (status.get("lastState") or {}).get("terminated")
    if waiting:
        reason = waiting.get("reason") or ""
        message = waiting.get("message") or ""
        if reason in _IMAGE_REASONS:
            return Problem("ImagePullFailed", f"container {name}: {reason}: {message}".rstrip(": "))
        if reason in _START_REASONS:
            return Problem("ContainerStartFailed", f"container {name} cannot start: {reason}: {message}".rstrip(": "))
        if reason == "CrashLoopBackOff":
            detail = ""
            if last:
                code = last.get("exitCode")
                detail = f"; last exit code {code}" + (f" ({last['reason']})" if last.get("reason") else "")
                if last.get("message"):
                    detail += f": {last['message'].strip()[:300]}"
            restarts = status.get("restartCount", 0)
            if init and name == INIT_DOWNLOAD_CONTAINER:
                return Problem("ModelDownloadFailed", f"model download keeps failing ({restarts} restarts){detail}")
            return Problem("CrashLoopBackOff", f"container {name} keeps crashing ({restarts} restarts){detail}")
        if init and name == INIT_DOWNLOAD_CONTAINER:
            return Problem("ModelDownloading", "waiting to download the model", failure=False)
        return Problem("ContainerCreating", f"container {name}: {reason or 'waiting'}", failure=False)
    if terminated and terminated.get("exitCode", 0) != 0:
        code = terminated.get("exitCode")
        if terminated.get("reason") in _START_REASONS or code in (126, 127):
            return Problem(
                "ContainerStartFailed",
                f"container {name} cannot start (exit code {code}): {terminated.get('message', '')}".rstrip(": "),
            )
        if init and name == INIT_DOWNLOAD_CONTAINER:
            return Problem("ModelDownloadFailed", f"model download failed with exit code {code}")
    if init and state.get("running") and name == INIT_DOWNLOAD_CONTAINER:
        return Problem("ModelDownloading", "downloading the model", failure=False)
    return None


def diagnose_pod(pod: dict[str, Any], now: datetime) -> Problem | None:
    """Why this pod does not serve, or None when it is Ready (or on its way out)."""
    if pod_terminating(pod):
        if (pod.get("status") or {}).get("phase") == "Failed":
            st = pod.get("status") or {}
            return Problem("PodFailed", f"{st.get('reason', 'Failed')}: {st.get('message', '')}".rstrip(": "))
        return None
    if pod_ready(pod):
        return None
    status = pod.get("status") or {}
    scheduled = pod_condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        # Not a failure: on GPU clusters a node is often still being provisioned (Karpenter,
        # cluster autoscaler). The rollout deadline turns a lasting shortage into one.
        return Problem(scheduled.get("reason") or "Unschedulable", scheduled.get("message") or "cannot be scheduled",
                       failure=False)
    for st in status.get("initContainerStatuses") or []:
        if st.get("ready") or ((st.get("state") or {}).get("terminated") or {}).get("exitCode") == 0:
            continue
        problem = _container_problem(st, init=True)
        if problem is not None:
            return problem
    for st in status.get("containerStatuses") or []:
        problem = _container_problem(st, init=False)
        if problem is not None:
            return problem
        if (st.get("state") or {}).get("running"):
            started = _parse_time(st["state"]["running"].get("startedAt"))
            since = f" for {int((now - started).total_seconds())}s" if started else ""
            return Problem("ModelLoading", f"the engine is loading the model{since}", failure=False)
    if scheduled is None or scheduled.get("status") != "True":
        return Problem("PodPending", "waiting to be scheduled", failure=False)
    return Problem("ContainerCreating", "starting containers", failure=False)

def model_startup_seconds(pods: Sequence[dict[str, Any]]) -> float | None:
    """Start → Ready of the most recently started ready pod (model load, as observed)."""
    best: tuple[datetime, float] | None = None
    for pod in pods:
        if not pod_ready(pod):
            continue
        ready = _parse_time((pod_condition(pod, "Ready") or {}).get("lastTransitionTime"))
        started = None
        for st in (pod.get("status") or {}).get("containerStatuses") or []:
            started = _parse_time(((st.get("state") or {}).get("running") or {}).get("startedAt"))
        started = started or _parse_time((pod.get("status") or {}).get("startTime"))
        if ready is None or started is None or ready < started:
            continue
        if best is None or started > best[0]:
            best = (started, (ready - started).total_seconds())
    return best[1] if best else None
