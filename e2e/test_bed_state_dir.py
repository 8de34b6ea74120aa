"""The bed's state directory: `down` empties it, so it must never be a checkout or the
working directory by accident (an empty LLMFLEET_CLUSTER_DIR once wiped a clone)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BED = Path(__file__).resolve().parent / "bed"
sys.path.insert(0, str(BED))

import cluster  # noqa: E402


def test_an_empty_cluster_dir_means_the_default(tmp_path):
    env = {**os.environ, "LLMFLEET_CLUSTER_DIR": ""}
    out = subprocess.run([sys.executable, "-c", "import cluster; print(cluster.STATE_DIR)"], cwd=tmp_path,
                         env={**env, "PYTHONPATH": str(BED)}, capture_output=True, text=True, check=True).stdout
    assert Path(out.strip()) == cluster.REPO / ".cluster"


def test_down_never_empties_a_checkout_or_the_repository(tmp_path):
    clone = tmp_path / "clone"
    (clone / ".git").mkdir(parents=True)
    assert not cluster.looks_like_bed_dir(clone)
    assert not cluster.looks_like_bed_dir(cluster.REPO)
    assert not cluster.looks_like_bed_dir(cluster.REPO.parent)
    assert cluster.looks_like_bed_dir(tmp_path / "bed-state")
    assert cluster.looks_like_bed_dir(cluster.REPO / ".cluster")
