"""`helm install` of the chart with the real images, on real nodes, serving a chat answer.

Given the bed with real nodes and the images from `make images`, when the chart is
installed with its defaults (ghcr.io/llmfleet/llmfleet-operator and -engine at the chart's
appVersion) and an LLMService is applied, then the operator (in its container, talking to
the API server through the kubernetes Service) creates engine pods from the engine image,
and a client reaches the model through the LLMService's Service.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bedkit import wait_until

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "e2e" / "bed"))
import realnodes  # noqa: E402

OPERATOR_IMAGE, ENGINE_IMAGE = realnodes.app_image_refs()
RELEASE = NS = "llmfleet-real"


def helm(cluster, *args: str, timeout: float = 300) -> str:
    from cluster import binaries

    out = subprocess.run(
        [str(binaries()["helm"]), f"--kubeconfig={cluster.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, f"helm {' '.join(args)} failed: {out.stderr}"
    return out.stdout


@pytest.fixture
def installed(cluster, node_model):
    # The chart admits no file:// model by default: allow the bed's model directory.
    helm(cluster, "upgrade", "--install", RELEASE, str(ROOT / "charts" / "llmfleet"), "--namespace", NS,
         "--create-namespace", "--set", "grafanaDashboard.enabled=false",
         "--set", f"admission.allowedHostPaths={{{node_model.parent}}}", "--wait", "--timeout", "240s")
    yield cluster
    cluster.kubectl("delete", "llms", "--all", "-A", "--wait=true", timeout=180)
    helm(cluster, "uninstall", RELEASE, "--namespace", NS, "--wait", "--timeout", "120s")


def test_chart_with_real_images_serves_a_chat_answer(installed, namespace, node_model):
    cluster = installed
    pods = cluster.core.list_namespaced_pod(NS, label_selector=f"app.kubernetes.io/instance={RELEASE}").items
    (op,) = [p for p in pods if p.spec.containers[0].name == "operator"]  # the router's pods aside
    assert op.spec.containers[0].image == OPERATOR_IMAGE
    assert op.status.container_statuses[0].container_id.startswith("containerd://")
    assert op.spec.node_name in {n.name for n in realnodes.REAL_NODES}
    whoami = cluster.kubectl("-n", NS, "exec", op.metadata.name, "--", "id", "-u").strip()
    assert whoami == "10001"  # the chart runs it as the image's own user
    touch = subprocess.run(
        ["kubectl", f"--kubeconfig={cluster.kubeconfig}", "-n", NS, "exec", op.metadata.name, "--",
         "touch", "/opt/llmfleet/x"], capture_output=True, text=True, timeout=60)
    assert "Read-only file system" in touch.stderr

    llms = {
        "apiVersion": "llmfleet.dev/v1alpha1",
        "kind": "LLMService",
        "metadata": {"name": "chat", "namespace": namespace},
        "spec": {
            "model": {"uri": f"file://{node_model}", "servedName": "chat"},
            "engine": {"kind": "embedded"},
            "replicas": 1,
            "resources": {"gpus": 0, "cpu": "500m", "memory": "2Gi"},
        },
    }
    subprocess.run(["kubectl", f"--kubeconfig={cluster.kubeconfig}", "apply", "-f", "-"],
                   input=json.dumps(llms), text=True, check=True, capture_output=True)

    def ready():
        out = cluster.kubectl("-n", namespace, "get", "llms", "chat", "-o", "json")
        return (json.loads(out).get("status") or {}).get("readyReplicas") == 1

    wait_until("the LLMService to have a ready replica", ready, timeout=420, interval=2)
    (engine,) = cluster.core.list_namespaced_pod(namespace, label_selector="llmfleet.dev/service=chat").items
    assert engine.spec.containers[0].image == ENGINE_IMAGE
    assert engine.status.container_statuses[0].container_id.startswith("containerd://")
    # the pod the operator made: the image's own non-root user, a read-only root filesystem
    assert cluster.kubectl("-n", namespace, "exec", engine.metadata.name, "--", "id", "-u").strip() == "10001"
    touch = subprocess.run(
        ["kubectl", f"--kubeconfig={cluster.kubeconfig}", "-n", namespace, "exec", engine.metadata.name, "--",
         "touch", "/opt/llmfleet/x"], capture_output=True, text=True, timeout=60)
    assert "Read-only file system" in touch.stderr

    svc = cluster.core.read_namespaced_service("chat", namespace)
    port = svc.spec.ports[0].port
    # From this machine through kube-proxy's rules to the ClusterIP (the pods-side path,
    # DNS included, is test_real_nodes.py's).
    import httpx

    r = httpx.post(
        f"http://{svc.spec.cluster_ip}:{port}/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert answer["usage"]["completion_tokens"] > 0
