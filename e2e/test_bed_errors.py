"""Bad input to the bed gives a clear message or is recovered from, never a hang."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import cluster as bed
import pytest

BED = Path(__file__).resolve().parent / "bed"


def test_a_taken_port_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        monkeypatch.setenv("LLMFLEET_APISERVER_PORT", str(port))
        with pytest.raises(bed.BedError, match=f"port {port} .*LLMFLEET_APISERVER_PORT.* in use"):
            bed.choose_port("LLMFLEET_APISERVER_PORT", set())


def test_a_missing_go_toolchain_is_said_plainly(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LLMFLEET_GOROOT": str(tmp_path / "no-go"),
        "LLMFLEET_CACHE": str(tmp_path / "cache"),
    }
    out = subprocess.run(["bash", str(BED / "build.sh")], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "no Go toolchain found" in out.stderr


def test_kubectl_is_built_with_the_bed_and_alone_on_demand(tmp_path: Path) -> None:
    # A fresh machine has no kubectl, and the scenarios and packaging tests shell out to it:
    # the bed builds it with the rest (build.sh --check counts it) and `build.sh kubectl` alone.
    import hashlib

    import realnodes

    cache = tmp_path / "cache"
    pause = hashlib.sha256((BED / "pause" / "main.go").read_bytes()).hexdigest()[:12]
    built = [*bed.binaries().values(), *(realnodes.node_binaries()[n] for n in ("kubelet", "kube-proxy", "coredns")),
             bed.CACHE / "bin" / f"pause-{pause}" / "pause"]
    for path in built:  # stand-ins for everything built, so nothing is compiled here
        stub = cache / path.relative_to(bed.CACHE)
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    kubectl = cache / bed.binaries()["kubectl"].relative_to(bed.CACHE)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LLMFLEET_CACHE": str(cache),
           "LLMFLEET_GOROOT": str(tmp_path / "no-go")}

    def build(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(BED / "build.sh"), *args], env=env, capture_output=True, text=True,
                              timeout=30)

    assert build("--check").returncode == 0
    assert build("kubectl").stdout.split() == [str(kubectl)]  # cached: printed, nothing built
    kubectl.unlink()
    assert build("--check").returncode == 1
    alone = build("kubectl")  # it would build it now: here it finds no Go toolchain
    assert alone.returncode == 2 and "no Go toolchain found" in alone.stderr


def test_kwok_is_built_only_when_asked_for(tmp_path: Path) -> None:
    # kwok serves only the scale bench: the bed is complete without it, and `build.sh kwok`
    # builds it alone; a bed asked for kwok nodes without it says how to get it.
    import hashlib

    import realnodes

    cache = tmp_path / "cache"
    pause = hashlib.sha256((BED / "pause" / "main.go").read_bytes()).hexdigest()[:12]
    built = [p for n, p in bed.binaries().items() if n != "kwok"]
    built += [*(realnodes.node_binaries()[n] for n in ("kubelet", "kube-proxy", "coredns")),
              bed.CACHE / "bin" / f"pause-{pause}" / "pause"]
    for path in built:
        stub = cache / path.relative_to(bed.CACHE)
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LLMFLEET_CACHE": str(cache),
           "LLMFLEET_GOROOT": str(tmp_path / "no-go")}

    def build(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(BED / "build.sh"), *args], env=env, capture_output=True, text=True,
                              timeout=30)

    assert build("--check").returncode == 0  # no kwok, nothing missing
    assert build().returncode == 0
    alone = build("kwok")  # missing: it would build it now, and finds no Go toolchain here
    assert alone.returncode == 2 and "no Go toolchain found" in alone.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import cluster\ntry:\n    cluster.up(kwok_nodes=2)\nexcept cluster.BedError as e:\n"
         "    print(e)"], cwd=BED, env={**os.environ, "LLMFLEET_CACHE": str(cache),
                                       "LLMFLEET_CLUSTER_DIR": str(tmp_path / "bed")},
        capture_output=True, text=True, timeout=60)
    assert "run `e2e/bed/build.sh kwok`" in probe.stdout, probe.stderr


def test_a_stale_cluster_dir_from_a_killed_run_is_recovered(tmp_path: Path) -> None:
    # Given a control plane in its own directory (no nodes: real nodes are one bed per machine,
    # and the session's bed has them) whose processes were all SIGKILLed
    env = {**os.environ, "LLMFLEET_CLUSTER_DIR": str(tmp_path / "c")}
    run = [sys.executable, str(BED / "cluster.py")]
    subprocess.run(run + ["up", "--no-nodes"], env=env, check=True, timeout=180, capture_output=True)
    try:
        state = json.loads((tmp_path / "c" / "state.json").read_text())
        for p in state["processes"].values():
            os.kill(p["pid"], signal.SIGKILL)
        # When it is brought up again, then it says so, cleans up and comes up healthy
        again = subprocess.run(run + ["up", "--no-nodes"], env=env, timeout=180, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        assert "stale" in again.stderr
        assert subprocess.run(run + ["status"], env=env, timeout=30).returncode == 0
    finally:
        subprocess.run(run + ["down"], env=env, timeout=120)
    assert not (tmp_path / "c" / "state.json").exists()
