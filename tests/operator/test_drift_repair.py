"""A hand edit of a generated Deployment is repaired at the next sync; without one, nothing
is applied again until the slow safety resync (handlers/reconciler.py, RESYNC_SECONDS)."""

from __future__ import annotations

from fakes import NS, Index, World, sync, tick
from llmfleet.operator.handlers.reconciler import RESYNC_SECONDS
from llmfleet.operator.sync.children import edited_since_applied


def steady_world() -> tuple[World, object]:
    world = World()
    world.service(replicas=2)
    rec = world.reconciler()
    rec.use_store(Index(world.kube))
    sync(world, rec, force_apply=True)
    world.run_pods()
    return world, rec


def test_a_steady_service_applies_nothing_until_the_safety_resync():
    world, rec = steady_world()
    applies = len(world.kube.writes("apply"))
    for _ in range(int(RESYNC_SECONDS // 15) - 1):
        world.advance(15)
        tick(world, rec)
    assert len(world.kube.writes("apply")) == applies
    world.advance(30)
    tick(world, rec)
    assert len(world.kube.writes("apply")) > applies  # the safety net


def test_an_edited_deployment_template_is_applied_again_at_the_next_sync():
    world, rec = steady_world()
    world.advance(15)
    tick(world, rec)
    dep = world.deployment()
    rendered = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "someone/else:latest"  # kubectl edit
    dep["metadata"]["generation"] += 1
    rec.mark_status(NS, "chat")  # the Deployment's watch event
    world.advance(1)
    tick(world, rec)
    assert world.deployment()["spec"]["template"]["spec"]["containers"][0]["image"] == rendered
    applies = len(world.kube.writes("apply"))
    world.advance(15)
    tick(world, rec)
    assert len(world.kube.writes("apply")) == applies  # repaired once, not at every sync


def test_edited_since_applied_judges_only_what_we_applied():
    deps = [{"metadata": {"name": "a", "generation": 3}}, {"metadata": {"name": "b", "generation": 2}},
            {"metadata": {"name": "c", "generation": 9}}]
    assert edited_since_applied(deps, {"a": 2, "b": 2}) == ["a"]
    assert edited_since_applied(deps, {}) == []
