"""LLMService model: what it accepts, what it refuses (mirroring the CRD's rules), its defaults."""

from __future__ import annotations

import pytest
import yaml
from llmfleet.operator.api.llmservice import LLMService, LLMServiceSpec
from llmfleet.operator.api.llmservice_status import LLMServiceStatus
from pydantic import ValidationError

DESIGN_EXAMPLE = """
apiVersion: llmfleet.dev/v1alpha1
kind: LLMService
metadata: {name: chat, namespace: team-a}
spec:
  model: {uri: "hf://Qwen/Qwen2.5-0.5B-Instruct", servedName: chat}
  engine: {kind: embedded}
  autoscalePolicyRef: {name: chat-policy}
  spotPoolRef: {name: gpu-spot}
status:
  phase: Ready
  replicas: 2
  readyReplicas: 2
  conditions: [{type: Ready, status: "True", reason: AllReplicasReady, observedGeneration: 1}]
"""


def spec(**fields) -> dict:
    return {"model": {"uri": "file:///models/tiny"}, **fields}


def test_design_example_round_trips():
    obj = LLMService.model_validate(yaml.safe_load(DESIGN_EXAMPLE))
    assert obj.spec.autoscale_policy_ref.name == "chat-policy"
    assert obj.status.conditions[0].status == "True"
    wire = obj.to_wire()
    assert wire["spec"]["model"] == {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct", "servedName": "chat"}
    assert wire["status"]["readyReplicas"] == 2


@pytest.mark.parametrize(
    "uri, ok",
    [
        ("file:///models/tiny", True),
        ("file:///", False),  # the node's root, mounted over the pod's
        ("file:///tmp", False),  # the pod's /tmp mountPath twice
        ("file:///tmp/models", True),  # mounted on top of the pod's /tmp
        ("file:///var/lib/llmfleet/models", True),
        ("pvc://models/llama/3b", True),
        ("pvc://models", True),
        ("hf://Qwen/Qwen2.5-0.5B-Instruct", True),
        ("hf://meta-llama/Llama-3.2-1B", True),
        ("file://relative/path", False),  # file URIs are absolute: three slashes
        ("/models/tiny", False),  # a bare path: say file:// so the volume is explicit
        ("pvc://Bad_Claim/x", False),  # claim names are DNS labels
        ("hf://Qwen", False),  # org/name
        ("hf://Qwen/a/b", False),
        ("s3://bucket/model", False),
        ("", False),
    ],
)
def test_model_uri_pattern(uri, ok):
    if ok:
        LLMServiceSpec.model_validate(spec(model={"uri": uri}))
    else:
        with pytest.raises(ValidationError):
            LLMServiceSpec.model_validate(spec(model={"uri": uri}))


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"replicas": 2, "autoscalePolicyRef": {"name": "p"}}, "mutually exclusive"),
        ({"model": {"uri": "file:///m", "revision": "main"}}, "revision applies only to hf://"),
        ({"model": {"uri": "pvc://c/m", "tokenSecretRef": {"name": "s", "key": "k"}}}, "tokenSecretRef applies only"),
        ({"engine": {"kind": "vllm", "device": "cpu"}}, "device applies only to engine kind embedded"),
        ({"engine": {"kind": "tgi"}}, "embedded"),
        ({"replicas": -1}, "greater than or equal to 0"),
        ({"drainTimeoutSeconds": 4000}, "less than or equal to 3600"),
        ({"engine": {"maxNumSeqs": 0}}, "greater than or equal to 1"),
        ({"resources": {"memory": "lots"}}, "not a Kubernetes quantity"),
        ({"apiKeySecretRef": {"name": "s"}}, "key"),
        ({"engine": {"extraArgs": ["x" * 300]}}, "at most 256"),
    ],
)
def test_invalid_specs_name_the_field(fields, message):
    with pytest.raises(ValidationError, match=message):
        LLMServiceSpec.model_validate(spec(**fields))


def test_defaults():
    s = LLMServiceSpec.model_validate(spec())
    assert s.engine.kind == "embedded"
    assert s.resources.gpus == 0
    assert s.replicas is None and s.fixed_replicas() == 1
    assert s.drain_timeout_seconds == 120 and s.drain_grace_seconds == 5
    assert s.engine.startup_timeout_seconds == 1800


@pytest.mark.parametrize("value, wire", [(2, "2"), ("500m", "500m"), ("16Gi", "16Gi"), (0.5, "0.5")])
def test_quantities_accept_numbers_and_strings(value, wire):
    s = LLMServiceSpec.model_validate(spec(resources={"cpu": value}))
    assert s.to_wire()["resources"]["cpu"] == wire


def test_snake_case_names_are_accepted_in_python():
    s = LLMServiceSpec(model={"uri": "file:///m"}, drain_timeout_seconds=30)
    assert s.to_wire()["drainTimeoutSeconds"] == 30


def test_status_wire_names():
    status = LLMServiceStatus(
        ready_replicas=1, desired_replicas=2, ready_text="1/2", average_queue_depth=3.5,
        cost={"perHour": 2.0, "per1kTokens": 0.01},
    )
    wire = status.to_wire()
    assert wire["readyText"] == "1/2"
    assert wire["cost"] == {"perHour": 2.0, "per1kTokens": 0.01}
    assert "phase" not in wire  # unset fields are left out, never written as null


def test_status_embeds_the_autoscaler_state():
    status = LLMServiceStatus.model_validate(
        {"scaling": {"decisions": [{"time": "2026-01-01T00:00:00Z", "from": 1, "to": 3, "reason": "queue"}]}}
    )
    assert status.to_wire()["scaling"]["decisions"][0]["from"] == 1


def test_reads_an_object_as_the_api_server_returns_it():
    """Server-added metadata, defaults and kopf's status field must not break parsing."""
    body = {
        "apiVersion": "llmfleet.dev/v1alpha1",
        "kind": "LLMService",
        "metadata": {
            "name": "chat", "namespace": "team-a", "uid": "u-1", "generation": 3, "resourceVersion": "42",
            "creationTimestamp": "2026-11-21T23:53:50Z",
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {
            "model": {"uri": "file:///models/tiny"}, "replicas": 2, "drainGraceSeconds": 5,
            "drainTimeoutSeconds": 120, "engine": {"kind": "embedded", "startupTimeoutSeconds": 1800},
            "resources": {"cpu": 2, "gpus": 0}, "scheduling": {},
        },
        "status": {"phase": "Ready", "kopf": {"progress": {"h": {"retries": 1}}}, "readyText": "2/2"},
    }
    obj = LLMService.model_validate(body)
    assert (obj.metadata.name, obj.metadata.uid, obj.metadata.generation) == ("chat", "u-1", 3)
    assert obj.spec.resources.cpu == "2" and obj.status.ready_text == "2/2"
