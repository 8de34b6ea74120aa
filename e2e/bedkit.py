"""What e2e scenarios share: the cluster handle, polling, and process checks.

Kept apart from conftest.py so test modules import it by a name no other
conftest.py in the repository can shadow.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
        out = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
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


def pid_of(container_status: Any) -> int:
    """The host pid of a container the pod runner started (its containerID names it)."""
    return int(container_status.container_id.rsplit("/", 1)[1])


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
