"""`make demo`'s decisions (e2e/demo.py), checked without starting anything."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo  # noqa: E402
from bedkit import readable_by_pods  # noqa: E402


def test_no_bed_running_starts_one():
    assert demo.bed_plan(None, running=False) == "start"
    # a stale state of a killed bed: `up` cleans it and starts afresh
    assert demo.bed_plan({"real_nodes": {}}, running=False) == "start"


def test_a_running_bed_with_real_nodes_is_reused():
    assert demo.bed_plan({"owner": "cluster-up", "real_nodes": {"sysctls": {}}}, running=True) == "reuse"


def test_a_running_bed_without_nodes_is_refused_with_how_to_stop_it():
    with pytest.raises(demo.DemoError, match=r"without nodes .* make cluster-down"):
        demo.bed_plan({"owner": "cluster-up"}, running=True)


def test_the_model_goes_where_the_example_llmservice_looks():
    example = yaml.safe_load((demo.EXAMPLES / "llmservice.yaml").read_text())
    assert demo.example_model_path(example) == Path("/var/lib/llmfleet/models/smollm2-135m-instruct")
    example["spec"]["model"]["uri"] = "hf://HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(demo.DemoError, match="file:///"):
        demo.example_model_path(example)


def test_the_model_is_made_readable_by_another_user(tmp_path):
    model = tmp_path / "m"
    (model / "sub").mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"x")
    (model / "model.safetensors").chmod(0o600)
    model.chmod(0o700)
    readable_by_pods(model)
    assert (model / "model.safetensors").stat().st_mode & 0o004
    assert model.stat().st_mode & 0o005 == 0o005 and (model / "sub").stat().st_mode & 0o005 == 0o005
