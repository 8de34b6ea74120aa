"""A bed with real nodes (kubelet + containerd + runc, kube-proxy, CoreDNS) for these tests.

They need root, the node binaries (e2e/bed/build.sh), Debian's containerd/runc/CNI plugins
and the images (`make images`); `make e2e-real` runs them. The session reuses a running bed
with real nodes (say from `make cluster-up`) or starts one and stops it at the end. A bed
running in pod-runner mode in the same directory is an error, not silently reused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BED = Path(__file__).resolve().parents[1] / "bed"
sys.path.insert(0, str(BED))

import cluster as bed  # noqa: E402
import nodeimages  # noqa: E402
import realnodes  # noqa: E402
from bedkit import E2ECluster  # noqa: E402


@pytest.fixture(scope="session")
def cluster() -> Iterator[E2ECluster]:
    from kubernetes import client, config

    me = f"pytest-{os.getpid()}"
    state = bed.load_state()
    if bed.current() is not None and not (state or {}).get("real_nodes"):
        pytest.fail(
            f"the bed in {bed.STATE_DIR} runs kwok nodes and the pod runner; these tests need real "
            "nodes: stop it (`python3 e2e/bed/cluster.py down`) or set LLMFLEET_CLUSTER_DIR",
            pytrace=False,
        )
    problems = realnodes.preflight()
    if subprocess.run([str(BED / "build.sh"), "--check"]).returncode != 0:
        problems.append("the bed's binaries are not built: run `make e2e-binaries`")
    missing = [r for r in realnodes.app_image_refs() if nodeimages.image_id(r) is None]
    if missing:
        problems.append(f"images {', '.join(missing)} are not built: run `make images`")
    if problems:
        pytest.fail("real nodes cannot run here:\n  " + "\n  ".join(problems), pytrace=False)
    try:
        found = bed.up(owner=me, real_nodes=True)
    except bed.BedError as e:
        pytest.fail(f"the bed with real nodes did not come up: {e}", pytrace=False)
    os.environ["PATH"] = f"{bed.binaries()['helm'].parent}{os.pathsep}{os.environ.get('PATH', '')}"
    api = config.new_client_from_config(str(found.kubeconfig))
    try:
        yield E2ECluster(
            found.kubeconfig,
            found.server,
            api,
            client.CoreV1Api(api),
            client.AppsV1Api(api),
            client.DiscoveryV1Api(api),
            found.dir,
        )
    finally:
        api.close()
        bed.down(owner=me)


@pytest.fixture(scope="session")
def node_model(cluster: E2ECluster) -> Path:
    """A random-initialised Llama checkpoint where the engine's uid 10001 can read it (hostPath)."""
    out = cluster.dir / "models" / "tiny"
    if not (out / "config.json").exists():
        subprocess.run(
            [sys.executable, "-m", "tools.tinymodel", str(out)],
            check=True,
            timeout=300,
            capture_output=True,
            cwd=BED.parents[1],  # tools/ is a folder of the repository, not of the installed package
        )
    for path in [cluster.dir, cluster.dir / "models", *out.parent.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o555 if path.is_dir() else path.stat().st_mode | 0o444)
    return out
