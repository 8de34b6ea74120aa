"""The image build files agree with each other, the chart and the operator's defaults.

Building the images needs buildah (`make images`, see images/); these checks need nothing.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from llmfleet.operator.render.context import ENGINE_IMAGE_DEFAULT
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"


def load_requirements_module():
    spec = importlib.util.spec_from_file_location("image_requirements", IMAGES / "requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def app_version() -> str:
    return yaml.safe_load((ROOT / "charts/llmfleet/Chart.yaml").read_text())["appVersion"]


def names(reqs: list[str]) -> set[str]:
    return {Requirement(r).name.lower() for r in reqs}


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_operator_image_installs_no_torch(pyproject):
    reqs = load_requirements_module().requirements_for(pyproject, ["operator", "router"])
    assert "torch" not in names(reqs)
    assert {"kopf", "kubernetes", "pydantic"} <= names(reqs)
    assert {"uvicorn", "httpx", "prometheus-client"} <= names(reqs)  # llmfleet-router runs from it too


def test_engine_image_installs_torch_and_the_server(pyproject):
    reqs = load_requirements_module().requirements(pyproject, "engine")
    assert {"torch", "safetensors", "tokenizers", "uvicorn", "starlette"} <= names(reqs)


def test_unknown_extra_is_a_clear_error(pyproject):
    with pytest.raises(SystemExit, match="no extra 'gpu'"):
        load_requirements_module().requirements(pyproject, "gpu")


@pytest.mark.parametrize("component", ["operator", "engine"])
def test_containerfile_starts_from_the_base_the_bed_makes_and_runs_non_root(component):
    text = (IMAGES / f"{component}.Containerfile").read_text()
    base_tag = re.search(r"^TAG=(\S+)$", (IMAGES / "base-image.sh").read_text(), re.M).group(1)
    assert re.findall(r"^FROM (\S+) AS python$", text, re.M) == [base_tag]
    # A numeric user: the kubelet can only check runAsNonRoot against a uid.
    assert re.findall(r"^USER (\S+)$", text, re.M) == ["10001:10001"]
    assert re.search(rf'^ENTRYPOINT \["llmfleet-{component}"\]$', text, re.M)
    # Every package folder pyproject maps must be in the build (else the wheel fails).
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    top_folders = {d.split("/")[0] for d in package_dirs.values()}
    copied = set(re.findall(r"^COPY (\w+) /src/\1$", text, re.M))
    assert top_folders <= copied, top_folders - copied


def test_both_images_share_the_python_layer():
    def python_stage(component: str) -> str:
        text = (IMAGES / f"{component}.Containerfile").read_text()
        return text[text.index("AS python") : text.index("AS build")]

    assert python_stage("operator") == python_stage("engine")


def test_default_engine_image_is_the_engine_image_at_the_chart_version():
    assert ENGINE_IMAGE_DEFAULT == f"ghcr.io/llmfleet/llmfleet-engine:{app_version()}"


def test_engine_image_writes_only_where_the_operator_mounts_volumes():
    text = (IMAGES / "engine.Containerfile").read_text()
    golden = next(yaml.safe_load_all((ROOT / "tests/operator/golden/file-embedded.yaml").read_text()))
    container = golden["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    for var in ("HOME", "XDG_CACHE_HOME", "HF_HOME"):
        image_value = re.search(rf"\b{var}=(\S+)", text).group(1)
        assert image_value == env[var]
        assert any(image_value == m or image_value.startswith(m + "/") for m in mounts), var


def test_the_wheel_lists_every_package_folder(pyproject):
    """Subpackages are listed by hand in pyproject.toml; one left out is missing from the wheel and
    so from the images (the editable install used by the unit tests does not notice)."""
    setuptools = pyproject["tool"]["setuptools"]
    roots = {name: ROOT / folder for name, folder in setuptools["package-dir"].items()}
    found = set()
    for name, folder in roots.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            found.add(".".join((name, *rel)))
    assert sorted(found - set(setuptools["packages"])) == []
