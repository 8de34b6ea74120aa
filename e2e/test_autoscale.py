"""Autoscaling on engine queue depth, on the real control plane.

Given an LLMService whose engines decode one sequence at a time, under an AutoscalePolicy
with a target of 2 waiting requests per replica, a 5 s sync period and a 20 s scale-down
window, when 12 clients send long completions without pause, then the operator scales
the generated Deployment up within two sync periods of the queue forming, every request
succeeds while pods are added, and once the load stops the service returns to one
replica after the window; the LLMService spec is never touched, and status and events
explain each scale.
"""

from __future__ import annotations

import time
from pathlib import Path

from bedkit import E2ECluster, wait_until
from llmfleet.operator.scaling import POD_DELETION_COST_ANNOTATION
from operator_support import (
    Load,
    condition,
    llmfleet_operator_fixture,  # noqa: F401  (the chart, installed for this module)
    llms,
)

SYNC = 5
WINDOW = 20


def test_burst_scales_up_within_two_syncs_serves_everything_and_scales_back(
    llmfleet_operator: E2ECluster, namespace: str, tiny_model: Path
) -> None:
    cluster = llmfleet_operator
    from kubernetes import client

    custom = client.CustomObjectsApi(cluster.api)
    custom.create_namespaced_custom_object("llmfleet.dev", "v1alpha1", namespace, "autoscalepolicies", {
        "apiVersion": "llmfleet.dev/v1alpha1", "kind": "AutoscalePolicy", "metadata": {"name": "burst"},
        "spec": {"minReplicas": 1, "maxReplicas": 3, "metric": {"type": "QueueDepth", "targetAverageValue": 2},
                 "syncPeriodSeconds": SYNC, "behavior": {"scaleDown": {"stabilizationWindowSeconds": WINDOW}}}})
    custom.create_namespaced_custom_object("llmfleet.dev", "v1alpha1", namespace, "llmservices", {
        "apiVersion": "llmfleet.dev/v1alpha1", "kind": "LLMService", "metadata": {"name": "burst"},
        # One torch thread per engine: three replicas share this machine's few cores, and more
        # threads than cores collapse decoding.
        "spec": {"model": {"uri": f"file://{tiny_model}"},
                 "engine": {"maxNumSeqs": 1, "maxModelLen": 256, "extraArgs": ["--threads", "1"]},
                 "autoscalePolicyRef": {"name": "burst"}, "drainGraceSeconds": 2, "drainTimeoutSeconds": 30,
                 "pricing": {"onDemandHourly": 3.0}}})
    spec_before = None

    def replicas() -> int:
        return cluster.apps.read_namespaced_deployment("burst", namespace).spec.replicas

    def status() -> dict:
        return llms(cluster, namespace, "burst").get("status", {})

    wait_until("burst Ready at 1 replica with the autoscaler running",
               lambda: status().get("phase") == "Ready" and status().get("scaling", {}).get("lastSyncTime"),
               timeout=120, interval=1)
    spec_before = llms(cluster, namespace, "burst")["spec"]
    assert replicas() == 1

    # When: a burst. The queue forms as soon as the clients start (one sequence at a time).
    load = Load(cluster, namespace, "burst", "burst", clients=12, max_tokens=200).start()
    started = time.monotonic()
    try:
        wait_until("a scale-up", lambda: replicas() > 1, timeout=2 * SYNC + 10, interval=0.25)
        reaction = time.monotonic() - started
        wait_until("3/3 ready", lambda: status().get("readyText") == "3/3", timeout=90, interval=0.5)
        serving = time.monotonic() - started
        held = [replicas() for _ in range(16) if time.sleep(0.5) is None]  # the burst goes on for 8 s
        # Cost while serving: 3 ready replicas x 3.0 per hour, and a price per 1K generated tokens.
        cost = wait_until("cost per 1K tokens in status", lambda: (
            lambda c: c if c.get("perHour") == 9.0 and c.get("per1kTokens") else None)(status().get("cost") or {}),
            timeout=2 * SYNC + 2, interval=0.5)
    finally:
        load.stop()
    stopped = time.monotonic()
    print(f"\ncost while serving the burst: {cost}")
    print(f"scale-up reaction {reaction:.1f}s after the burst began (sync period {SYNC}s); "
          f"3 replicas serving after {serving:.1f}s; {load.ok} requests, {len(load.failures)} failed")

    # Then: it reacted within two sync periods, and nothing failed.
    assert reaction <= 2 * SYNC + 1, f"scale-up took {reaction:.1f}s"
    assert not load.failures, load.failures[:5]
    assert load.ok > 0

    # And it returns to one replica after the stabilization window.
    wait_until("back to 1 replica", lambda: replicas() == 1, timeout=WINDOW + 3 * SYNC + 15, interval=0.5)
    down = time.monotonic() - stopped
    print(f"scaled back to 1 replica {down:.1f}s after the burst ended (window {WINDOW}s)")
    assert min(held) == 3, f"scaled down while the burst was still on: {held}"

    st = wait_until("the last decision in status", lambda: (lambda s: s if s["scaling"]["decisions"][-1]["to"] == 1
                                                             else None)(status()), timeout=10)
    moves = [(d["from"], d["to"]) for d in st["scaling"]["decisions"]]
    assert moves[0][0] == 1 and moves[0][1] > 1 and moves[-1][1] == 1
    assert st["lastScaleReason"].endswith("QueueDepth below target")
    assert condition(llms(cluster, namespace, "burst"), "MetricsAvailable")["reason"] == "ValidMetricFound"
    assert llms(cluster, namespace, "burst")["spec"] == spec_before  # the user's spec is never written
    pods = cluster.core.list_namespaced_pod(namespace, label_selector="llmfleet.dev/service=burst").items
    survivors = [p for p in pods if p.metadata.deletion_timestamp is None]
    assert all(POD_DELETION_COST_ANNOTATION in (p.metadata.annotations or {}) for p in survivors)
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                             "involvedObject.kind=LLMService,involvedObject.name=burst,reason=SuccessfulRescale",
                             "-o", "custom-columns=MESSAGE:.message")
    assert "reason: QueueDepth above target" in events and "reason: QueueDepth below target" in events
    asp = custom.get_namespaced_custom_object("llmfleet.dev", "v1alpha1", namespace, "autoscalepolicies", "burst")
    assert asp["status"]["services"] == ["burst"]
    cluster.kubectl("delete", "llms", "burst", "-n", namespace, "--wait=true", "--timeout=60s")
