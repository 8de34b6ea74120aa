"""The real-node tests' model; the bed with real nodes itself is e2e/conftest.py's `cluster`.

These tests need root, the node binaries (e2e/bed/build.sh), Debian's containerd/runc/CNI
plugins and the images (`make images`); `make e2e` runs them with every scenario.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bedkit import E2ECluster, readable_by_pods

BED = Path(__file__).resolve().parents[1] / "bed"


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
    for path in (cluster.dir, cluster.dir / "models"):
        path.chmod(path.stat().st_mode | 0o555)
    return readable_by_pods(out)
