"""The project's images on real nodes: kubelet, containerd, runc, CNI, kube-proxy, CoreDNS.

Given the bed with real nodes (conftest.py), when pods run from the images `make images`
built, then they run as non-root on a read-only root filesystem, their logs and exec work,
a Service routes to them by ClusterIP and DNS name, and nothing leaves the machine.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest
from bedkit import E2ECluster, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bed"))
import hostnet  # noqa: E402
import realnodes  # noqa: E402

OPERATOR_IMAGE, ENGINE_IMAGE = realnodes.app_image_refs()
RESTRICTED = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def pod(name: str, image: str, command: list[str], **spec) -> dict:
    container = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Never",
        "command": command,
        "securityContext": RESTRICTED,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {}}] + spec.pop("volumes", []),
            "terminationGracePeriodSeconds": 5,
            **spec,
        },
    }


def running(cluster: E2ECluster, ns: str, name: str, timeout: float = 120) -> None:
    def check():
        p = cluster.core.read_namespaced_pod(name, ns)
        return p.status.phase == "Running" and all(c.ready for c in p.status.container_statuses or [])

    wait_until(f"pod {ns}/{name} to be Running and Ready", check, timeout=timeout)


def exec_in(cluster: E2ECluster, ns: str, name: str, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["kubectl", f"--kubeconfig={cluster.kubeconfig}", "-n", ns, "exec", name, "--", *cmd],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_pod_and_service_ranges_never_follow_the_default_route(cluster):
    gateway = hostnet.default_gateway()
    service_ip = cluster.core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    assert ipaddress.ip_address(service_ip) in ipaddress.ip_network(hostnet.SERVICE_CIDR)
    # A Service IP, a Service IP nothing uses, a pod IP on a node, one in a /24 no node has.
    for address in (service_ip, "10.96.255.254", "10.244.1.77", "10.244.200.9"):
        out = subprocess.run(["ip", "-4", "route", "get", address], capture_output=True, text=True)
        route = out.stdout + out.stderr
        assert "lfbed" in route or "No route to host" in route or "unreachable" in route, route
        assert gateway is None or f"via {gateway}" not in route, route


def test_real_nodes_are_gpu_nodes_labelled_as_a_cloud_labels_them(cluster):
    nodes = {n.metadata.name: n for n in cluster.core.list_node().items}
    capacity_types = set()
    for spec in realnodes.REAL_NODES:
        node = nodes[spec.name]
        assert node.status.node_info.container_runtime_version.startswith("containerd://")
        assert node.status.allocatable["nvidia.com/gpu"] == str(spec.gpus)
        for key, value in spec.labels().items():
            assert node.metadata.labels[key] == value
        capacity_types.add(node.metadata.labels["karpenter.sh/capacity-type"])
    assert capacity_types == {"spot", "on-demand"}


def test_operator_image_runs_non_root_on_a_read_only_root(cluster, namespace):
    cluster.core.create_namespaced_pod(namespace, pod("op", OPERATOR_IMAGE, ["sleep", "600"]))
    running(cluster, namespace, "op")
    assert exec_in(cluster, namespace, "op", "id", "-u").stdout.strip() == "10001"
    denied = exec_in(cluster, namespace, "op", "touch", "/opt/llmfleet/x")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    assert exec_in(cluster, namespace, "op", "touch", "/tmp/scratch").returncode == 0
    helped = exec_in(cluster, namespace, "op", "llmfleet-operator", "--help")
    assert helped.returncode == 0 and "usage: llmfleet-operator" in helped.stdout


def test_engine_help_works_without_any_network(cluster, namespace):
    spec = pod("help", ENGINE_IMAGE, ["llmfleet-engine", "--help"], restartPolicy="Never")
    spec["spec"]["hostNetwork"] = False
    cluster.core.create_namespaced_pod(namespace, spec)
    wait_until(
        "the --help pod to succeed",
        lambda: cluster.core.read_namespaced_pod("help", namespace).status.phase == "Succeeded",
        timeout=180,
    )
    assert "usage: llmfleet-engine" in cluster.kubectl("-n", namespace, "logs", "help")


def test_engine_serves_through_its_service_ip_and_dns_name(cluster, namespace, node_model):
    model = str(node_model)
    engine = pod(
        "engine",
        ENGINE_IMAGE,
        ["llmfleet-engine", "serve", "--model", model, "--port", "8000", "--served-model-name", "tiny"],
        container={
            "ports": [{"name": "http", "containerPort": 8000}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
            "env": [{"name": "XDG_CACHE_HOME", "value": "/var/cache/llmfleet"}],
            "volumeMounts": [
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "cache", "mountPath": "/var/cache/llmfleet"},
                {"name": "model", "mountPath": model, "readOnly": True},
            ],
        },
        volumes=[
            {"name": "cache", "emptyDir": {}},
            {"name": "model", "hostPath": {"path": model, "type": "Directory"}},
        ],
    )
    cluster.core.create_namespaced_pod(namespace, engine)
    cluster.core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "chat"},
            "spec": {"selector": {"app": "engine"}, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    )
    running(cluster, namespace, "engine", timeout=300)
    service_ip = cluster.core.read_namespaced_service("chat", namespace).spec.cluster_ip

    # The engine's own log, through the kubelet: JSON lines, one of them saying it is ready
    # (torch prints one plain warning at import: numpy is not in the image).
    text = cluster.kubectl("-n", namespace, "logs", "engine")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(lines) >= 2, text
    assert any(rec.get("message") == "ready" or rec.get("msg") == "ready" for rec in lines), lines[-5:]
    # The batch-1 CPU kernels are compiled in the pod, for its node's CPU, by the image's compiler,
    # into the cache volume (the root filesystem is read-only).
    loaded = next(rec for rec in lines if rec.get("message") == "model loaded")
    assert loaded.get("one_token_kernels") is True, [rec for rec in lines if rec.get("level") == "warning"]
    denied = exec_in(cluster, namespace, "engine", "touch", "/opt/llmfleet/x")
    assert "Read-only file system" in denied.stderr
    assert exec_in(cluster, namespace, "engine", "id", "-u").stdout.strip() == "10001"

    client = (
        "import json, socket, sys, urllib.request\n"
        "out = {}\n"
        "for name, url in (('ip', sys.argv[1]), ('dns', sys.argv[2])):\n"
        "    req = urllib.request.Request(url + '/v1/completions', method='POST',\n"
        "        data=json.dumps({'model': 'tiny', 'prompt': 'hello', 'max_tokens': 4}).encode(),\n"
        "        headers={'Content-Type': 'application/json'})\n"
        "    out[name] = json.load(urllib.request.urlopen(req, timeout=60))['usage']['completion_tokens']\n"
        "try:\n"
        "    socket.getaddrinfo('pypi.org', 443)\n"
        "    out['external_dns'] = 'resolved'\n"
        "except OSError as e:\n"
        "    out['external_dns'] = type(e).__name__\n"
        "s = socket.socket()\n"
        "s.settimeout(5)\n"
        "try:\n"
        "    s.connect((sys.argv[3], 80))\n"
        "    out['gateway'] = 'connected'\n"
        "except OSError as e:\n"
        "    out['gateway'] = e.errno\n"
        "print(json.dumps(out))\n"
    )
    gateway = hostnet.default_gateway() or "192.0.2.1"
    dns_url = f"http://chat.{namespace}.svc.cluster.local"
    spec = pod(
        "client",
        OPERATOR_IMAGE,
        ["python3", "-c", client, f"http://{service_ip}", dns_url, gateway],
        restartPolicy="Never",
    )
    cluster.core.create_namespaced_pod(namespace, spec)
    wait_until(
        "the client pod to finish",
        lambda: cluster.core.read_namespaced_pod("client", namespace).status.phase in ("Succeeded", "Failed"),
        timeout=180,
    )
    log = cluster.kubectl("-n", namespace, "logs", "client")
    result = json.loads(log.strip().splitlines()[-1])
    assert result["ip"] == 4 and result["dns"] == 4
    # CoreDNS forwards nothing, and a pod has no route off this machine (ENETUNREACH = 101).
    assert result["external_dns"] == "gaierror"
    assert result["gateway"] == 101


def test_a_missing_image_is_never_pulled_from_a_registry(cluster, namespace):
    spec = pod("pull", "docker.io/library/busybox:1.36", ["true"], restartPolicy="Never")
    spec["spec"]["containers"][0]["imagePullPolicy"] = "Always"
    cluster.core.create_namespaced_pod(namespace, spec)

    def pull_failed() -> str:
        events = cluster.core.list_namespaced_event(namespace, field_selector="involvedObject.name=pull").items
        return next((e.message for e in events if e.reason == "Failed" and "pull" in (e.message or "")), "")

    message = wait_until("the pull to fail", pull_failed, timeout=120)
    # containerd went to the dead proxy on loopback: no DNS query, no connection off the machine.
    assert realnodes.DEAD_PROXY.removeprefix("http://") in message, message


@pytest.fixture
def namespace(cluster: E2ECluster):
    import uuid

    name = f"real-{uuid.uuid4().hex[:6]}"
    cluster.core.create_namespace({"metadata": {"name": name}})
    wait_until(
        f"the default ServiceAccount in {name}",
        lambda: cluster.core.read_namespaced_service_account("default", name),
        timeout=30,
    )
    yield name
    cluster.core.delete_namespace(name)
