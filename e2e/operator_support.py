"""Shared pieces of the operator scenarios: installing the chart, reading LLMService status, load.

The bed has no kube-proxy, so clients do what a load balancer does: read the Service's
EndpointSlices (ready endpoints only, refreshed twice a second) and spread requests over
the pod IPs they list. A draining engine turns not-ready first, so a client that follows
the endpoints never sends to a pod that refuses.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from bedkit import wait_until

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "llmfleet"
EXAMPLES = ROOT / "manifests" / "examples"


def example_model_uri() -> str:
    """The model manifests/examples/llmservice.yaml serves (`make demo` puts SmolLM2 there)."""
    import yaml

    return yaml.safe_load((EXAMPLES / "llmservice.yaml").read_text())["spec"]["model"]["uri"]


EXAMPLE_MODEL_URI = example_model_uri()
EXAMPLE_MODEL = Path(EXAMPLE_MODEL_URI.removeprefix("file://"))


def helm_binary() -> Path:
    """The bed's pinned helm, found or built as the packaging tests do (manifests/sync.py)."""
    sys.path.insert(0, str(ROOT / "tests" / "packaging"))
    import packaging_helpers  # noqa: PLC0415

    return Path(packaging_helpers.sync.helm_binary())


# A release of its own, so a `make demo` install on the same bed is left alone.
RELEASE = "llmfleet-e2e"
OPERATOR_NS = "llmfleet-e2e"
OPERATOR_SELECTOR = (f"app.kubernetes.io/name=llmfleet,app.kubernetes.io/instance={RELEASE},"
                     "app.kubernetes.io/component=operator")  # the chart's router pods share name and instance


def helm(cluster: Any, *args: str, timeout: float = 240) -> str:
    out = subprocess.run(
        [str(helm_binary()), f"--kubeconfig={cluster.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {out.stderr}")
    return out.stdout


def operator_pods(cluster: Any) -> list:
    return [
        p
        for p in cluster.core.list_namespaced_pod(OPERATOR_NS, label_selector=OPERATOR_SELECTOR).items
        if p.metadata.deletion_timestamp is None
    ]


def operator_ready(cluster: Any) -> bool:
    pods = operator_pods(cluster)
    return len(pods) == 1 and any(
        c.type == "Ready" and c.status == "True" for c in pods[0].status.conditions or []
    )


# The model directories the e2e LLMServices name by file:// (the chart allows none by default).
E2E_MODEL_DIR = "/var/lib/llmfleet/models"


def allowed_host_paths(*more: Any) -> list[str]:
    """`--set` arguments letting file:// URIs under the e2e model directories through."""
    return ["--set", "admission.allowedHostPaths={" + ",".join([E2E_MODEL_DIR, *map(str, more)]) + "}"]


@pytest.fixture(scope="module", name="llmfleet_operator")
def llmfleet_operator_fixture(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The chart installed once for this module (CRDs included), uninstalled afterwards."""
    helm(
        cluster,
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        "--namespace",
        OPERATOR_NS,
        "--create-namespace",
        # tiny_model and slow_model live under the session's basetemp; allowing its parent (every
        # session's) lets this operator finalize what an earlier, killed session left behind.
        *allowed_host_paths(tmp_path_factory.getbasetemp().parent),
        "--set",
        "grafanaDashboard.enabled=false",
        "--wait",
        "--timeout",
        "180s",
    )
    wait_until("the operator pod Ready", lambda: operator_ready(cluster), timeout=120, interval=1)
    yield cluster
    # LLMServices carry kopf's finalizer: the ones being deleted need the operator to go.
    wait_until("no LLMService left mid-deletion", lambda: not terminating_llms(cluster), timeout=90, interval=1)
    helm(cluster, "uninstall", RELEASE, "--namespace", OPERATOR_NS, "--wait", "--timeout", "120s")


def terminating_llms(cluster: Any) -> list[str]:
    """LLMServices being deleted, or about to be: a test's namespace is deleted without waiting, and
    the namespace controller marks its LLMServices only a moment later (after an uninstall, nothing
    would remove their finalizer)."""
    going = set(cluster.kubectl("get", "namespaces", "-o",
                                "jsonpath={range .items[?(@.metadata.deletionTimestamp)]}{.metadata.name} {end}"
                                ).split())
    out = cluster.kubectl("get", "llms", "-A", "-o", "jsonpath={range .items[*]}"
                          "{.metadata.namespace}/{.metadata.name}/{.metadata.deletionTimestamp} {end}")
    return [f"{ns}/{name}" for ns, name, deleted in (item.split("/", 2) for item in out.split())
            if deleted or ns in going]


def ensure_model(path: Path) -> Path:
    """A tiny random checkpoint at `path` unless one is there (a checkpoint `make demo` put there
    is kept; `make demo` in turn replaces a tiny one with its own model)."""
    if not (path / "config.json").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "tools.tinymodel", str(path)],
            check=True,
            timeout=300,
            capture_output=True,
            cwd=ROOT,  # tools/ is a folder of the repository, not of the installed package
        )
    return path


def llms(cluster: Any, namespace: str, name: str) -> dict:
    from kubernetes import client

    return client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        "llmfleet.dev", "v1alpha1", namespace, "llmservices", name
    )


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def ready_endpoints(cluster: Any, namespace: str, service: str) -> list[str]:
    slices = cluster.discovery.list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}"
    ).items
    return sorted({a for s in slices for e in s.endpoints or [] if e.conditions.ready for a in e.addresses})


def post_completion(ip: str, model: str, max_tokens: int = 8, timeout: float = 120) -> dict:
    conn = http.client.HTTPConnection(ip, 8000, timeout=timeout)
    try:
        conn.request(
            "POST",
            "/v1/completions",
            json.dumps({"model": model, "prompt": "hello", "max_tokens": max_tokens, "ignore_eos": True}),
            {"Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status} from {ip}: {body[:200]!r}")
        return json.loads(body)
    finally:
        conn.close()


@dataclass
class EndpointClients:
    """`clients` threads, each sending one request after another to the Service's ready
    endpoints in turn (refreshed twice a second, as a proxy would) until stop().
    Subclasses say what one request is (`one(ip)`) and count its outcome."""

    cluster: Any
    namespace: str
    service: str
    model: str
    clients: int = 1
    max_tokens: int = 16

    def __post_init__(self) -> None:
        self._endpoints: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self):  # noqa: ANN201 - returns the subclass
        self._endpoints = ready_endpoints(self.cluster, self.namespace, self.service)
        self._threads = [threading.Thread(target=self._refresh, daemon=True)]
        self._threads += [threading.Thread(target=self._client, args=(i,), daemon=True)
                          for i in range(self.clients)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=150)

    def _refresh(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self._endpoints = ready_endpoints(self.cluster, self.namespace, self.service)
            except Exception:  # noqa: BLE001 - keep the last known endpoints
                pass

    def _client(self, i: int) -> None:
        n = i
        while not self._stop.is_set():
            endpoints = self._endpoints
            if not endpoints:
                time.sleep(0.2)
                continue
            ip = endpoints[n % len(endpoints)]
            n += 1
            self.one(ip)

    def one(self, ip: str) -> None:
        raise NotImplementedError


@dataclass
class Load(EndpointClients):
    """Non-streaming completions; every failure is a finding."""

    clients: int = 12
    max_tokens: int = 200
    ok: int = 0
    failures: list[str] = field(default_factory=list)

    def one(self, ip: str) -> None:
        try:
            post_completion(ip, self.model, self.max_tokens)
        except Exception as e:  # noqa: BLE001 - every failure is a finding
            with self._lock:
                self.failures.append(f"{ip}: {e}")
        else:
            with self._lock:
                self.ok += 1


@dataclass
class Streams(EndpointClients):
    """Streaming completions (SSE); a stream without `data: [DONE]` is cut, a refused one failed."""

    clients: int = 2
    max_tokens: int = 120
    done: int = 0
    cut: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def one(self, ip: str) -> None:
        self.stream_once(ip)

    def stream_once(self, ip: str) -> None:
        conn = http.client.HTTPConnection(ip, 8000, timeout=120)
        got_done, chunks = False, 0
        try:
            conn.request("POST", "/v1/completions", json.dumps(
                {"model": self.model, "prompt": "hello", "max_tokens": self.max_tokens, "ignore_eos": True,
                 "stream": True}), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                with self._lock:
                    self.failed.append(f"{ip}: HTTP {resp.status}")
                return
            for line in resp:
                if line.startswith(b"data: [DONE]"):
                    got_done = True
                elif line.startswith(b"data: "):
                    chunks += 1
        except Exception as e:  # noqa: BLE001 - a broken connection mid-stream is a cut stream
            with self._lock:
                (self.cut if chunks else self.failed).append(f"{ip}: {e}")
            return
        finally:
            conn.close()
        with self._lock:
            if got_done:
                self.done += 1
            else:
                self.cut.append(f"{ip}: ended after {chunks} chunks without [DONE]")


def service_pods(cluster: Any, namespace: str, service: str = "chat") -> list:
    return cluster.core.list_namespaced_pod(namespace, label_selector=f"llmfleet.dev/service={service}").items


def pod_is_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def capacity_nodes(cluster: Any, capacity_type: str) -> list[str]:
    """The bed's nodes of one capacity type ("spot", "on-demand"), as Karpenter labels them."""
    nodes = cluster.core.list_node(label_selector=f"karpenter.sh/capacity-type={capacity_type}").items
    return sorted(n.metadata.name for n in nodes)


def create_spot_pool(cluster: Any, name: str, **spec: Any) -> None:
    """A SpotPool over the bed's spot and on-demand nodes (gpu-spot-1/2, gpu-ondemand-1)."""
    from kubernetes import client  # noqa: PLC0415

    client.CustomObjectsApi(cluster.api).create_cluster_custom_object("llmfleet.dev", "v1alpha1", "spotpools", {
        "apiVersion": "llmfleet.dev/v1alpha1", "kind": "SpotPool", "metadata": {"name": name},
        "spec": {"spot": {"nodeSelector": {"karpenter.sh/capacity-type": "spot"}},
                 "onDemand": {"nodeSelector": {"karpenter.sh/capacity-type": "on-demand"}}, **spec}})


def create_chat(cluster: Any, namespace: str, model: Path, *, max_model_len: int = 256, **spec: Any) -> None:
    """The LLMService "chat" the spot scenarios serve (4 sequences per engine, a 30 s drain timeout)."""
    from kubernetes import client  # noqa: PLC0415

    client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
        "llmfleet.dev", "v1alpha1", namespace, "llmservices", {
            "apiVersion": "llmfleet.dev/v1alpha1", "kind": "LLMService", "metadata": {"name": "chat"},
            "spec": {"model": {"uri": f"file://{model}"}, "engine": {"maxNumSeqs": 4, "maxModelLen": max_model_len},
                     "drainTimeoutSeconds": 30, **spec}})
