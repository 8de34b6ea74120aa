"""Keeps the packaged copies in step with their sources: `make chart-crds` runs `python3 manifests/sync.py`.

  source                              copy (checked in; tests/packaging fails when it drifts)
  crds/*.yaml (`make crds`)           charts/llmfleet/crds/, manifests/base/crds/ (+ its kustomization.yaml)
  charts/llmfleet (helm template)     manifests/base/operator.yaml, the kustomize base's operator

The chart is the one place the operator's Deployment and RBAC are written; the kustomize
base is rendered from it with helm, so the two cannot disagree. helm is the test bed's
(e2e/bed/versions.env pins the version): found in the cache, or built from its Go module.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "llmfleet"
BASE = ROOT / "manifests" / "base"
CRD_PREFIX = "llmfleet.dev_"  # crds/ files the API writes; the chart's kopf.dev_* file is its own

# What the base renders: the chart's defaults (one --standalone replica, all namespaces),
# released as "llmfleet" into llmfleet-system, without the optional monitoring objects.
BASE_NAMESPACE = "llmfleet-system"
# The drain key is named, not rendered: a key checked into the base would be everyone's key.
BASE_HELM_ARGS = ["--set", "grafanaDashboard.enabled=false", "--set", "operator.drainKeySecret=llmfleet-drain-key"]
BASE_HEADER = (
    "# Rendered from charts/llmfleet by `make chart-crds` (manifests/sync.py): do not edit by hand.\n"
    f"# helm template llmfleet charts/llmfleet --namespace {BASE_NAMESPACE} {' '.join(BASE_HELM_ARGS)}\n"
)
HELM_VERSION_DEFAULT = "v3.22.0"


def cache_dir() -> Path:
    return Path(os.environ.get("LLMFLEET_CACHE") or Path.home() / ".cache" / "llmfleet")


def helm_version() -> str:
    """The helm version the test bed pins (e2e/bed/versions.env), so both use one binary."""
    versions = ROOT / "e2e" / "bed" / "versions.env"
    if versions.exists():
        for line in versions.read_text().splitlines():
            if line.startswith("HELM_VERSION="):
                return line.split("=", 1)[1].strip().strip('"')
    return HELM_VERSION_DEFAULT


def helm_binary() -> Path:
    """$LLMFLEET_HELM, else the cached build, else build it now (about 1.5 min on 2 cores, once per machine).

    Same layout and flags as e2e/bed/build.sh ($CACHE/bin/helm-<version>/helm): whichever
    runs first builds it and the other reuses it. The binary is moved in only when complete.
    """
    if os.environ.get("LLMFLEET_HELM"):
        return Path(os.environ["LLMFLEET_HELM"])
    version = helm_version()
    target = cache_dir() / "bin" / f"helm-{version}" / "helm"
    if os.access(target, os.X_OK):
        return target
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None
    )
    if go is None:
        raise RuntimeError(f"helm is not built at {target} and no Go toolchain is on PATH to build it")
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CGO_ENABLED="0", GOTOOLCHAIN="local", GOFLAGS="-buildvcs=false")
    with tempfile.TemporaryDirectory(dir=target.parent.parent, prefix=".tmp-helm.") as tmp:
        print(f"building helm {version} into {target} (once per machine)", file=sys.stderr)
        subprocess.run(
            [
                go,
                "install",
                "-p",
                os.environ.get("LLMFLEET_BUILD_JOBS", "2"),
                "-trimpath",
                "-ldflags",
                "-s -w",
                f"helm.sh/helm/v3/cmd/helm@{version}",
            ],
            env=dict(env, GOBIN=tmp),
            check=True,
            timeout=3600,
        )
        target.parent.mkdir(exist_ok=True)
        os.replace(Path(tmp) / "helm", target)
    return target


def helm(*args: str) -> str:
    done = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def source_crds() -> dict[str, str]:
    """File name → content of the API's generated CRDs."""
    return {p.name: p.read_text() for p in sorted((ROOT / "crds").glob("*.yaml"))}


def base_crds_kustomization(names: list[str]) -> str:
    lines = [
        "# Written by manifests/sync.py: the CRDs copied from crds/.",
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        "resources:",
    ]
    if not names:  # before `make crds` has run: still a valid (empty) kustomization
        return "\n".join(lines[:-1] + ["resources: []"]) + "\n"
    return "\n".join(lines + [f"  - {n}" for n in names]) + "\n"


def render_base_operator() -> str:
    out = helm("template", "llmfleet", str(CHART), "--namespace", BASE_NAMESPACE, *BASE_HELM_ARGS)
    return BASE_HEADER + out


def expected_files(with_base: bool = True) -> dict[Path, str]:
    """Every copy this script owns → the content it must have."""
    crds = source_crds()
    files: dict[Path, str] = {}
    for name, text in crds.items():
        files[CHART / "crds" / name] = text
        files[BASE / "crds" / name] = text
    files[BASE / "crds" / "kustomization.yaml"] = base_crds_kustomization(list(crds))
    if with_base:
        files[BASE / "operator.yaml"] = render_base_operator()
    return files


def stale_files() -> list[Path]:
    """Copies of CRDs that crds/ no longer has."""
    keep = set(source_crds())
    return [
        p
        for d in (CHART / "crds", BASE / "crds")
        for p in sorted(d.glob(CRD_PREFIX + "*.yaml"))
        if p.name not in keep
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--crds-only", action="store_true", help="copy the CRDs, skip rendering the base (no helm)"
    )
    args = parser.parse_args(argv)
    for path in stale_files():
        path.unlink()
        print(f"removed {path.relative_to(ROOT)}", file=sys.stderr)
    for path, text in expected_files(with_base=not args.crds_only).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
