"""What the real API server enforces for a multi-tenant cluster (docs/security.md).

Given the chart's ValidatingAdmissionPolicy with one model directory allowed, when a tenant
applies LLMServices naming other host paths, a foreign image, a PriorityClass or a taint key
the admin did not allow, then the API server refuses each with the field's name, and accepts
the ones inside the rules. And a tenant who may create Events in its own namespace cannot
write a Node Event that the operator's spot handlers would take as an interruption notice.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from bedkit import E2ECluster, wait_until
from llmfleet.operator.spot.event_trust import trusted_node_event
from operator_support import CHART, helm_binary

RELEASE = "vap-e2e"
POLICY = f"{RELEASE}-llmfleet-llmservices"
ALLOWED = "/var/lib/llmfleet/models"


def llms(name: str, uri: str = f"file://{ALLOWED}/tiny", **spec: Any) -> dict:
    return {"apiVersion": "llmfleet.dev/v1alpha1", "kind": "LLMService", "metadata": {"name": name},
            "spec": {"model": {"uri": uri}, **spec}}


def create(cluster: E2ECluster, namespace: str, body: dict) -> str | None:
    """A dry-run create; None when admitted, else the API server's message."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
            "llmfleet.dev", "v1alpha1", namespace, "llmservices", body, dry_run="All")
    except ApiException as exc:
        return str(exc.body)
    return None


def apply_policy(cluster: E2ECluster, allowed_host_path: str = ALLOWED) -> None:
    rendered = subprocess.run(
        [str(helm_binary()), "template", RELEASE, str(CHART), "--show-only", "templates/admissionpolicy.yaml",
         "--set", f"admission.allowedHostPaths={{{allowed_host_path}}}",
         "--set", "admission.allowedImagePrefixes={ghcr.io/llmfleet/}",
         "--set", "admission.allowedPriorityClasses={inference}",
         "--set", "admission.allowedTolerationKeys={nvidia.com/gpu}"],
        capture_output=True, text=True, check=True, timeout=120).stdout
    subprocess.run(["kubectl", f"--kubeconfig={cluster.kubeconfig}", "apply", "-f", "-"], input=rendered,
                   capture_output=True, text=True, check=True, timeout=60)


@pytest.fixture(name="policy")
def policy_fixture(cluster: E2ECluster) -> Any:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    apply_policy(cluster)
    yield POLICY
    cluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", POLICY,
                    "--ignore-not-found")


def test_the_api_server_refuses_llmservices_outside_the_admins_rules(
    cluster: E2ECluster, namespace: str, policy: str
) -> None:
    # The policy is in force once the API server has compiled it and synced its binding.
    wait_until("the admission policy in force",
               lambda: create(cluster, namespace, llms("probe", "file:///etc")) is not None, timeout=60, interval=1)
    refused = {
        "file:///etc": (llms("a", "file:///etc"), "spec.model.uri"),
        "a sibling sharing the letters": (llms("b", f"file://{ALLOWED}-evil"), "spec.model.uri"),
        "climbing out with ..": (llms("c", f"file://{ALLOWED}/../../../etc"), "spec.model.uri"),
        "a foreign image": (llms("d", engine={"image": "evil.io/engine:1"}), "spec.engine.image"),
        "system-node-critical": (llms("e", scheduling={"priorityClassName": "system-node-critical"}),
                                 "spec.scheduling.priorityClassName"),
        "every taint": (llms("f", scheduling={"tolerations": [{"operator": "Exists"}]}),
                        "spec.scheduling.tolerations"),
    }
    for case, (body, field) in refused.items():
        message = create(cluster, namespace, body)
        assert message is not None and field in message and POLICY in message, (case, message)
    admitted = [
        llms("g"),
        llms("h", f"file://{ALLOWED}"),
        llms("i", "pvc://weights/tiny"),
        llms("j", engine={"image": "ghcr.io/llmfleet/llmfleet:0.1.0"},
             scheduling={"priorityClassName": "inference",
                         "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}),
    ]
    for body in admitted:
        assert create(cluster, namespace, body) is None, body


def test_an_llmservice_outside_narrowed_rules_can_still_be_labelled_and_deleted(
    cluster: E2ECluster, namespace: str, policy: str
) -> None:
    """The admin narrows the host paths after a service was admitted: a change of its spec is judged
    by the new rules, but metadata-only updates (a label, a finalizer's removal) still pass, so the
    service and its namespace can be deleted."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(cluster.api)
    group = ("llmfleet.dev", "v1alpha1", namespace, "llmservices")
    wait_until("the admission policy in force",
               lambda: create(cluster, namespace, llms("probe", "file:///etc")) is not None, timeout=60, interval=1)
    body = llms("held")
    body["metadata"]["finalizers"] = ["e2e.llmfleet.dev/hold"]
    api.create_namespaced_custom_object(*group, body)
    apply_policy(cluster, "/srv/other-models")
    wait_until("the narrowed rules in force",
               lambda: create(cluster, namespace, llms("probe")) is not None, timeout=60, interval=1)

    with pytest.raises(ApiException) as refused:
        api.patch_namespaced_custom_object(*group, "held", {"spec": {"model": {"servedName": "renamed"}}})
    assert "spec.model.uri" in str(refused.value.body) and POLICY in str(refused.value.body)
    api.patch_namespaced_custom_object(*group, "held", {"metadata": {"labels": {"team": "a"}}})
    api.delete_namespaced_custom_object(*group, "held")
    api.patch_namespaced_custom_object(*group, "held", {"metadata": {"finalizers": None}})

    def gone() -> bool:
        try:
            api.get_namespaced_custom_object(*group, "held")
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_until("the LLMService deleted", gone, timeout=30, interval=0.5)


def test_a_tenant_cannot_write_a_node_event_the_operator_trusts(cluster: E2ECluster, namespace: str) -> None:
    from kubernetes.client.exceptions import ApiException

    node = cluster.core.list_node().items[0]
    about = {"apiVersion": "v1", "kind": "Node", "name": node.metadata.name, "uid": node.metadata.uid}
    forged = {"metadata": {"name": "forged"}, "involvedObject": about, "reason": "SpotInterrupted",
              "type": "Warning", "message": "forged", "firstTimestamp": "2026-01-01T00:00:00Z",
              "lastTimestamp": "2026-01-01T00:00:00Z", "count": 1}
    # In its own namespace, an Event about a cluster-scoped object is refused by the API server...
    with pytest.raises(ApiException) as refused:
        cluster.core.create_namespaced_event(namespace, forged)
    assert refused.value.status == 422 and "involvedObject.namespace" in str(refused.value.body)
    # ...and naming its namespace is accepted, but it is then not a Node Event the operator trusts.
    named = {**forged, "involvedObject": {**about, "namespace": namespace}}
    cluster.core.create_namespaced_event(namespace, named)
    stored = cluster.api.sanitize_for_serialization(cluster.core.read_namespaced_event("forged", namespace))
    assert stored["involvedObject"]["namespace"] == namespace
    assert not trusted_node_event(stored)


def test_the_crds_refuse_specs_the_reconciler_cannot_handle(cluster: E2ECluster, namespace: str) -> None:
    """The bounds of operator/api (schema and CEL, `make crds`) as the real API server applies them."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    custom = client.CustomObjectsApi(cluster.api)

    def refused(plural: str, body: dict, cluster_scoped: bool = False) -> str | None:
        try:
            if cluster_scoped:
                custom.create_cluster_custom_object("llmfleet.dev", "v1alpha1", plural, body, dry_run="All")
            else:
                custom.create_namespaced_custom_object("llmfleet.dev", "v1alpha1", namespace, plural, body,
                                                       dry_run="All")
        except ApiException as exc:
            return str(exc.body)
        return None

    hf = "hf://org/model"
    cases = {
        "a name a pooled service's Deployment takes": (llms("chat-spot", hf), "must not end in -spot"),
        "file:///tmp": (llms("a", "file:///tmp"), "pod's own mount paths"),
        "a negative memory": (llms("b", hf, resources={"memory": "-1Gi"}), "spec.resources.memory"),
        "drainTimeoutSeconds 0": (llms("c", hf, drainTimeoutSeconds=0), "spec.drainTimeoutSeconds"),
    }
    for case, (body, says) in cases.items():
        message = refused("llmservices", body)
        assert message is not None and says in message, (case, message)
    assert refused("llmservices", llms("chat", hf, drainTimeoutSeconds=1)) is None

    policy = {"apiVersion": "llmfleet.dev/v1alpha1", "kind": "AutoscalePolicy", "metadata": {"name": "p"},
              "spec": {"minReplicas": 1, "maxReplicas": 10, "metric": {"targetAverageValue": 1e-9}}}
    assert "spec.metric.targetAverageValue" in (refused("autoscalepolicies", policy) or "")
    policy["spec"] = {"minReplicas": 1, "maxReplicas": 100000, "metric": {"targetAverageValue": 4}}
    assert "spec.maxReplicas" in (refused("autoscalepolicies", policy) or "")

    pool = {"apiVersion": "llmfleet.dev/v1alpha1", "kind": "SpotPool", "metadata": {"name": "vap-e2e-pool"},
            "spec": {"spot": {"nodeSelector": {"karpenter.sh/capacity-type": "spot"}},
                     "onDemand": {"nodeSelector": {"karpenter.sh/capacity-type": "spot", "zone": "a"}}}}
    assert "must not contain spec.spot.nodeSelector" in (refused("spotpools", pool, cluster_scoped=True) or "")
