"""The operator on the real control plane, installed by its Helm chart.

Given the chart installed on the real nodes (the operator image in containerd, with its
ServiceAccount's projected token, so RBAC is the chart's),
when a user applies the examples, then the LLMService turns Ready, `kubectl get llms`
shows its columns, its endpoints answer, and `kubectl diff --server-side` finds nothing
to change. Invalid objects are refused by the API server; deleting a service
garbage-collects its children; restarting the operator mid-reconcile converges without
duplicates.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from bedkit import E2ECluster, wait_until
from operator_support import (
    EXAMPLE_MODEL,
    EXAMPLE_MODEL_URI,
    EXAMPLES,
    OPERATOR_NS,
    condition,
    ensure_model,
    llmfleet_operator_fixture,  # noqa: F401  (the chart, installed for this module)
    llms,
    operator_pods,
    operator_ready,
    post_completion,
    ready_endpoints,
)


def llms_columns(cluster: E2ECluster, namespace: str) -> list[list[str]]:
    out = cluster.kubectl("get", "llms", "-n", namespace)
    return [line.split() for line in out.strip().splitlines()]


def service_manifest(name: str, model: Path, **spec: object) -> dict:
    return {
        "apiVersion": "llmfleet.dev/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": name},
        "spec": {"model": {"uri": f"file://{model}"}, "engine": {"maxModelLen": 256}, **spec},
    }


def create(cluster: E2ECluster, namespace: str, obj: dict) -> None:
    from kubernetes import client

    plural = {"LLMService": "llmservices", "AutoscalePolicy": "autoscalepolicies"}[obj["kind"]]
    client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
        "llmfleet.dev", "v1alpha1", namespace, plural, obj
    )


def children(cluster: E2ECluster, namespace: str, name: str) -> dict[str, list[str]]:
    sel = f"llmfleet.dev/service={name}"
    from kubernetes import client

    policy = client.PolicyV1Api(cluster.api)
    return {
        "deployments": [
            d.metadata.name
            for d in cluster.apps.list_namespaced_deployment(namespace, label_selector=sel).items
        ],
        "replicasets": [
            r.metadata.name
            for r in cluster.apps.list_namespaced_replica_set(namespace, label_selector=sel).items
        ],
        "services": [
            s.metadata.name for s in cluster.core.list_namespaced_service(namespace, label_selector=sel).items
        ],
        "pdbs": [
            p.metadata.name
            for p in policy.list_namespaced_pod_disruption_budget(namespace, label_selector=sel).items
        ],
        "pods": [
            p.metadata.name for p in cluster.core.list_namespaced_pod(namespace, label_selector=sel).items
        ],
    }


def test_example_becomes_ready_serves_and_shows_no_drift(llmfleet_operator: E2ECluster, namespace: str) -> None:
    cluster = llmfleet_operator
    ensure_model(EXAMPLE_MODEL)
    pool_existed = bool(cluster.kubectl("get", "spotpools", "--ignore-not-found", "-o", "name").strip())
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", str(EXAMPLES))
    try:
        wait_until(
            "chat Ready",
            lambda: llms(cluster, namespace, "chat").get("status", {}).get("phase") == "Ready",
            timeout=120,
            interval=1,
        )
        obj = llms(cluster, namespace, "chat")
        assert condition(obj, "Ready")["status"] == "True"
        assert condition(obj, "Ready")["observedGeneration"] == obj["metadata"]["generation"]
        assert obj["status"]["endpoint"] == f"http://chat.{namespace}.svc/v1"
        assert "kopf" not in str(
            obj["metadata"].get("annotations")
        )  # kopf's state is in status, not annotations

        wait_until(
            "the QUEUE column filled by a scrape",
            lambda: llms(cluster, namespace, "chat")["status"].get("averageQueueDepth") is not None,
            timeout=40,
        )
        wait_until(
            "the autoscaler's first sync",
            lambda: (
                llms(cluster, namespace, "chat")["status"].get("scaling", {}).get("policy") == "chat-policy"
            ),
            timeout=40,
        )
        header, row = llms_columns(cluster, namespace)
        assert header[:5] == ["NAME", "MODEL", "READY", "QUEUE", "PHASE"] and header[-1] == "AGE"
        assert row[:5] == ["chat", EXAMPLE_MODEL_URI, "1/1", "0", "Ready"]

        ips = wait_until("a ready endpoint", lambda: ready_endpoints(cluster, namespace, "chat"), timeout=30)
        for ip in ips:
            out = post_completion(ip, "chat", max_tokens=8)
            assert out["usage"]["completion_tokens"] == 8

        diff = subprocess.run(
            [
                "kubectl",
                f"--kubeconfig={cluster.kubeconfig}",
                "diff",
                "--server-side",
                "-n",
                namespace,
                "-f",
                str(EXAMPLES),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert diff.returncode == 0, f"kubectl diff found drift:\n{diff.stdout}{diff.stderr}"

        events = cluster.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            "involvedObject.kind=LLMService,involvedObject.name=chat",
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        )
        assert "Created Deployment chat with 1 replicas" in events and "PhaseReady" in events

        # The operator's own /metrics, on its pod IP (the chart's metrics port).
        op_ip = operator_pods(cluster)[0].status.pod_ip
        with urllib.request.urlopen(f"http://{op_ip}:8080/metrics", timeout=10) as r:
            exposition = r.read().decode()
        series = f'llmfleet_operator_desired_replicas{{service="chat",service_namespace="{namespace}"}} 1.0'
        assert series in exposition
        assert 'llmfleet_operator_reconciles_total{kind="LLMService",result="success"}' in exposition
        assert "llmfleet_operator_managed_services" in exposition
    finally:
        cluster.kubectl(
            "delete",
            "-n",
            namespace,
            "-f",
            str(EXAMPLES / "llmservice.yaml"),
            "--wait=true",
            "--timeout=60s",
        )
        if not pool_existed:
            cluster.kubectl("delete", "spotpool", "gpu-spot", "--ignore-not-found")


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"replicas": 2, "autoscalePolicyRef": {"name": "p"}}, "mutually exclusive"),
        ({"model": {"uri": "/not/a/uri"}}, "spec.model.uri"),
        (
            {"engine": {"kind": "vllm", "device": "cpu"}},
            "spec.engine.device applies only to engine kind embedded",
        ),
    ],
)
def test_invalid_objects_are_rejected_by_the_api_server(
    llmfleet_operator: E2ECluster, namespace: str, tiny_model: Path, spec: dict, message: str
) -> None:
    from kubernetes.client.exceptions import ApiException

    obj = service_manifest("bad", tiny_model)
    obj["spec"].update(spec)
    with pytest.raises(ApiException) as refused:
        create(llmfleet_operator, namespace, obj)
    assert refused.value.status == 422 and message in refused.value.body


def test_policy_bounds_are_checked_by_the_api_server(llmfleet_operator: E2ECluster, namespace: str) -> None:
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as refused:
        create(
            llmfleet_operator,
            namespace,
            {
                "apiVersion": "llmfleet.dev/v1alpha1",
                "kind": "AutoscalePolicy",
                "metadata": {"name": "p"},
                "spec": {"minReplicas": 5, "maxReplicas": 2, "metric": {"targetAverageValue": 1}},
            },
        )
    assert "spec.minReplicas must be less than or equal to spec.maxReplicas" in refused.value.body


def test_deleting_a_service_garbage_collects_its_children(
    llmfleet_operator: E2ECluster, namespace: str, tiny_model: Path
) -> None:
    cluster = llmfleet_operator
    create(cluster, namespace, service_manifest("gc", tiny_model, replicas=1))
    wait_until(
        "gc Ready",
        lambda: llms(cluster, namespace, "gc").get("status", {}).get("phase") == "Ready",
        timeout=120,
        interval=1,
    )
    made = children(cluster, namespace, "gc")
    assert (made["deployments"], made["services"], made["pdbs"], len(made["pods"])) == (
        ["gc"],
        ["gc"],
        ["gc"],
        1,
    )

    cluster.kubectl("delete", "llms", "gc", "-n", namespace, "--wait=true", "--timeout=60s")
    wait_until(
        "every child collected",
        lambda: not any(children(cluster, namespace, "gc").values()),
        timeout=90,
        interval=1,
    )


def test_restarting_the_operator_mid_reconcile_converges_without_duplicates(
    llmfleet_operator: E2ECluster, namespace: str, tiny_model: Path
) -> None:
    cluster = llmfleet_operator
    create(cluster, namespace, service_manifest("restart", tiny_model, replicas=2))
    wait_until(
        "the Deployment created",
        lambda: children(cluster, namespace, "restart")["deployments"],
        timeout=60,
        interval=0.2,
    )
    # Mid-reconcile: the pods are still starting; kill the operator now.
    old = operator_pods(cluster)[0].metadata.name
    cluster.core.delete_namespaced_pod(old, OPERATOR_NS, grace_period_seconds=0)
    wait_until(
        "a new operator pod Ready",
        lambda: operator_ready(cluster) and operator_pods(cluster)[0].metadata.name != old,
        timeout=120,
        interval=1,
    )
    wait_until(
        "restart Ready 2/2",
        lambda: (
            llms(cluster, namespace, "restart").get("status", {}).get("readyText") == "2/2"
            and llms(cluster, namespace, "restart")["status"]["phase"] == "Ready"
        ),
        timeout=120,
        interval=1,
    )
    time.sleep(3)  # a few more ticks of the new operator: nothing may appear twice
    made = children(cluster, namespace, "restart")
    assert (
        made["deployments"] == ["restart"] and made["services"] == ["restart"] and made["pdbs"] == ["restart"]
    )
    assert len(made["replicasets"]) == 1 and len(made["pods"]) == 2
    # The restarted operator re-applied the same object: no new generation, no second rollout.
    assert cluster.apps.read_namespaced_deployment("restart", namespace).metadata.generation == 1
    cluster.kubectl("delete", "llms", "restart", "-n", namespace, "--wait=true", "--timeout=60s")


def test_why_a_service_is_not_ready_reads_from_kubectl(llmfleet_operator: E2ECluster, namespace: str,
                                                       tiny_model: Path) -> None:
    """Given services that cannot serve, `kubectl get llms` / the conditions say why, without pod logs;
    a missing AutoscalePolicy is picked up the moment it is created, without a restart."""
    cluster = llmfleet_operator
    create(cluster, namespace, service_manifest("toobig", tiny_model, replicas=1, resources={"gpus": 8}))
    create(cluster, namespace, service_manifest("nocmd", tiny_model, replicas=1,
                                                engine={"extraArgs": ["--no-such-flag"]}))
    create(cluster, namespace, service_manifest("waits", tiny_model, autoscalePolicyRef={"name": "later"}))

    def ready_reason(name: str) -> tuple[str, str, str]:
        obj = llms(cluster, namespace, name)
        ready = condition(obj, "Ready")
        return obj.get("status", {}).get("phase", ""), ready.get("reason", ""), ready.get("message", "")

    phase, reason, message = wait_until("toobig Unschedulable", lambda: (lambda r: r if r[1] == "Unschedulable"
                                                                         else None)(ready_reason("toobig")), timeout=60)
    assert phase == "Pending" and "Insufficient nvidia.com/gpu" in message
    phase, reason, message = wait_until("nocmd CrashLoopBackOff", lambda: (lambda r: r if r[1] == "CrashLoopBackOff"
                                                                           else None)(ready_reason("nocmd")), timeout=90)
    assert phase == "Failed" and "exit code" in message
    phase, reason, message = wait_until("waits on its policy", lambda: (
        lambda r: r if r[1] == "AutoscalePolicyNotFound" else None)(ready_reason("waits")), timeout=30)
    assert phase == "Pending" and "AutoscalePolicy later not found" in message
    assert not children(cluster, namespace, "waits")["deployments"]

    rows = {r[0]: r for r in llms_columns(cluster, namespace)[1:]}
    assert rows["toobig"][2:4] == ["0/1", "Pending"]  # no QUEUE yet: the empty column is skipped by split()
    assert rows["nocmd"][2:4] == ["0/1", "Failed"]

    create(cluster, namespace, {"apiVersion": "llmfleet.dev/v1alpha1", "kind": "AutoscalePolicy",
                                "metadata": {"name": "later"},
                                "spec": {"minReplicas": 1, "maxReplicas": 2, "metric": {"targetAverageValue": 4}}})
    wait_until("waits Ready once its policy exists", lambda: ready_reason("waits")[0] == "Ready", timeout=60)
    for name in ("toobig", "nocmd", "waits"):
        cluster.kubectl("delete", "llms", name, "-n", namespace, "--wait=true", "--timeout=60s")


def test_editing_engine_args_rolls_the_pods_without_a_failed_request(llmfleet_operator: E2ECluster,
                                                                    namespace: str, tiny_model: Path) -> None:
    """Given two replicas under steady load, when the engine args change, then every pod is replaced
    (surge one, drain one) and no request fails."""
    from operator_support import Load

    cluster = llmfleet_operator
    create(cluster, namespace, service_manifest("roll", tiny_model, replicas=2))
    wait_until("roll Ready 2/2", lambda: llms(cluster, namespace, "roll").get("status", {}).get("readyText") == "2/2"
               and llms(cluster, namespace, "roll")["status"]["phase"] == "Ready", timeout=120, interval=1)
    before = set(children(cluster, namespace, "roll")["pods"])
    load = Load(cluster, namespace, "roll", "roll", clients=4, max_tokens=32).start()
    try:
        time.sleep(2)
        cluster.kubectl("patch", "llms", "roll", "-n", namespace, "--type=merge", "-p",
                        '{"spec": {"engine": {"maxModelLen": 256, "maxNumSeqs": 4}}}')
        wait_until("a rollout to new pods, Ready again", lambda: (
            not before & set(children(cluster, namespace, "roll")["pods"])
            and llms(cluster, namespace, "roll")["status"].get("observedGeneration") == 2
            and llms(cluster, namespace, "roll")["status"]["phase"] == "Ready"
            and len(children(cluster, namespace, "roll")["pods"]) == 2), timeout=150, interval=1)
        time.sleep(2)
    finally:
        load.stop()
    print(f"\nrollout under load: {load.ok} requests, {len(load.failures)} failed")
    assert not load.failures, load.failures[:5]
    assert load.ok > 0
    dep = cluster.apps.read_namespaced_deployment("roll", namespace)
    assert "--max-num-seqs" in dep.spec.template.spec.containers[0].args
    cluster.kubectl("delete", "llms", "roll", "-n", namespace, "--wait=true", "--timeout=60s")
