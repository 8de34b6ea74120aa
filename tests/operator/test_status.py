"""Phase and conditions from observed Deployments and pods: one row per situation a user must recognise."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from llmfleet.operator.status import Problem, compute_status, diagnose_pod, model_startup_seconds

NOW = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
T0 = "2026-01-01T12:00:00Z"


def pod(name="chat-1", *, ready=False, scheduled=True, sched_reason=None, sched_message=None, containers=None,
        init=None, phase="Running", deleting=False, ready_at=None, started=T0):
    conds = [] if scheduled is None else [{"type": "PodScheduled", "status": "True" if scheduled else "False",
              **({"reason": sched_reason} if sched_reason else {}),
              **({"message": sched_message} if sched_message else {})}]
    if scheduled:
        conds.append({"type": "Ready", "status": "True" if ready else "False",
                      **({"lastTransitionTime": ready_at} if ready_at else {})})
    meta = {"name": name, "labels": {"llmfleet.dev/capacity": "any"}}
    if deleting:
        meta["deletionTimestamp"] = T0
    status = {"phase": phase if scheduled else "Pending", "conditions": conds, "startTime": started}
    if containers is not None:
        status["containerStatuses"] = containers
    if init is not None:
        status["initContainerStatuses"] = init
    return {"metadata": meta, "status": status}


def running(started=T0):
    return [{"name": "engine", "ready": False, "restartCount": 0, "state": {"running": {"startedAt": started}}}]


def waiting(reason, message="", restarts=0, last=None):
    st = {"name": "engine", "ready": False, "restartCount": restarts, "state": {"waiting": {"reason": reason, "message": message}}}
    if last:
        st["lastState"] = {"terminated": last}
    return [st]


def deployment(name="chat", replicas=1, ready=0, updated=None, conditions=()):
    return {
        "metadata": {"name": name, "generation": 1},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": 1, "replicas": replicas, "readyReplicas": ready,
                   "availableReplicas": ready, "updatedReplicas": replicas if updated is None else updated,
                   "conditions": list(conditions)},
    }


def conds(state):
    return {c.type: (c.status, c.reason) for c in state.conditions}


@pytest.mark.parametrize(
    "pod_obj, reason, failure",
    [
        (pod(containers=waiting("ImagePullBackOff", "Back-off pulling image \"nope:1\"")), "ImagePullFailed", True),
        (pod(containers=waiting("ErrImagePull")), "ImagePullFailed", True),
        (pod(containers=waiting("CreateContainerConfigError", "executable 'llmfleet-engine' not found on this host")),
         "ContainerStartFailed", True),
        (pod(containers=waiting("RunContainerError", 'exec: "vllm": executable file not found in $PATH')),
         "ContainerStartFailed", True),
        (pod(containers=waiting("CrashLoopBackOff", "back-off 20s", 3, {"exitCode": 1, "reason": "Error"})),
         "CrashLoopBackOff", True),
        (pod(scheduled=False, sched_reason="Unschedulable",
             sched_message="0/4 nodes are available: 4 Insufficient nvidia.com/gpu."), "Unschedulable", False),
        (pod(containers=running()), "ModelLoading", False),
        (pod(containers=waiting("ContainerCreating")), "ContainerCreating", False),
        (pod(init=[{"name": "fetch-model", "state": {"running": {"startedAt": T0}}}]), "ModelDownloading", False),
        (pod(init=[{"name": "fetch-model", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1}}}]), "ModelDownloadFailed", True),
        (pod(phase="Failed"), "PodFailed", True),
    ],
)
def test_diagnose_pod(pod_obj, reason, failure):
    problem = diagnose_pod(pod_obj, NOW)
    assert problem is not None
    assert (problem.reason, problem.failure) == (reason, failure)


def test_messages_say_what_a_user_needs_without_logs():
    crash = diagnose_pod(pod(containers=waiting("CrashLoopBackOff", "", 4, {"exitCode": 137, "reason": "OOMKilled"})), NOW)
    assert "4 restarts" in crash.message and "exit code 137" in crash.message and "OOMKilled" in crash.message
    unsched = diagnose_pod(pod(scheduled=False, sched_reason="Unschedulable", sched_message="0/4 nodes are available"), NOW)
    assert unsched.message == "0/4 nodes are available"
    loading = diagnose_pod(pod(containers=running()), NOW)
    assert loading.message == "the engine is loading the model for 30s"


def test_ready_and_terminating_pods_have_no_problem():
    assert diagnose_pod(pod(ready=True, containers=running()), NOW) is None
    assert diagnose_pod(pod(deleting=True, containers=running()), NOW) is None


# (desired, deployments, pods, reference problem) -> phase, Ready, Progressing, Degraded
ROWS = [
    ("all ready", 2, [deployment(replicas=2, ready=2)],
     [pod("a", ready=True), pod("b", ready=True)], None,
     "Ready", ("True", "AllReplicasReady"), ("False", "RolloutComplete"), ("False", "AsExpected")),
    ("nothing scheduled yet", 1, [deployment()], [pod(scheduled=None)], None,
     "Pending", ("False", "PodPending"), ("True", "PodPending"), ("False", "AsExpected")),
    ("no pod created yet", 1, [deployment()], [], None,
     "Pending", ("False", "NoReplicasReady"), ("True", "RollingOut"), ("False", "AsExpected")),
    ("unschedulable", 1, [deployment()],
     [pod(scheduled=False, sched_reason="Unschedulable", sched_message="0/4 nodes")], None,
     "Pending", ("False", "Unschedulable"), ("True", "Unschedulable"), ("False", "AsExpected")),
    ("loading the model", 1, [deployment()], [pod(containers=running())], None,
     "Progressing", ("False", "ModelLoading"), ("True", "ModelLoading"), ("False", "AsExpected")),
    ("image pull", 1, [deployment()], [pod(containers=waiting("ErrImagePull"))], None,
     "Failed", ("False", "ImagePullFailed"), ("True", "RollingOut"), ("True", "ImagePullFailed")),
    ("one of two crashing", 2, [deployment(replicas=2, ready=1)],
     [pod("a", ready=True), pod("b", containers=waiting("CrashLoopBackOff", "", 2))], None,
     "Degraded", ("True", "MinimumReplicasReady"), ("True", "RollingOut"), ("True", "CrashLoopBackOff")),
    ("scaling up, new pod loading", 2, [deployment(replicas=2, ready=1)],
     [pod("a", ready=True), pod("b", containers=running())], None,
     "Progressing", ("True", "MinimumReplicasReady"), ("True", "ModelLoading"), ("False", "AsExpected")),
    ("rolling out a new template", 1, [deployment(replicas=1, ready=1, updated=0)],
     [pod("a", ready=True)], None,
     "Progressing", ("True", "AllReplicasReady"), ("True", "RollingOut"), ("False", "AsExpected")),
    ("progress deadline", 1,
     [deployment(conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                              "message": "ReplicaSet chat-1 has timed out progressing."}])],
     [pod(containers=running())], None,
     "Failed", ("False", "ProgressDeadlineExceeded"), ("False", "ProgressDeadlineExceeded"),
     ("True", "ProgressDeadlineExceeded")),
    ("pods refused by admission", 1,
     [deployment(conditions=[{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                              "message": "pods \"chat-x\" is forbidden: violates PodSecurity"}])], [], None,
     "Failed", ("False", "FailedCreate"), ("True", "RollingOut"), ("True", "FailedCreate")),
    ("policy missing, nothing applied", 0, [], [],
     Problem("AutoscalePolicyNotFound", "AutoscalePolicy chat-policy not found in namespace a"),
     "Pending", ("False", "AutoscalePolicyNotFound"), ("False", "AutoscalePolicyNotFound"),
     ("True", "AutoscalePolicyNotFound")),
    ("scaled to zero", 0, [deployment(replicas=0)], [], None,
     "Ready", ("True", "ScaledToZero"), ("False", "RolloutComplete"), ("False", "AsExpected")),
]


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_compute_status(row):
    _, desired, deps, pods, problem, phase, ready, progressing, degraded = row
    state = compute_status(generation=3, desired=desired, deployments=deps, pods=pods, now=NOW,
                           reference_problem=problem)
    assert state.phase == phase
    assert conds(state) == {"Ready": ready, "Progressing": progressing, "Degraded": degraded}
    assert all(c.observed_generation == 3 for c in state.conditions)


def test_condition_messages_name_the_pod_and_count_the_others():
    pods = [pod(f"chat-{i}", containers=waiting("ImagePullBackOff", "no such image")) for i in range(3)]
    state = compute_status(generation=1, desired=3, deployments=[deployment(replicas=3)], pods=pods, now=NOW)
    ready = next(c for c in state.conditions if c.type == "Ready")
    assert ready.message.startswith("0/3 replicas ready; pod chat-0 (and 2 more): container engine: ImagePullBackOff")
    assert state.ready_text == "0/3"


def test_terminating_pods_do_not_count():
    pods = [pod("a", ready=True), pod("b", ready=True, deleting=True)]
    state = compute_status(generation=1, desired=1, deployments=[deployment(replicas=1, ready=1)], pods=pods, now=NOW)
    assert (state.replicas, state.ready_replicas, state.phase) == (1, 1, "Ready")


def test_model_startup_from_pod_start_to_ready():
    pods = [
        pod("old", ready=True, containers=[{"name": "engine", "state": {"running": {"startedAt": "2026-01-01T11:00:00Z"}}}],
            ready_at="2026-01-01T11:00:50Z"),
        pod("new", ready=True, containers=[{"name": "engine", "state": {"running": {"startedAt": T0}}}],
            ready_at="2026-01-01T12:00:12Z"),
        pod("loading", containers=running()),
    ]
    assert model_startup_seconds(pods) == 12.0
    assert model_startup_seconds([pod("x", containers=running())]) is None
