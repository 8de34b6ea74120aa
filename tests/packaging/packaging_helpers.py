"""Shared helpers for the packaging tests: the helm binary and rendered charts.

helm is the test bed's pinned build (manifests/sync.py finds it in the cache or builds
it from its Go module, ~1.5 min once per machine); these tests never skip for want of it.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llmfleet"


def _load_sync():
    spec = importlib.util.spec_from_file_location("llmfleet_manifests_sync", ROOT / "manifests" / "sync.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync = _load_sync()


@pytest.fixture(scope="session")
def helm() -> Path:
    """Import it into a test module to use it (a named module, not conftest.py: other test
    folders have their own conftest, and pytest imports every one as `conftest`)."""
    return sync.helm_binary()


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=300)


def render(helm: Path, *set_args: str, namespace: str = "llmfleet-system") -> list[dict]:
    """`helm template` of the chart with --set arguments → the parsed documents (all must parse)."""
    sets = [a for s in set_args for a in ("--set", s)]
    done = run_helm(helm, "template", "llmfleet", str(CHART), "--namespace", namespace, *sets)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d is not None]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]
