"""Hands every e2e test a real control plane (e2e/bed), one per pytest session.

The session reuses a healthy cluster that is already up (say from `make cluster-up`)
and leaves it running; otherwise it builds what is missing, starts one, and tears it
down at the end, also when tests fail. Every test here is marked `e2e`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BED = Path(__file__).resolve().parent / "bed"
sys.path.insert(0, str(BED))

import cluster as bed  # noqa: E402  (e2e/bed is not a package: it is run as scripts too)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@dataclass
class E2ECluster:
    """The running cluster: its kubeconfig and ready-made API clients."""

    kubeconfig: Path
    server: str
    api: Any  # kubernetes.client.ApiClient
    core: Any  # CoreV1Api
    apps: Any  # AppsV1Api
    discovery: Any  # DiscoveryV1Api
    dir: Path

    def pod_log(self, namespace: str, name: str) -> str:
        """What a pod's processes printed (the runner's stand-in for `kubectl logs`)."""
        path = self.dir / "pods" / f"{namespace}_{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kubectl(self, *args: str, timeout: float = 60) -> str:
        out = subprocess.run(["kubectl", f"--kubeconfig={self.kubeconfig}", *args], capture_output=True,
                             text=True, timeout=timeout)
        if out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {out.stderr}")
        return out.stdout


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60, interval: float = 0.5) -> Any:
    """Poll check() until it returns something truthy; fail with what was awaited and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as e:  # noqa: BLE001 - keep polling; report the last error
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="session")
def cluster() -> Iterator[E2ECluster]:
    from kubernetes import client, config

    found = bed.current()
    started = False
    if found is None:
        if subprocess.run([str(BED / "build.sh"), "--check"]).returncode != 0:
            subprocess.run([str(BED / "build.sh")], check=True, timeout=3600)
        try:
            found = bed.up(owner=f"pytest-{os.getpid()}")
        except bed.BedError as e:
            pytest.fail(f"the e2e control plane did not come up: {e}", pytrace=False)
        started = True
    api = config.new_client_from_config(str(found.kubeconfig))
    try:
        yield E2ECluster(found.kubeconfig, found.server, api, client.CoreV1Api(api), client.AppsV1Api(api),
                         client.DiscoveryV1Api(api), found.dir)
    finally:
        api.close()
        if started:
            bed.down(owner=f"pytest-{os.getpid()}")


@pytest.fixture
def namespace(cluster: E2ECluster) -> Iterator[str]:
    """A fresh namespace per test, deleted (with whatever runs in it) afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    cluster.core.create_namespace({"metadata": {"name": name}})
    wait_until(f"the default ServiceAccount in {name}",
               lambda: cluster.core.read_namespaced_service_account("default", name), timeout=30)
    yield name
    cluster.core.delete_namespace(name)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-initialised Llama checkpoint on this host (pods see it at the same path)."""
    out = tmp_path_factory.mktemp("models") / "tiny"
    subprocess.run([sys.executable, "-m", "llmfleet.engine.tinymodel", str(out)], check=True, timeout=300,
                   capture_output=True)
    return out
