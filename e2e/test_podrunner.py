"""The bed itself: simulated GPU nodes, and the pod runner playing the kubelet.

These use only commands every host has (python3 -m http.server, sh), so they prove
the bed whatever state the engine is in.
"""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

from bedkit import E2ECluster, alive, pid_of, wait_until


def web_deployment(name: str, marker: Path, replicas: int = 2) -> dict:
    """A stdlib HTTP server standing in for the engine: binds the pod IP, probed, with a preStop."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "containers": [
                        {
                            "name": "web",
                            "image": "python:3.11",
                            "command": [sys.executable, "-m", "http.server", "8080", "--bind", "$(POD_IP)"],
                            "env": [
                                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                            ],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                            "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2},
                            "lifecycle": {
                                "preStop": {
                                    "exec": {"command": ["sh", "-c", f"echo $(HOSTNAME) >> {marker}"]}
                                }
                            },
                        }
                    ],
                },
            },
        },
    }


def test_nodes_look_like_a_gpu_cloud(cluster: E2ECluster) -> None:
    nodes = cluster.core.list_node().items
    gpu = [n for n in nodes if int(n.status.allocatable.get("nvidia.com/gpu", "0")) > 0]
    assert len(gpu) >= 3
    kinds = {n.metadata.labels["karpenter.sh/capacity-type"] for n in gpu}
    assert kinds == {"spot", "on-demand"}
    for n in gpu:
        assert n.metadata.labels["node.kubernetes.io/instance-type"]
        assert n.metadata.labels["topology.kubernetes.io/zone"]
        assert any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)


def test_deployment_is_served_probed_and_stopped_gracefully(
    cluster: E2ECluster, namespace: str, tmp_path: Path
) -> None:
    # Given a Deployment of two stand-in servers behind a Service
    marker = tmp_path / "prestop.txt"
    cluster.apps.create_namespaced_deployment(namespace, web_deployment("web", marker))
    cluster.core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
    )

    # Then both become Ready, each on its own loopback IP, with the env the runner promises
    wait_until(
        "2 ready replicas",
        lambda: (
            cluster.apps.read_namespaced_deployment(name="web", namespace=namespace).status.ready_replicas
            == 2
        ),
        timeout=60,
    )
    pods = cluster.core.list_namespaced_pod(namespace, label_selector="app=web").items
    ips = {p.status.pod_ip for p in pods}
    assert len(ips) == 2 and all(ip.startswith("127.") for ip in ips)
    for p in pods:
        assert p.status.phase == "Running"
        assert {c.type for c in p.status.conditions if c.status == "True"} >= {
            "PodScheduled",
            "Initialized",
            "ContainersReady",
            "Ready",
        }
        assert p.status.container_statuses[0].started and p.status.container_statuses[0].state.running

    # And the controller manager puts both pod IPs in the Service's EndpointSlice
    def slice_addresses() -> set[str]:
        slices = cluster.discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=web"
        ).items
        return {a for s in slices for e in s.endpoints or [] if e.conditions.ready for a in e.addresses}

    wait_until("the EndpointSlice to list both pods", lambda: slice_addresses() == ips, timeout=30)
    for ip in ips:
        with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as r:
            assert r.status == 200

    # When the Deployment is scaled to 0
    pids = [pid_of(p.status.container_statuses[0]) for p in pods]
    assert all(alive(pid) for pid in pids)
    cluster.apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 0}})

    # Then the preStop hooks ran, the processes are gone and the pods were deleted
    wait_until(
        "the pods to be deleted",
        lambda: not cluster.core.list_namespaced_pod(namespace, label_selector="app=web").items,
        timeout=60,
    )
    assert not any(alive(pid) for pid in pids)
    assert sorted(marker.read_text().split()) == sorted(p.metadata.name for p in pods)


def bare_pod(name: str, script: str, restart: str = "Always", grace: int = 30, **extra) -> dict:
    spec = {
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": grace,
        "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}],
    }
    spec.update(extra)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_env_from_the_downward_api_and_the_engine_host(
    cluster: E2ECluster, namespace: str, tmp_path: Path
) -> None:
    out = tmp_path / "env.txt"
    pod = bare_pod(
        "env",
        f'echo "$MY_NAME $MY_NS $MY_IP $LLMFLEET_ENGINE_HOST $OMP_NUM_THREADS $GREETING" > {out}; '
        "exec sleep 600",
        grace=2,
    )
    pod["spec"]["containers"][0]["env"] = [
        {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "GREETING", "value": "hi-$(MY_NAME)"},
    ]
    cluster.core.create_namespaced_pod(namespace, pod)
    wait_until("the env file", lambda: out.exists() and out.read_text().strip(), timeout=30)
    # The process may write before the runner's status report lands: wait for the IP too.
    ip = wait_until("the pod IP", lambda: cluster.core.read_namespaced_pod("env", namespace).status.pod_ip)
    assert out.read_text().split() == ["env", namespace, ip, ip, "1", "hi-env"]


def test_crashing_container_is_restarted_and_counted(cluster: E2ECluster, namespace: str) -> None:
    cluster.core.create_namespaced_pod(namespace, bare_pod("crash", "sleep 0.5; exit 3", grace=2))

    def restarted():
        st = cluster.core.read_namespaced_pod("crash", namespace).status.container_statuses
        return st and st[0].restart_count >= 1 and st[0].last_state.terminated

    wait_until("a restart", restarted, timeout=40)
    st = cluster.core.read_namespaced_pod("crash", namespace).status.container_statuses[0]
    assert st.last_state.terminated.exit_code == 3


def test_failing_init_container_fails_the_pod(cluster: E2ECluster, namespace: str) -> None:
    pod = bare_pod(
        "init",
        "echo never",
        restart="Never",
        initContainers=[{"name": "download", "image": "busybox", "command": ["sh", "-c", "exit 7"]}],
    )
    cluster.core.create_namespaced_pod(namespace, pod)
    wait_until(
        "phase Failed",
        lambda: cluster.core.read_namespaced_pod("init", namespace).status.phase == "Failed",
        timeout=30,
    )
    st = cluster.core.read_namespaced_pod("init", namespace).status
    assert st.init_container_statuses[0].state.terminated.exit_code == 7
    assert st.container_statuses[0].state.waiting  # the main container never ran
    assert "Init:Error" in cluster.kubectl("get", "pod", "init", "-n", namespace)


def test_sigterm_ignored_means_sigkill_after_the_grace(cluster: E2ECluster, namespace: str) -> None:
    cluster.core.create_namespaced_pod(
        namespace, bare_pod("stubborn", "trap '' TERM; while :; do sleep 0.2; done", grace=3)
    )
    wait_until(
        "running",
        lambda: cluster.core.read_namespaced_pod("stubborn", namespace).status.phase == "Running",
        timeout=30,
    )
    pid = pid_of(cluster.core.read_namespaced_pod("stubborn", namespace).status.container_statuses[0])
    t0 = time.monotonic()
    cluster.core.delete_namespaced_pod("stubborn", namespace)
    wait_until(
        "the pod to be gone",
        lambda: (
            not cluster.core.list_namespaced_pod(namespace, field_selector="metadata.name=stubborn").items
        ),
        timeout=30,
    )
    took = time.monotonic() - t0
    assert 2.5 < took < 15, took
    assert not alive(pid)


def test_failing_liveness_probe_restarts_the_container(cluster: E2ECluster, namespace: str) -> None:
    pod = bare_pod("unlive", "exec sleep 600", grace=2)
    pod["spec"]["containers"][0]["livenessProbe"] = {
        "tcpSocket": {"port": 9},
        "periodSeconds": 1,
        "failureThreshold": 2,
    }
    cluster.core.create_namespaced_pod(namespace, pod)
    wait_until(
        "a liveness restart",
        lambda: (
            cluster.core.read_namespaced_pod("unlive", namespace).status.container_statuses[0].restart_count
            >= 1
        ),
        timeout=40,
    )


def test_force_deleted_pod_has_its_process_stopped(cluster: E2ECluster, namespace: str) -> None:
    # A force delete (or the pod GC after a node is deleted) removes the object at once:
    # the runner still has to stop the process it ran.
    cluster.core.create_namespaced_pod(namespace, bare_pod("forced", "exec sleep 600", grace=30))
    pid = wait_until(
        "a process",
        lambda: pid_of(cluster.core.read_namespaced_pod("forced", namespace).status.container_statuses[0]),
        timeout=30,
    )
    cluster.core.delete_namespaced_pod("forced", namespace, grace_period_seconds=0)
    wait_until("the process to be stopped", lambda: not alive(pid), timeout=15)
