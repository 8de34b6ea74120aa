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

from .pods import (
           INIT_DOWNLOAD_CONTAINER,
           Problem,
           diagnose_pod,
           model_startup_seconds,
           pod_ready,
           pod_terminating,
)
from .service import ServiceState, compute_status, deployment_problems, rollout_complete

__all__ = ["INIT_DOWNLOAD_CONTAINER", "Problem", "ServiceState", "compute_status", "deployment_problems",
           "diagnose_pod", "model_startup_seconds", "pod_ready", "pod_terminating", "rollout_complete"]
