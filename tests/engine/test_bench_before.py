"""`--before REV` runs that revision's engine: a child started with `child_env` imports it, not this checkout's."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import llmfleet.engine

from benchmarks.bench import child_env, git_tree

REPO = pathlib.Path(__file__).resolve().parents[2]
WHERE = "import llmfleet.engine.model_runner as m; print(m.__file__)"


def test_a_child_imports_the_other_revisions_engine(tmp_path):
    _sha, tree = git_tree("HEAD", tmp_path)
    out = subprocess.run([sys.executable, "-c", WHERE], capture_output=True, text=True, check=True,
                         **child_env(tree))
    assert pathlib.Path(out.stdout.strip()).is_relative_to(tree)


def test_a_child_for_this_checkout_imports_this_checkouts_engine():
    env = child_env(None)
    out = subprocess.run([sys.executable, "-c", WHERE], capture_output=True, text=True, check=True,
                         env=env["env"], cwd=REPO)
    assert pathlib.Path(out.stdout.strip()).parent == pathlib.Path(llmfleet.engine.__file__).parent
