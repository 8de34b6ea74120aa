"""The reconciler reading kopf's indexes (handlers/store.py) instead of the API.

In steady state a sync reads nothing from the API server: the index is the watch's copy.
Our own writes reach the index a moment later; until then the reconciler keeps them
(Overlay), so a sync in between neither announces a drain twice nor re-applies counts.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime

from fakes import NS, Index, SpotWorld, World, spot_pod_on, status, sync, tick
from llmfleet.operator.handlers.reconciler import Reconciler
from llmfleet.operator.handlers.spot import SpotRuntime, node_brief
from llmfleet.operator.handlers.store import IndexStore, Overlay
from llmfleet.operator.render.labels import SERVICE_LABEL


def indexed(world: World, rec: Reconciler, lagging: bool = False) -> Index:
    index = Index(world.kube, lagging)
    rec.use_store(index)
    return index


def test_a_steady_service_reads_nothing_from_the_api():
    world = World()
    world.service(replicas=2)
    rec = world.reconciler()
    indexed(world, rec)
    sync(world, rec, force_apply=True)
    world.kube.reads = 0  # start-up: the Service and PDB are read once per process
    world.run_pods()
    for _ in range(25):
        world.advance(15)  # past every sync period, the old one-minute re-list and the re-apply
        tick(world, rec)
    assert world.kube.reads == 0
    assert status(world)["phase"] == "Ready" and status(world)["readyText"] == "2/2"


def test_the_autoscaler_scales_from_the_index_alone():
    world = World()
    world.policy()
    world.service(autoscalePolicyRef={"name": "chat-policy"})
    rec = world.reconciler()
    indexed(world, rec)
    sync(world, rec, force_apply=True)
    world.kube.reads = 0  # start-up: the Service and PDB are read once per process
    world.run_pods()
    world.queue = {"chat-0": 10}
    world.advance(5)
    tick(world, rec)
    assert world.deployment()["spec"]["replicas"] == 5
    assert status(world)["lastScaleReason"] == "1 -> 5: QueueDepth above target"
    assert world.kube.reads == 0


def test_a_drain_is_not_announced_twice_while_the_index_lags_behind_our_marks():
    world = SpotWorld()
    world.pool()
    world.service(replicas=3, spotPoolRef={"name": "gpu-spot"}, drainGraceSeconds=2, drainTimeoutSeconds=30)
    rec = world.reconciler()
    index = indexed(world, rec, lagging=True)
    sync(world, rec, force_apply=True)
    world.place()
    index.deliver()
    sync(world, rec)
    name = spot_pod_on(world, "gpu-spot-a")["metadata"]["name"]
    world.engines[world.pods()[name]["status"]["podIP"]] = {"draining": False, "in_flight": 1}
    world.taint("gpu-spot-a")
    tick(world, rec)
    assert world.replicas() == (1, 3)  # the replacement first
    applies = len(world.kube.writes("apply"))
    for _ in range(3):  # the watch has not delivered our marks nor the new count yet
        world.advance(1)
        rec.mark_status(NS, "chat")
        tick(world, rec)
    started = [e for e in world.events if e[1] == "DrainStarted"]
    assert len(started) == 2  # once on the LLMService, once on its SpotPool
    assert len(world.kube.writes("apply")) == applies  # the counts as applied, not re-applied from a stale copy
    assert world.replicas() == (1, 3)
    index.deliver()
    world.advance(1)
    tick(world, rec)
    assert world.replicas() == (1, 3) and len([e for e in world.events if e[1] == "DrainStarted"]) == 2


def test_an_overlay_entry_the_watch_never_confirms_expires():
    overlay = Overlay()
    before = [{"metadata": {"name": "p", "annotations": {}}}]
    after = [{"metadata": {"name": "p", "annotations": {"a": "1"}}}]
    overlay.remember(before, after, mono=0.0)
    assert overlay.apply(copy.deepcopy(before))[0]["metadata"]["annotations"] == {"a": "1"}
    overlay.expire(mono=31.0)  # a hand edit took the annotation off again: the index is right
    assert overlay.apply(copy.deepcopy(before))[0]["metadata"]["annotations"] == {}


def test_the_index_store_reads_kopf_indexes_and_indexes_no_secrets():
    import kopf
    from llmfleet.operator.handlers import kopf_handlers
    from llmfleet.operator.handlers.store import IndexStore

    pod = {"metadata": {"name": "chat-0", "namespace": NS, "labels": {SERVICE_LABEL: "chat"},
                        "managedFields": [{"manager": "kubelet"}]}}
    entries = {
        "llmfleet_pods_index": kopf_handlers.llmfleet_pods_index(namespace=NS, labels=pod["metadata"]["labels"], body=pod),
    }
    # kopf.Index: key -> a collection of the values indexed under it
    store = IndexStore({name: {k: [v] for k, v in entry.items()} for name, entry in entries.items()})
    assert [p["metadata"] for p in store.pods(NS, "chat")] == [
        {"name": "chat-0", "namespace": NS, "labels": {SERVICE_LABEL: "chat"}}]  # no managedFields kept
    assert store.deployments(NS, "chat") == []
    # Secrets are neither indexed nor watched: their data never reaches the operator
    indexed = {h.selector.any_name for h in kopf.get_default_registry()._indexing.get_all_handlers()}
    assert "pods" in indexed and "secrets" not in indexed


def test_pooled_services_read_nodes_from_the_node_index_without_a_list():
    class Lists:
        calls = 0

        async def list(self, kind, namespace, label_selector=""):
            Lists.calls += 1
            return []

    node = {"metadata": {"name": "n1", "labels": {"karpenter.sh/capacity-type": "spot"}, "uid": "u1",
                         "managedFields": [{"manager": "x"}]},
            "spec": {"taints": []}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    store = IndexStore({"llmfleet_nodes_index": {"n1": [node_brief(node)], "gone": []}})
    spot = SpotRuntime(kube=Lists(), post_event=lambda *a: None)
    spot.node_index = store.nodes
    nodes = asyncio.run(spot.all_nodes(datetime(2026, 1, 1, tzinfo=UTC)))
    assert [n["metadata"]["name"] for n in nodes] == ["n1"]
    assert "managedFields" not in nodes[0]["metadata"]
    assert Lists.calls == 0
