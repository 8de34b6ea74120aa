"""An LLMService with spec.inferencePool: the pool is applied when the CRD is served, and its
absence is a condition and a warning, never a failed service."""

from __future__ import annotations

import pytest
from fakes import NS, World, cond, status, sync
from llmfleet.operator.adapters.kube import KubeError
from llmfleet.operator.api.llmservice import LLMService
from llmfleet.operator.render import render_inference_pool
from pydantic import ValidationError

EPP = {"name": "chat-epp", "port": {"number": 9002}}


class NoCrdKube:
    """Wraps the fake API server: InferencePool is not a served resource (404 on apply, as the API server answers)."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def apply(self, obj):
        if obj["kind"] == "InferencePool":
            raise KubeError(404, "the server could not find the requested resource")
        return await self.inner.apply(obj)


def pool(world: World, name="chat") -> dict | None:
    return world.kube.objects.get(("InferencePool", NS, name))


def test_the_pool_selects_every_engine_pod_on_the_engine_port_and_is_owned_by_the_service():
    world = World()
    world.service(replicas=2, inferencePool={"endpointPickerRef": EPP})
    rec = world.reconciler()
    sync(world, rec, force_apply=True)

    p = pool(world)
    assert p is not None and p["apiVersion"] == "inference.networking.k8s.io/v1"
    pod_labels = world.deployment()["spec"]["template"]["metadata"]["labels"]
    selector = p["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items() and "llmfleet.dev/capacity" not in selector  # spot and on-demand
    assert p["spec"]["targetPorts"] == [{"number": 8000}]
    assert p["spec"]["endpointPickerRef"] == EPP
    assert p["metadata"]["ownerReferences"][0]["uid"] == "uid-chat"
    assert cond(world, "InferencePoolReady") == ("True", "Applied")
    assert [e for e in world.events if e[1] == "InferencePoolApplied"]


def test_without_the_crd_the_service_still_serves_and_the_condition_says_why_once():
    world = World()
    world.service(replicas=1, inferencePool={})
    rec = world.reconciler()
    rec.kube = NoCrdKube(world.kube)
    sync(world, rec, force_apply=True)
    sync(world, rec, force_apply=True)

    assert world.deployment()["spec"]["replicas"] == 1  # the rest was applied
    assert pool(world) is None
    assert cond(world, "InferencePoolReady") == ("False", "CRDNotInstalled")
    c = next(c for c in status(world)["conditions"] if c["type"] == "InferencePoolReady")
    assert "inferencepools.inference.networking.k8s.io" in c["message"]
    warnings = [e for e in world.events if e[1] == "CRDNotInstalled"]
    assert len(warnings) == 1 and warnings[0][0] == "Warning"  # on the transition only
    assert cond(world, "Ready")[1] != "ApplyFailed"


def test_disabling_the_pool_deletes_it():
    world = World()
    body = world.service(replicas=1, inferencePool={"endpointPickerRef": EPP})
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    assert pool(world) is not None

    body["spec"]["inferencePool"]["enabled"] = False
    body["metadata"]["generation"] = body["metadata"].get("generation", 1) + 1
    sync(world, rec, force_apply=True)
    assert pool(world) is None
    assert cond(world, "InferencePoolReady") == ("False", "Disabled")
    assert ("delete", "InferencePool", "chat") in world.kube.log


def test_a_service_without_the_field_never_touches_inference_pools():
    world = World()
    world.service(replicas=1)
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    assert not [w for w in world.kube.log if w[1] == "InferencePool"]
    assert not [c for c in status(world)["conditions"] if c["type"] == "InferencePoolReady"]


def test_an_endpoint_picker_service_needs_its_port():
    with pytest.raises(ValidationError, match="port is required"):
        LLMService.model_validate({"metadata": {"name": "x"}, "spec": {
            "model": {"uri": "file:///m"}, "inferencePool": {"endpointPickerRef": {"name": "epp"}}}})
    svc = LLMService.model_validate({"metadata": {"name": "x", "namespace": "n"}, "spec": {
        "model": {"uri": "file:///m"}, "inferencePool": {"endpointPickerRef": {"name": "epp", "kind": "Custom"}}}})
    assert render_inference_pool(svc)["spec"]["endpointPickerRef"] == {"name": "epp", "kind": "Custom"}
