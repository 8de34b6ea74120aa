"""The LLMService's phase, counts and Ready/Progressing/Degraded conditions from its Deployments
and pods (pure; the rules are tabled in status/__init__.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llmfleet.operator.api.common import Condition
from llmfleet.operator.api.llmservice_status import Phase

from .pods import Problem, diagnose_pod, pod_condition, pod_ready, pod_terminating

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
    scheduled = any((pod_condition(p, "PodScheduled") or {}).get("status") == "True" for p in live)

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


