"""Phase and conditions of an LLMService from what the cluster shows: Deployments, pods, references.

A user must see from `kubectl get llms` / `kubectl describe llms` why a service is not
Ready, without pod logs. Each pod is diagnosed on its own (first match wins), and the
service reports the most serious problem with the pod it was found on:

| pod shows                                              | reason               | failure? |
| ------------------------------------------------------ | -------------------- | -------- |
| image pull errors (ErrImagePull, ImagePullBackOff, ...) | ImagePullFailed      | yes      |
| container cannot start (command not found, bad config) | ContainerStartFailed | yes      |
| init container fetch-model failing                     | ModelDownloadFailed  | yes      |
| CrashLoopBackOff (with the last exit code and reason)  | CrashLoopBackOff     | yes      |
| phase Failed (evicted, ...)                            | PodFailed            | yes      |
| PodScheduled=False/Unschedulable (scheduler's message)  | Unschedulable        | no: a node may be on its way |
| init container fetch-model running                     | ModelDownloading     | no       |
| ContainerCreating / PodInitializing                     | ContainerCreating    | no       |
| running, not Ready yet                                 | ModelLoading         | no       |

Deployment conditions add ProgressDeadlineExceeded and FailedCreate (ReplicaFailure,
e.g. an admission webhook or quota refusing pods); a missing AutoscalePolicy, SpotPool
or Secret is passed in as a `Problem` by the caller.

| phase       | when (first match wins)                                                   |
| ----------- | ------------------------------------------------------------------------- |
| Ready       | ready replicas >= desired and the rollout is complete (desired 0 included) |
| Degraded    | a failure and some, but too few, ready replicas                           |
| Pending     | no ready replica, and waiting: a missing reference, no node fits, or no pod scheduled yet |
| Failed      | a failure and no ready replica                                            |
| Progressing | otherwise: rolling out, scaling, loading the model                        |

Conditions (all carry observedGeneration; lastTransitionTime is kept by the caller while
the status does not flip): Ready, Progressing, Degraded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llmfleet.operator.api.common import Condition
from llmfleet.operator.api.llmservice import Phase

INIT_DOWNLOAD_CONTAINER = "fetch-model"

_IMAGE_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"}
_START_REASONS = {
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "StartError",
    "ContainerCannotRun",
}

# Most serious first: the service reports the first of these that any pod shows.
FAILURE_ORDER = (
    "AutoscalePolicyNotFound",
    "SpotPoolNotFound",
    "SecretNotFound",
    "InvalidSpec",
    "ApplyFailed",
    "NameConflict",
    "ImagePullFailed",
    "ContainerStartFailed",
    "ModelDownloadFailed",
    "CrashLoopBackOff",
    "FailedCreate",
    "ProgressDeadlineExceeded",
    "PodFailed",
)
# Failures that stop a rollout outright (Progressing=False), rather than slow it down.
STUCK_REASONS = frozenset(
    {"AutoscalePolicyNotFound", "SpotPoolNotFound", "SecretNotFound", "InvalidSpec", "ApplyFailed",
     "ProgressDeadlineExceeded"}
)
# Failures that clear by themselves once an object appears: the phase says Pending, not Failed.
WAITING_REASONS = frozenset({"AutoscalePolicyNotFound", "SpotPoolNotFound", "SecretNotFound"})
PROGRESS_ORDER = ("Unschedulable", "ModelDownloading", "ContainerCreating", "ModelLoading", "PodPending")


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str
    failure: bool = True


def _condition(pod: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)


def pod_ready(pod: dict[str, Any]) -> bool:
    cond = _condition(pod, "Ready")
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
    scheduled = _condition(pod, "PodScheduled")
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


def deployment_problems(deployment: dict[str, Any]) -> list[Problem]:
    """ProgressDeadlineExceeded and ReplicaFailure from a Deployment's conditions."""
    out = []
    for cond in (deployment.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            out.append(Problem("ProgressDeadlineExceeded", cond.get("message") or "rollout did not finish in time"))
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            out.append(Problem("FailedCreate", cond.get("message") or "pods cannot be created"))
    return out


def rollout_complete(deployment: dict[str, Any]) -> bool:
    """The Deployment controller has seen its spec, and every replica runs the current template."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    st = deployment.get("status") or {}
    want = spec.get("replicas", 1)
    return bool(
        st.get("observedGeneration", 0) >= meta.get("generation", 0)
        and st.get("updatedReplicas", 0) >= want
        and st.get("replicas", 0) <= want
        and st.get("availableReplicas", 0) >= want
    )


@dataclass(frozen=True)
class ServiceState:
    """What compute_status returns: the status fields the Deployments and pods determine."""

    phase: Phase
    replicas: int
    ready_replicas: int
    desired_replicas: int
    conditions: list[Condition]

    @property
    def ready_text(self) -> str:
        return f"{self.ready_replicas}/{self.desired_replicas}"


def _pick(problems: Sequence[tuple[str, Problem]], order: Sequence[str]) -> tuple[str, Problem, int] | None:
    """The most serious problem (by `order`), the object it was seen on, and how many objects show it."""
    rank = {reason: i for i, reason in enumerate(order)}
    candidates = [(rank.get(p.reason, len(order)), who, p) for who, p in problems]
    if not candidates:
        return None
    candidates.sort(key=lambda c: c[0])
    _, who, problem = candidates[0]
    same = sum(1 for _, _, p in candidates if p.reason == problem.reason)
    return who, problem, same


def _describe(picked: tuple[str, Problem, int]) -> str:
    who, problem, count = picked
    if not who:
        return problem.message
    others = f" (and {count - 1} more)" if count > 1 else ""
    return f"{who}{others}: {problem.message}"


def compute_status(
    *,
    generation: int | None,
    desired: int,
    deployments: Sequence[dict[str, Any]],
    pods: Sequence[dict[str, Any]],
    now: datetime,
    reference_problem: Problem | None = None,
) -> ServiceState:
    """Phase, counts and Ready/Progressing/Degraded from the observed objects (pure)."""
    live = [p for p in pods if not pod_terminating(p)]
    ready = sum(1 for p in live if pod_ready(p))
    problems: list[tuple[str, Problem]] = []
    if reference_problem is not None:
        problems.append(("", reference_problem))
    for dep in deployments:
        problems += [(f"deployment {dep['metadata']['name']}", p) for p in deployment_problems(dep)]
    for pod in pods:
        problem = diagnose_pod(pod, now)
        if problem is not None:
            problems.append((f"pod {pod['metadata']['name']}", problem))
    failure = _pick([(w, p) for w, p in problems if p.failure], FAILURE_ORDER)
    progress = _pick([(w, p) for w, p in problems if not p.failure], PROGRESS_ORDER)
    rolled_out = bool(deployments) and all(rollout_complete(d) for d in deployments)
    scheduled = any((_condition(p, "PodScheduled") or {}).get("status") == "True" for p in live)

    converged = ready >= desired and (rolled_out or desired == 0) and reference_problem is None
    if converged:
        phase: Phase = "Ready"
    elif failure is not None and ready > 0:
        phase = "Degraded"
    elif failure is not None and failure[1].reason in WAITING_REASONS:
        phase = "Pending"  # waiting for the referenced object to appear
    elif failure is not None:
        phase = "Failed"
    elif ready == 0 and not scheduled and desired > 0:
        phase = "Pending"
    else:
        phase = "Progressing"

    def cond(type_: str, ok: bool, reason: str, message: str) -> Condition:
        return Condition(
            type=type_,
            status="True" if ok else "False",
            reason=reason,
            message=message,
            observed_generation=generation,
            last_transition_time=now,
        )

    counts = f"{ready}/{desired} replicas ready"
    if ready >= desired and desired > 0 and reference_problem is None:
        ready_cond = cond("Ready", True, "AllReplicasReady", counts)
    elif desired == 0 and reference_problem is None:
        ready_cond = cond("Ready", True, "ScaledToZero", "0 replicas requested")
    elif ready > 0 and reference_problem is None:
        # Serving, below the desired count: still Ready for clients, with the shortfall said.
        why = failure or progress
        ready_cond = cond("Ready", True, "MinimumReplicasReady", counts + (f"; {_describe(why)}" if why else ""))
    else:
        why = failure or progress
        reason = why[1].reason if why else "NoReplicasReady"
        ready_cond = cond("Ready", False, reason, counts + (f"; {_describe(why)}" if why else ""))

    if failure is not None:
        degraded = cond("Degraded", True, failure[1].reason, _describe(failure))
    else:
        degraded = cond("Degraded", False, "AsExpected", counts)

    if converged:
        progressing = cond("Progressing", False, "RolloutComplete", counts)
    elif failure is not None and failure[1].reason in STUCK_REASONS:
        progressing = cond("Progressing", False, failure[1].reason, _describe(failure))
    elif progress is not None:
        progressing = cond("Progressing", True, progress[1].reason, f"{counts}; {_describe(progress)}")
    elif len(live) > desired:
        progressing = cond("Progressing", True, "ScalingDown", counts)
    elif not rolled_out:
        progressing = cond("Progressing", True, "RollingOut", counts)
    else:
        progressing = cond("Progressing", True, "ScalingUp", counts)

    return ServiceState(
        phase=phase,
        replicas=len(live),
        ready_replicas=ready,
        desired_replicas=desired,
        conditions=[ready_cond, progressing, degraded],
    )


def model_startup_seconds(pods: Sequence[dict[str, Any]]) -> float | None:
    """Start → Ready of the most recently started ready pod (model load, as observed)."""
    best: tuple[datetime, float] | None = None
    for pod in pods:
        if not pod_ready(pod):
            continue
        ready = _parse_time((_condition(pod, "Ready") or {}).get("lastTransitionTime"))
        started = None
        for st in (pod.get("status") or {}).get("containerStatuses") or []:
            started = _parse_time(((st.get("state") or {}).get("running") or {}).get("startedAt"))
        started = started or _parse_time((pod.get("status") or {}).get("startTime"))
        if ready is None or started is None or ready < started:
            continue
        if best is None or started > best[0]:
            best = (started, (ready - started).total_seconds())
    return best[1] if best else None
