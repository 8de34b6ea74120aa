"""Smoke: the real engine, run by a plain Deployment, served through an EndpointSlice.

Given a Deployment of two llmfleet engines (the engine image on real nodes) on a tiny model
and a Service over them,
when they come up, then the controller manager lists both pod IPs in the Service's
EndpointSlice and each answers /ready and a completion; when the Deployment is
scaled to 0, then each engine is drained by its preStop hook (with the drain token from
a mounted Secret: /drain refuses everyone else), exits 0 on SIGTERM, and no process is left.
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.request
from pathlib import Path

from bedkit import E2ECluster, wait_until
from kubernetes import watch

sys.path.insert(0, str(Path(__file__).resolve().parent / "bed"))
import realnodes  # noqa: E402

ENGINE_IMAGE = realnodes.app_image_refs()[1]

TOKEN_DIR = "/var/run/secrets/llmfleet-drain"
DRAIN_SECRET = {"metadata": {"name": "tiny-drain-token"}, "stringData": {"token": "a-drain-token-for-the-smoke-test"}}


def engine_deployment(model: Path, engine: str, replicas: int = 2) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "tiny"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "tiny"}},
            "template": {
                "metadata": {"labels": {"app": "tiny"}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": [
                        {
                            "name": "engine",
                            "image": ENGINE_IMAGE,
                            "imagePullPolicy": "Never",
                            "command": [engine, "serve"],
                            "args": [
                                "--model",
                                str(model),
                                "--device",
                                "cpu",
                                "--max-model-len",
                                "256",
                                "--port",
                                "8000",
                                "--served-model-name",
                                "tiny",
                                "--threads",
                                "1",
                                "--drain-token-file",
                                f"{TOKEN_DIR}/token",
                            ],
                            "ports": [{"name": "http", "containerPort": 8000}],
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": "http"},
                                "periodSeconds": 1,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/health", "port": "http"},
                                "periodSeconds": 5,
                                "failureThreshold": 6,
                            },
                            # The contract's preStop: drain, wait out the grace, then SIGTERM comes.
                            "lifecycle": {
                                "preStop": {
                                    "exec": {
                                        "command": [engine, "drain", "--port", "8000", "--wait-seconds", "1",
                                                    "--token-file", f"{TOKEN_DIR}/token"]
                                    }
                                }
                            },
                            "volumeMounts": [{"name": "model", "mountPath": str(model), "readOnly": True},
                                             {"name": "drain-token", "mountPath": TOKEN_DIR, "readOnly": True}],
                        }
                    ],
                    "volumes": [{"name": "model", "hostPath": {"path": str(model), "type": "Directory"}},
                                {"name": "drain-token", "secret": {"secretName": "tiny-drain-token"}}],
                },
            },
        },
    }


def post_json(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200
        return json.loads(r.read())


def test_engine_deployment_serves_and_scales_to_zero(
    cluster: E2ECluster, namespace: str, tiny_model: Path
) -> None:
    cluster.core.create_namespaced_secret(namespace, DRAIN_SECRET)
    cluster.apps.create_namespaced_deployment(namespace, engine_deployment(tiny_model, cluster.engine_command()))
    cluster.core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "tiny"},
            "spec": {
                "selector": {"app": "tiny"},
                "ports": [{"name": "http", "port": 8000, "targetPort": "http"}],
            },
        },
    )

    wait_until(
        "2 ready engine replicas",
        lambda: cluster.apps.read_namespaced_deployment("tiny", namespace).status.ready_replicas == 2,
        timeout=240,
        interval=1,
    )
    pods = cluster.core.list_namespaced_pod(namespace, label_selector="app=tiny").items
    ips = {p.status.pod_ip for p in pods}
    assert len(ips) == 2

    def ready_addresses() -> set[str]:
        slices = cluster.discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=tiny"
        ).items
        return {a for s in slices for e in s.endpoints or [] if e.conditions.ready for a in e.addresses}

    wait_until("the EndpointSlice to list both engines", lambda: ready_addresses() == ips, timeout=30)
    for ip in sorted(ready_addresses()):
        with urllib.request.urlopen(f"http://{ip}:8000/ready", timeout=10) as r:
            assert r.status == 200
        out = post_json(
            f"http://{ip}:8000/v1/completions", {"model": "tiny", "prompt": "hello", "max_tokens": 4}
        )
        assert out["choices"] and out["usage"]["completion_tokens"] > 0

    # Watch the pods' last reports: the kubelet (or the runner) writes the exit codes before it deletes them.
    exit_codes: dict[str, int] = {}
    names = {p.metadata.name for p in pods}
    rv = cluster.core.list_namespaced_pod(namespace).metadata.resource_version

    def watch_exits() -> None:
        for event in watch.Watch().stream(
            cluster.core.list_namespaced_pod, namespace, resource_version=rv, timeout_seconds=90
        ):
            pod = event["object"]
            for st in pod.status.container_statuses or []:
                if st.state.terminated is not None:
                    exit_codes[pod.metadata.name] = st.state.terminated.exit_code
            if event["type"] == "DELETED":
                names.discard(pod.metadata.name)
                if not names:
                    return

    watcher = threading.Thread(target=watch_exits, daemon=True)
    watcher.start()
    containers = [p.status.container_statuses[0] for p in pods]
    assert all(cluster.container_running(c) for c in containers)
    cluster.apps.patch_namespaced_deployment_scale("tiny", namespace, {"spec": {"replicas": 0}})

    watcher.join(timeout=100)
    assert not names, f"pods not deleted: {names}"
    assert exit_codes == {p.metadata.name: 0 for p in pods}
    assert not any(cluster.container_running(c) for c in containers)
    for p in pods:  # the preStop reached the engine on its pod IP before SIGTERM
        assert "drain requested" in cluster.pod_log(namespace, p.metadata.name)
