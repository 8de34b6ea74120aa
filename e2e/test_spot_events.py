"""Karpenter's Event about a Node reaches an operator that serves only one other namespace.

An Event about a cluster-scoped object may only live in `default` (the API server refuses
it elsewhere), and kopf watches Events only in the served namespaces. Given the chart
installed with `operator.watchNamespaces` = one fresh namespace (so kopf never looks at
`default`, and the RBAC grants `events` list/watch there only through the chart's
`-node-events` Role), and a pooled LLMService in it with a pod on a spot node, when a
`SpotInterrupted` Event on that Node is created in `default`, then the operator starts
draining the pod (drain annotations) and the SpotPool lists the node as interrupted.
The SpotPool's own `SpotInterrupted` Event is in the operator's namespace, and the
operator's log, read after all that, has no ERROR line and no traceback: with exact
namespace names it neither lists nor watches Namespaces, and it posts no Event to
`default`, none of which it may do (docs/operator.md).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bedkit import E2ECluster, wait_until
from operator_support import CHART, create_spot_pool, helm, llms

RELEASE = "llmfleet-e2e-ns"  # its own release: a cluster-wide one would watch default itself
SELECTOR = f"app.kubernetes.io/name=llmfleet,app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator"


def _operator_ready(cluster: E2ECluster) -> bool:
    pods = [p for p in cluster.core.list_namespaced_pod(RELEASE, label_selector=SELECTOR).items
            if p.metadata.deletion_timestamp is None]
    return len(pods) == 1 and any(c.type == "Ready" and c.status == "True" for c in pods[0].status.conditions or [])


def test_a_node_event_in_default_reaches_an_operator_serving_another_namespace(
    cluster: E2ECluster, namespace: str, tiny_model: Path
) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(cluster.api)
    pool_name = f"spot-{namespace}"
    event_name = f"karpenter-{uuid.uuid4().hex[:6]}"
    helm(cluster, "upgrade", "--install", RELEASE, str(CHART), "--namespace", RELEASE, "--create-namespace",
         "--set", f"operator.watchNamespaces={{{namespace}}}", "--set", "grafanaDashboard.enabled=false",
         "--wait", "--timeout", "180s")
    try:
        wait_until("the namespaced operator Ready", lambda: _operator_ready(cluster), timeout=120, interval=1)
        (op,) = cluster.core.list_namespaced_pod(RELEASE, label_selector=SELECTOR).items
        args = op.spec.containers[0].args
        assert f"--namespace={namespace}" in args and "--node-events-namespace=default" in args, args
        roles = {r.metadata.name for r in client.RbacAuthorizationV1Api(cluster.api).list_namespaced_role("default").items}
        assert f"{RELEASE}-node-events" in roles

        create_spot_pool(cluster, pool_name, onDemandBase=1)
        custom.create_namespaced_custom_object("llmfleet.dev", "v1alpha1", namespace, "llmservices", {
            "apiVersion": "llmfleet.dev/v1alpha1", "kind": "LLMService", "metadata": {"name": "chat"},
            "spec": {"model": {"uri": f"file://{tiny_model}"}, "engine": {"maxModelLen": 256},
                     "replicas": 2, "spotPoolRef": {"name": pool_name}}})

        def spot_pod() -> Any:
            pods = cluster.core.list_namespaced_pod(
                namespace, label_selector="llmfleet.dev/service=chat,llmfleet.dev/capacity=spot").items
            return next((p for p in pods if p.spec.node_name and any(
                c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])), None)

        wait_until("a Ready spot pod", spot_pod, timeout=180, interval=1)
        wait_until("chat Ready 2/2", lambda: (llms(cluster, namespace, "chat").get("status") or {}).get("readyText")
                   == "2/2", timeout=60, interval=1)
        pod = spot_pod()
        node, name = pod.spec.node_name, pod.metadata.name

        now = datetime.now(UTC).replace(microsecond=0)
        cluster.core.create_namespaced_event("default", {
            "metadata": {"name": event_name, "namespace": "default"},
            "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node},
            "reason": "SpotInterrupted", "type": "Warning", "count": 1,
            "message": "Spot interruption warning was triggered (e2e)", "source": {"component": "karpenter"},
            "firstTimestamp": now, "lastTimestamp": now})
        t0 = datetime.now(UTC)

        def drained() -> bool:
            p = cluster.core.read_namespaced_pod(name, namespace)
            return "llmfleet.dev/drain-started" in (p.metadata.annotations or {})

        wait_until(f"pod {name} on {node} marked for drain", drained, timeout=30, interval=0.25)
        took = (datetime.now(UTC) - t0).total_seconds()
        wait_until("the SpotPool lists the node as interrupted", lambda: node in [
            n["name"] for n in (custom.get_cluster_custom_object("llmfleet.dev", "v1alpha1", "spotpools", pool_name)
                                .get("status") or {}).get("interruptedNodes") or []], timeout=15, interval=0.5)
        pool = custom.get_cluster_custom_object("llmfleet.dev", "v1alpha1", "spotpools", pool_name)
        # kopf posts a cluster-scoped SpotPool's Events to the operator's namespace (the chart's
        # <release>-events Role allows that, not `default`).
        wait_until("the SpotPool's SpotInterrupted Event in the operator's namespace", lambda: [
            e for e in cluster.core.list_namespaced_event(
                RELEASE, field_selector=f"involvedObject.kind=SpotPool,involvedObject.name={pool_name}").items
            if e.reason == "SpotInterrupted"], timeout=15, interval=0.5)
        log = cluster.pod_log(RELEASE, op.metadata.name)
        assert f"serving namespaces {namespace} by name" in log, log[-2000:]
        # kopf logs its retries at ERROR; one it may meet here is not the operator's doing: a CRD
        # installed seconds ago whose watch cache is still filling answers 429 "storage is
        # (re)initializing" (with Retry-After), seen on a fresh bed. Any other ERROR line counts.
        bad = [line for line in log.splitlines() if ("[ERROR" in line or "Traceback" in line)
               and "storage is (re)initializing" not in line]
        assert not bad, "\n".join(bad[:5])
        print(f"\nSpotInterrupted Event on {node} in default -> pod {name} drain-started after {took:.1f}s; "
              f"pool interruptedNodes {[n['name'] for n in pool['status']['interruptedNodes']]}")
    finally:
        try:
            custom.delete_namespaced_custom_object("llmfleet.dev", "v1alpha1", namespace, "llmservices", "chat")
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        # kopf's finalizer: the operator must still run while the service goes.
        wait_until("the LLMService gone", lambda: not custom.list_namespaced_custom_object(
            "llmfleet.dev", "v1alpha1", namespace, "llmservices")["items"], timeout=90, interval=1)
        for delete in (
            lambda: custom.delete_cluster_custom_object("llmfleet.dev", "v1alpha1", "spotpools", pool_name),
            lambda: cluster.core.delete_namespaced_event(event_name, "default"),
        ):
            try:
                delete()
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
        helm(cluster, "uninstall", RELEASE, "--namespace", RELEASE, "--wait", "--timeout", "120s")
        cluster.core.delete_namespace(RELEASE)
