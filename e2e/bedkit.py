"""What e2e scenarios share: the cluster handle, polling, and process checks.

Kept apart from conftest.py so test modules import it by a name no other
conftest.py in the repository can shadow.
"""

from __future__ import annotations

import os
import subprocess
import threading
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
        """What a pod's containers printed, also after the pod is gone: the kubelet's log files
        as PodLogKeeper kept them (CRI prefixes stripped)."""
        return kept_pod_log(self.dir, namespace, name)

    def engine_command(self) -> str:
        """How a pod's command names the engine: the engine image's entry point."""
        return "llmfleet-engine"

    def container_running(self, status: Any) -> bool:
        """Whether a container's process still runs: its containerd task on any node."""
        import realnodes  # e2e/bed, on sys.path via conftest.py

        cid = status.container_id.removeprefix("containerd://")
        return any(
            cid in realnodes.ctr(self.dir, node, "tasks", "ls", "-q", timeout=30).stdout.split()
            for node in realnodes.REAL_NODES
        )

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


def readable_by_pods(model: Path) -> Path:
    """Let any user read a model a pod mounts by hostPath: engine pods run as uid 10001 (the
    images' user), and the mount shows the directory itself, so the folders above it on this
    host are never traversed from the pod."""
    for path in [model, *model.rglob("*")]:
        path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))
    return model


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


class PodLogKeeper:
    """Keeps every container log the real nodes' kubelets write, past the pod's deletion.

    The kubelet removes a pod's log directory once the pod is gone, but tests read what a
    drained engine printed after it went. Each new log file is hard-linked under
    <bed>/pods/<ns>_<pod>/<uid>/<container>/ as soon as it appears (checked 5 times a
    second; a container's file exists from its start), so it keeps growing while the
    container runs and outlives the kubelet's delete.
    """

    def __init__(self, state_dir: Path, interval: float = 0.2) -> None:
        self.state_dir = state_dir
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod-log-keeper", daemon=True)

    def start(self) -> PodLogKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def scan(self) -> None:
        kept = self.state_dir / "pods"
        for log in self.state_dir.glob("nodes/*/pod-logs/*/*/*.log"):
            pod_dir, container = log.parent.parent.name, log.parent.name
            parts = pod_dir.split("_")
            if len(parts) != 3:
                continue
            namespace, pod, uid = parts
            target = kept / f"{namespace}_{pod}" / uid / container / log.name
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(log, target)
            except (FileNotFoundError, FileExistsError):
                pass  # gone before we saw it, or linked by a second session

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.scan()
            except OSError:
                pass  # a directory the kubelet removed mid-scan: the next pass sees the rest


def kept_pod_log(state_dir: Path, namespace: str, name: str) -> str:
    """A pod's kept container logs (CRI format: `<time> <stream> <P|F> <text>`) as plain text,
    container by container, restarts in order."""
    files = sorted((state_dir / "pods" / f"{namespace}_{name}").glob("*/*/*.log"),
                   key=lambda f: (f.parent.name, int(f.stem) if f.stem.isdigit() else 0))
    out = []
    for f in files:
        for line in f.read_text(errors="replace").splitlines():
            parts = line.split(" ", 3)
            if len(parts) == 4 and parts[1] in ("stdout", "stderr"):
                out.append(parts[3] if parts[2] == "F" else parts[3] + "\x00")
            else:
                out.append(line)
    # A P(artial) line continues on the next one.
    return "\n".join(out).replace("\x00\n", "") + ("\n" if out else "")
