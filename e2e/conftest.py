"""Hands every e2e test a real control plane (e2e/bed), one per pytest session.

The session reuses a healthy cluster that is already up (say from `make cluster-up`, or
another session's) and leaves it running; otherwise it starts one and tears it down
at the end, also when tests fail, unless another live session joined it meanwhile
(then that one owns it and tears it down). Binaries are built by `make e2e` / `make e2e-binaries`, not here (the
first build takes longer than a test may). Every test here is marked `e2e`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BED = ROOT / "e2e" / "bed"
sys.path.insert(0, str(BED))

import cluster as bed  # noqa: E402  (e2e/bed is not a package: it is run as scripts too)
from bedkit import E2ECluster, PodLogKeeper, readable_by_pods, wait_until  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def real_node_problems() -> list[str]:
    import nodeimages
    import realnodes

    problems = realnodes.preflight()
    missing = [r for r in realnodes.app_image_refs() if nodeimages.image_id(r) is None]
    if missing:
        problems.append(f"images {', '.join(missing)} are not built: run `make images`")
    return problems


@pytest.fixture(scope="session")
def cluster() -> Iterator[E2ECluster]:
    """The bed: the control plane and real nodes (kubelet, containerd, kube-proxy, CoreDNS)
    running the images from `make images`. A running bed without nodes is an error, never
    silently reused."""
    from kubernetes import client, config

    me = f"pytest-{os.getpid()}"
    running = bed.current() is not None
    if running and not (bed.load_state() or {}).get("real_nodes"):
        pytest.fail(
            f"the bed in {bed.STATE_DIR} runs without nodes (`up --no-nodes`), and the scenarios need "
            "real nodes: stop it (`python3 e2e/bed/cluster.py down`) or set LLMFLEET_CLUSTER_DIR",
            pytrace=False,
        )
    problems = real_node_problems()
    if not running and subprocess.run([str(BED / "build.sh"), "--check"]).returncode != 0:
        problems.append(
            "the bed's binaries are not built: run `make e2e-binaries` (e2e/bed/build.sh; "
            "about 13 min the first time), or `make e2e`, which builds them first"
        )
    if problems:
        pytest.fail("the bed cannot run here:\n  " + "\n  ".join(problems), pytrace=False)
    try:
        found = bed.up(owner=me)  # reuses (and joins) a healthy cluster, or starts one
    except bed.BedError as e:
        pytest.fail(f"the e2e bed did not come up: {e}", pytrace=False)
    # helm and kubectl for scenarios that shell out: the bed's go first on PATH.
    os.environ["PATH"] = bed.tools_path()
    api = config.new_client_from_config(str(found.kubeconfig))
    keeper = PodLogKeeper(found.dir).start()
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
        keeper.stop()
        api.close()
        bed.down(owner=me)  # stops it only if this session owns it and no live session still uses it


@pytest.fixture
def namespace(cluster: E2ECluster) -> Iterator[str]:
    """A fresh namespace per test, deleted (with whatever runs in it) afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    cluster.core.create_namespace({"metadata": {"name": name}})
    wait_until(
        f"the default ServiceAccount in {name}",
        lambda: cluster.core.read_namespaced_service_account("default", name),
        timeout=30,
    )
    yield name
    cluster.core.delete_namespace(name)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-initialised Llama checkpoint on this host (pods see it at the same path)."""
    out = tmp_path_factory.mktemp("models") / "tiny"
    subprocess.run(
        [sys.executable, "-m", "tools.tinymodel", str(out)],
        check=True,
        timeout=300,
        capture_output=True,
        cwd=ROOT,  # tools/ is a folder of the repository, not of the installed package
    )
    return readable_by_pods(out)


@pytest.fixture(scope="session")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random Llama checkpoint big enough (hidden 1024, 8 layers, ~300 MB, 4096 context) that one
    engine thread makes ~30-60 tokens/s: long streams last longer than a short spot notice."""
    out = tmp_path_factory.mktemp("models") / "slow"
    subprocess.run(
        [sys.executable, "-m", "tools.tinymodel", str(out), "--hidden-size", "1024", "--layers", "8",
         "--max-position", "4096"],
        check=True,
        timeout=300,
        capture_output=True,
        cwd=ROOT,  # tools/ is a folder of the repository, not of the installed package
    )
    return readable_by_pods(out)

