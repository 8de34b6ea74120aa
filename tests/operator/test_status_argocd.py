"""The statuses the operator writes, read by the Argo CD health check the chart ships (manifests/argocd).

The reconciler (against the fake API server of test_handlers) produces each status; the
Lua script, run as Argo CD runs it, must call it what a GitOps user expects.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from fakes import NS, World, sync, tick

_spec = importlib.util.spec_from_file_location(
    "argocd_health", Path(__file__).resolve().parents[1] / "packaging" / "test_argocd_health.py")
argocd_health = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(argocd_health)


def crash(pod: dict) -> None:
    pod["status"]["conditions"][1]["status"] = "False"
    pod["status"]["containerStatuses"] = [{"name": "engine", "restartCount": 3, "state": {
        "waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1}}}]


def unschedulable(pod: dict) -> None:
    pod["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                     "reason": "Unschedulable", "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}]}


@pytest.mark.parametrize(
    "story, spec, pods, health, words",
    [
        ("ready", {"replicas": 1}, None, "Healthy", "1/1"),
        ("crash-looping", {"replicas": 1}, crash, "Degraded", "keeps crashing"),
        ("waiting for a GPU node", {"replicas": 1}, unschedulable, "Progressing", "Insufficient nvidia.com/gpu"),
        ("policy missing", {"autoscalePolicyRef": {"name": "nope"}}, None, "Degraded", "AutoscalePolicy nope not found"),
    ],
)
def test_argocd_health_of_what_the_operator_writes(story, spec, pods, health, words):
    world = World()
    world.service(**spec)
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    if ("Deployment", NS, "chat") in world.kube.objects:
        world.run_pods()
        for key, obj in world.kube.objects.items():
            if key[0] == "Pod" and pods is not None:
                pods(obj)
        world.advance(1)
        tick(world, rec)
    result = argocd_health.health(world.body())
    assert result["status"] == health, (story, result)
    assert words in result["message"], (story, result)
