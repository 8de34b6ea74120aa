"""Helpers for the packaging tests: the helm, kubectl and promtool binaries, rendered charts.

helm is the test bed's pinned build (manifests/sync.py finds it in the cache or builds
it from its Go module, ~1.5 min once per machine); kubectl and promtool are the machine's
(Debian's `prometheus` package for promtool) or built (kubectl by the test bed's
`e2e/bed/build.sh kubectl`, promtool here; a few minutes each, once per machine). These tests
never skip for want of any of them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llmfleet"


def _load_sync():
    spec = importlib.util.spec_from_file_location("llmfleet_manifests_sync", ROOT / "manifests" / "sync.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync = _load_sync()


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


def kubectl_binary() -> Path:
    """kubectl on PATH, else the test bed's build of the pinned Kubernetes (built now if missing)."""
    found = shutil.which("kubectl")
    if found:
        return Path(found)
    done = subprocess.run(["bash", str(ROOT / "e2e" / "bed" / "build.sh"), "kubectl"],
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"no kubectl on PATH, and e2e/bed/build.sh kubectl failed: {done.stderr[-2000:]}")
    return Path(done.stdout.split()[-1])


# promtool from Prometheus 2.55.1 (Go module versions are v0.<minor>.<patch>): recent enough
# for every function the rules use, old enough that all its dependencies are on the proxy.
PROMTOOL_MODULE = "github.com/prometheus/prometheus"
PROMTOOL_VERSION = "v0.55.1"


def promtool_binary() -> Path:
    """promtool on PATH, else the cached build, else build it (same cache layout as helm).

    Prometheus's go.mod has replace directives, so `go install pkg@version` refuses it; as the
    bed does for Kubernetes, a small wrapper module copies them and builds the command.
    """
    found = shutil.which("promtool")
    if found:
        return Path(found)
    cache = sync.cache_dir()
    target = cache / "bin" / f"promtool-{PROMTOOL_VERSION}" / "promtool"
    if os.access(target, os.X_OK):
        return target
    go = shutil.which("go") or "/usr/local/go/bin/go"
    env = dict(os.environ, CGO_ENABLED="0", GOTOOLCHAIN="local", GOFLAGS="-buildvcs=false")
    src = cache / "src" / f"promtool-{PROMTOOL_VERSION}"
    src.mkdir(parents=True, exist_ok=True)
    info = subprocess.run(
        [go, "mod", "download", "-json", f"{PROMTOOL_MODULE}@{PROMTOOL_VERSION}"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    upstream = Path(json.loads(info.stdout)["GoMod"]).read_text()
    replaces = re.findall(r"^replace \((.*?)^\)", upstream, flags=re.S | re.M)
    (src / "go.mod").write_text(
        f"module llmfleet.local/tests/promtool\n\ngo 1.22.0\n\nrequire {PROMTOOL_MODULE} {PROMTOOL_VERSION}\n"
        + "".join(f"\nreplace ({block})\n" for block in replaces)
    )
    package = f"{PROMTOOL_MODULE}/cmd/promtool"
    subprocess.run(
        [go, "get", f"{package}@{PROMTOOL_VERSION}"],
        cwd=src,
        env=env,
        check=True,
        timeout=1800,
        capture_output=True,
    )
    (cache / "bin").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache / "bin", prefix=".tmp-promtool.") as tmp:
        subprocess.run(
            [
                go,
                "build",
                "-p",
                os.environ.get("LLMFLEET_BUILD_JOBS", "2"),
                "-trimpath",
                "-ldflags",
                "-s -w",
                "-o",
                f"{tmp}/promtool",
                package,
            ],
            cwd=src,
            env=env,
            check=True,
            timeout=3600,
        )
        target.parent.mkdir(exist_ok=True)
        os.replace(Path(tmp) / "promtool", target)
    return target
