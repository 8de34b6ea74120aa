"""Specs the API server admits but the operator cannot use: each gets a condition and an event on
its own object naming the field, never a handler that raises and retries for ever, and the
services that do not use it go on as before."""

from __future__ import annotations

import asyncio

import pytest
from fakes import NS, SpotWorld, World, cond, pooled_world, status, sync
from llmfleet.operator.api.base import describe_invalid
from llmfleet.operator.api.llmservice import LLMService
from pydantic import ValidationError

MARS = [{"name": "peak", "start": "09:00", "end": "17:00", "timeZone": "Mars/Olympus", "minReplicas": 2}]


def message(world: World, type_: str, name: str = "chat") -> str:
    return next(c for c in status(world, name)["conditions"] if c["type"] == type_)["message"]


def test_a_policy_the_schema_admits_but_the_operator_cannot_use_says_which_field():
    """A time zone is checked by the operator only (no CEL can): the policy gets Ready False
    with the field, once as an event; its service names it; a fix clears both."""
    world = World()
    world.service(autoscalePolicyRef={"name": "chat-policy"})
    world.service(name="other", replicas=1)
    world.policy(schedules=MARS)
    rec = world.reconciler()
    policy = lambda: world.kube.objects[("AutoscalePolicy", NS, "chat-policy")]  # noqa: E731
    asyncio.run(rec.sync_policy(policy()))  # raised ValidationError before: kopf retried it for ever
    asyncio.run(rec.sync_policy(policy()))
    ready = policy()["status"]["conditions"][0]
    why = "spec.schedules.0.timeZone: unknown IANA time zone 'Mars/Olympus'"
    assert (ready["type"], ready["status"], ready["reason"], ready["message"]) == ("Ready", "False", "InvalidSpec", why)
    assert [e for e in world.events if e[1] == "InvalidSpec"] == [("Warning", "InvalidSpec", why)]  # once

    sync(world, rec, force_apply=True)
    assert cond(world, "Ready") == ("False", "InvalidSpec")
    assert message(world, "Degraded") == f"AutoscalePolicy chat-policy: {why}"  # was "1 validation error for ..."
    assert ("Deployment", NS, "chat") not in world.kube.objects
    sync(world, rec, name="other", force_apply=True)  # a service that does not use it is untouched
    assert world.deployment("other")["spec"]["replicas"] == 1

    world.policy(schedules=[{**MARS[0], "timeZone": "Europe/Berlin"}])
    asyncio.run(rec.sync_policy(policy()))
    assert "conditions" not in policy()["status"] and policy()["status"]["bounds"]["maxReplicas"] == 8
    rec.reference_changed("AutoscalePolicy", NS, "chat-policy")
    sync(world, rec)
    assert ("Deployment", NS, "chat") in world.kube.objects and status(world)["phase"] != "Failed"


def test_a_pool_the_operator_cannot_use_is_a_condition_on_its_services():
    world = SpotWorld()
    world.pool(drainDeadlineMarginSeconds=-5)  # what an older CRD, or a hand-made object, might hold
    world.service(replicas=3, spotPoolRef={"name": "gpu-spot"})
    rec = world.reconciler()
    sync(world, rec, force_apply=True)  # raised ValidationError in the plan before
    assert cond(world, "Ready") == ("False", "InvalidSpec")
    assert message(world, "Degraded").startswith("SpotPool gpu-spot: spec.drainDeadlineMarginSeconds: ")


@pytest.mark.parametrize("spec,expected", [
    ({"model": {}}, "spec.model.uri: Field required"),
    ({"model": {"uri": "file:///m"}, "replicas": -1}, "spec.replicas: Input should be greater than or equal to 0"),
    ({"model": {"uri": "file:///m"}, "replicas": 1, "autoscalePolicyRef": {"name": "p"}},
     "spec: spec.replicas and spec.autoscalePolicyRef are mutually exclusive"),
])
def test_an_invalid_spec_is_described_by_its_field(spec, expected):
    with pytest.raises(ValidationError) as caught:
        LLMService.model_validate({"metadata": {"name": "chat", "namespace": NS}, "spec": spec})
    assert describe_invalid(caught.value) == expected


def test_a_pool_broken_under_a_running_service_leaves_its_pods_alone():
    world, rec = pooled_world()
    before = world.replicas()
    world.pool(drainDeadlineMarginSeconds=-5)
    rec.reference_changed("SpotPool", None, "gpu-spot")
    sync(world, rec, force_apply=True)
    assert cond(world, "Degraded")[1] == "InvalidSpec"
    assert world.replicas() == before and ("Deployment", NS, "chat") not in world.kube.objects
