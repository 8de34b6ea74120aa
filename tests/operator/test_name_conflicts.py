"""Name collisions: the operator never takes over an object its LLMService does not control
(server-side apply with force would, and the garbage collector would later delete it), and
the names it generates cannot collide between LLMServices."""

from __future__ import annotations

import pytest
from fakes import NS, SpotWorld, World, cond, status, sync
from llmfleet.operator.api.llmservice import CRD
from llmfleet.operator.render.ownership import foreign_names

MINE = "uid-chat"


def owned(uid: str, kind: str = "LLMService", name: str = "chat") -> dict:
    return {"metadata": {"ownerReferences": [{"kind": kind, "name": name, "uid": uid, "controller": True}]}}


# (case, existing object) → foreign?
OWNERS = [
    ("nothing there yet", None, False),
    ("ours", owned(MINE), False),
    ("a user's own, no owner", {"metadata": {}}, True),
    ("another LLMService's", owned("uid-other", name="chat-x"), True),
    ("ours, but only as a non-controller", {"metadata": {"ownerReferences": [{"uid": MINE}]}}, True),
]


@pytest.mark.parametrize("case, obj, foreign", OWNERS, ids=[c[0] for c in OWNERS])
def test_whose_object(case, obj, foreign):
    assert bool(foreign_names([("Service", "chat", obj)], MINE)) is foreign


def test_a_users_service_of_the_same_name_is_left_alone():
    world = World()
    mine = world.kube.put({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "chat", "namespace": NS},
                           "spec": {"ports": [{"port": 5432}], "selector": {"app": "postgres"}}})
    rec = world.reconciler()
    world.service(replicas=1)
    sync(world, rec, force_apply=True)
    assert cond(world, "Ready") == ("False", "NameConflict")
    degraded = next(c for c in status(world)["conditions"] if c["type"] == "Degraded")
    assert "Service chat" in degraded["message"]
    assert world.kube.objects[("Service", NS, "chat")] == mine  # not adopted, not rewritten
    assert not world.kube.writes("apply")  # nothing at all applied while a name is taken
    assert ("Warning", "NameConflict") in [(t, r) for t, r, _ in world.events]


def test_a_pooled_service_does_not_take_another_services_deployment():
    world = SpotWorld()
    world.pool()
    other = world.kube.put({"apiVersion": "apps/v1", "kind": "Deployment",
                            "metadata": {"name": "chat-spot", "namespace": NS, **owned("uid-chat-spot", "LLMService",
                                                                                     "chat-spot")["metadata"]},
                            "spec": {"replicas": 2}})
    world.service(replicas=3, spotPoolRef={"name": "gpu-spot"})
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    assert cond(world, "Ready") == ("False", "NameConflict")
    assert world.kube.objects[("Deployment", NS, "chat-spot")] == other


def test_names_that_generated_deployments_use_are_refused_by_the_crd():
    rule = next(r for r in CRD.root_rules if "-spot" in r.rule)
    assert "endsWith('-spot')" in rule.rule and "endsWith('-ondemand')" in rule.rule


def test_a_users_secret_named_like_the_drain_token_is_not_taken_over():
    """The operator may not read Secrets: it applies the drain-token Secret without force, so a
    Secret whose fields another manager owns is a conflict, not a takeover."""
    world = World()
    mine = world.kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chat-drain-token",
                                                                              "namespace": NS},
                           "data": {"password": "aHVudGVyMg=="}})
    rec = world.reconciler()
    world.service(replicas=1)
    sync(world, rec, force_apply=True)
    assert cond(world, "Ready") == ("False", "NameConflict")
    assert world.kube.objects[("Secret", NS, "chat-drain-token")] == mine
    assert not [w for w in world.kube.writes("apply") if w[1] == "Deployment"]  # no pod mounts a token it lacks
