"""The release workflow publishes what the chart and the operator name.

No registry is reachable from here, so the workflow itself never runs in this project's CI;
these checks keep it from drifting: the images it pushes are the ones the chart and the
operator's default pull, each from a Containerfile that exists, and its version gate (a
shell step) really refuses a tag that the chart or pyproject does not carry.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from llmfleet.operator.render.context import ENGINE_IMAGE_DEFAULT

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github/workflows/release.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


@pytest.fixture(scope="module")
def chart() -> dict:
    return yaml.safe_load((ROOT / "charts/llmfleet/Chart.yaml").read_text())


def image_job(workflow: dict) -> dict:
    return workflow["jobs"]["images"]


def pushed_images(workflow: dict, version: str) -> set[str]:
    job = image_job(workflow)
    build = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action"))
    template = build["with"]["tags"]
    return {
        template.replace("${{ matrix.component }}", c).replace("${{ needs.version.outputs.version }}", version)
        for c in job["strategy"]["matrix"]["component"]
    }


def test_pushes_the_images_the_chart_and_operator_name(workflow, chart):
    values = yaml.safe_load((ROOT / "charts/llmfleet/values.yaml").read_text())
    version = chart["appVersion"]
    named = {
        f"{values['image']['repository']}:{version}",
        f"{values['engineImage']['repository']}:{version}",
        ENGINE_IMAGE_DEFAULT,
    }
    assert pushed_images(workflow, version) == named


def test_every_image_is_built_from_a_containerfile_in_the_repository(workflow):
    job = image_job(workflow)
    build = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action"))
    for component in job["strategy"]["matrix"]["component"]:
        path = build["with"]["file"].replace("${{ matrix.component }}", component)
        assert (ROOT / path).is_file(), path


def test_only_a_version_tag_publishes(workflow):
    on = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads the key `on` as true
    assert on == {"push": {"tags": ["v*"]}}
    assert workflow["permissions"] == {"contents": "read"}  # packages: write only where it pushes
    for name in ("images", "chart"):
        assert workflow["jobs"][name]["permissions"]["packages"] == "write"


def run_version_gate(workflow: dict, tag: str, tmp_path: Path) -> subprocess.CompletedProcess:
    step = next(s for s in workflow["jobs"]["version"]["steps"] if s.get("id") == "v")
    out = tmp_path / "github_output"
    env = {**os.environ, "GITHUB_REF_NAME": tag, "GITHUB_OUTPUT": str(out)}
    return subprocess.run(["bash", "-e", "-c", step["run"]], cwd=ROOT, env=env, capture_output=True, text=True)


def test_version_gate_accepts_the_chart_version(workflow, chart, tmp_path):
    result = run_version_gate(workflow, f"v{chart['appVersion']}", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "github_output").read_text() == f"version={chart['appVersion']}\n"


def test_version_gate_refuses_a_tag_the_chart_does_not_carry(workflow, tmp_path):
    result = run_version_gate(workflow, "v9.9.9", tmp_path)
    assert result.returncode != 0
    assert "version mismatch" in result.stdout
    assert not (tmp_path / "github_output").exists()
