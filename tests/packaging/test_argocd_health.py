"""The Argo CD health check for LLMService, run in a real Lua 5.1 runtime (lupa) as Argo CD runs it.

Argo CD (gopher-lua, Lua 5.1) sets the object as the global `obj`, runs the script as a
chunk and reads the returned table's `status` and `message`. The runtime here has the
same libraries Argo CD opens for health scripts and nothing more (no io, os, require).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lupa import lua51

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "manifests" / "argocd" / "health-llmservice.lua"
CM_SNIPPET = ROOT / "manifests" / "argocd" / "argocd-cm-health.yaml"
CASES = Path(__file__).parent / "testdata" / "health"

ARGO_HEALTH_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def to_lua(runtime, value):
    """JSON-shaped Python → Lua values, lists as 1-based arrays (as gopher-lua's JSON decoding does)."""
    if isinstance(value, dict):
        return runtime.table_from({k: to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([to_lua(runtime, v) for v in value])
    return value


def health(obj: dict) -> dict:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=False, register_eval=False, register_builtins=False)
    g = runtime.globals()
    for name in ("io", "os", "require", "dofile", "loadfile", "load", "loadstring", "package", "debug"):
        g[name] = None
    g.obj = to_lua(runtime, obj)
    result = runtime.execute(SCRIPT.read_text())
    assert lua51.lua_type(result) == "table", "the script must return a table"
    return {k: result[k] for k in ("status", "message")}


# One row per sample object: file → (expected status, words the message must contain).
ROWS = [
    ("ready.yaml", "Healthy", "2/2 replicas ready"),
    ("ready-scaling-limited.yaml", "Healthy", "4/4 replicas ready"),
    ("no-status.yaml", "Progressing", "Waiting for the operator to report status"),
    ("progressing-rollout.yaml", "Progressing", "Rolling out engine args: 1 of 2 pods updated"),
    ("stale-generation.yaml", "Progressing", "observe generation 5"),
    ("stale-ready-condition.yaml", "Progressing", "Waiting for the service to become Ready"),
    ("pending.yaml", "Progressing", "0/3 nodes have nvidia.com/gpu"),
    ("degraded.yaml", "Degraded", "2 of 3 engine pods crash-looping"),
    ("failed.yaml", "Degraded", "model directory /no/such/dir does not exist"),
    ("failed-degraded.yaml", "Degraded", "Secret team-a/chat-key not found"),
]


@pytest.mark.parametrize(("name", "status", "message"), ROWS, ids=[r[0] for r in ROWS])
def test_health_of_sample_objects(name, status, message):
    got = health(yaml.safe_load((CASES / name).read_text()))
    assert got["status"] == status, got
    assert message in got["message"], got


def test_every_sample_has_a_row():
    assert sorted(p.name for p in CASES.glob("*.yaml")) == sorted(r[0] for r in ROWS)


def test_status_is_one_argo_knows_and_message_a_string():
    for name, _, _ in ROWS:
        got = health(yaml.safe_load((CASES / name).read_text()))
        assert got["status"] in ARGO_HEALTH_STATUSES
        assert isinstance(got["message"], str) and got["message"]


def test_condition_without_message_falls_back_to_reason():
    obj = yaml.safe_load((CASES / "degraded.yaml").read_text())
    del obj["status"]["conditions"][1]["message"]
    assert health(obj) == {"status": "Degraded", "message": "CrashLoopBackOff"}


def test_ready_without_replica_counts_uses_the_condition():
    obj = yaml.safe_load((CASES / "ready.yaml").read_text())
    for key in ("replicas", "readyReplicas", "desiredReplicas"):
        del obj["status"][key]
    assert health(obj) == {"status": "Healthy", "message": "2/2 replicas ready"}


def test_argocd_cm_snippet_carries_the_same_script():
    cm = yaml.safe_load(CM_SNIPPET.read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"] == {
        "name": "argocd-cm",
        "namespace": "argocd",
        "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"},
    }
    assert cm["data"] == {"resource.customizations.health.llmfleet.dev_LLMService": SCRIPT.read_text()}
