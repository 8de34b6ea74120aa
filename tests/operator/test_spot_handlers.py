"""The spot wiring (handlers/spot.py + the reconciler's pooled sync) against the in-memory API server.

Stories: a notice drives Annotate -> Surge -> POST /drain -> Wait -> Evict in that order; a 429
from the Eviction API backs off and retries; a restarted operator resumes a drain from the pod's
annotations without surging or announcing twice; no schedulable spot node flips the split to
on-demand and it comes back after returnAfterSeconds. A service without a SpotPool drains the
same way off a noticed node (its one Deployment surged), lists no Node, and is not woken by
nodes that host none of its pods.
"""

from __future__ import annotations

import base64
import copy
from datetime import timedelta

import pytest
from fakes import NS, NTH, SpotWorld, pooled_world, spot_pod_on, status, sync, tick
from llmfleet.operator.handlers.reconciler import Reconciler
from llmfleet.operator.spot.drain_state import DRAIN_DEADLINE, DRAIN_STARTED, DRAIN_SURGE, EVICTION_ATTEMPTS
from llmfleet.operator.spot.notice import format_rfc3339


def until_quiet(world: SpotWorld, rec: Reconciler, seconds: float, step: float = 1.0) -> None:
    t = 0.0
    while t < seconds:
        world.advance(step)
        t += step
        tick(world, rec)


def test_a_notice_annotates_surges_drains_waits_and_evicts_in_that_order():
    world, rec = pooled_world()
    assert world.replicas() == (1, 2)
    assert status(world)["spot"]["fallbackActive"] is False
    pod = spot_pod_on(world, "gpu-spot-a")
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    world.kube.log.clear()

    world.taint("gpu-spot-a")  # NTH's taint, no action-time label: 120 s from first sight
    tick(world, rec)
    order = [w for w in world.kube.log if w[0] in ("patch", "apply", "POST /drain", "evict")
             and w[2] in (name, "chat-spot", ip)]
    assert order[:3] == [("patch", "Pod", name), ("apply", "Deployment", "chat-spot"), ("POST /drain", "Pod", ip)]
    marks = world.pods()[name]["metadata"]["annotations"]
    assert marks[DRAIN_STARTED] == format_rfc3339(world.now)
    assert marks[DRAIN_DEADLINE] == format_rfc3339(world.now + timedelta(seconds=120))
    assert marks[DRAIN_SURGE] == "spot"
    assert world.replicas() == (1, 3)  # the replacement starts before anything is evicted
    assert ("Normal", "DrainStarted") in [(t, r) for t, r, _ in world.events]
    assert not world.kube.writes("evict")  # G = 2 + 30 + 10 = 42 s fits before the deadline: wait first
    st = status(world)
    assert st["spot"]["drainingPods"][0]["name"] == name
    spot_cond = next(c for c in st["conditions"] if c["type"] == "SpotInterrupted")
    assert (spot_cond["status"], spot_cond["reason"]) == ("True", "Draining")
    pool = world.kube.objects[("SpotPool", None, "gpu-spot")]["status"]
    assert pool["interruptionsSeen"] == 1 and pool["interruptedNodes"][0]["name"] == "gpu-spot-a"
    assert pool["spotNodes"] == 2 and pool["onDemandNodes"] == 2

    # Requests still in flight: keep waiting, polling GET /drain.
    world.engines[ip]["in_flight"] = 2
    world.place()  # the replacement comes up on gpu-spot-b
    until_quiet(world, rec, 4)
    assert ("GET /drain", "Pod", ip) in world.kube.log
    assert not world.kube.writes("evict")

    # Nothing in flight any more: evict with the pod's full grace (42 s < D - M - now).
    world.engines[ip]["in_flight"] = 0
    until_quiet(world, rec, 3)
    assert world.kube.writes("evict") == [("evict", "Pod", name)]
    assert world.kube.graces == [(name, 42)]
    world.changed()  # the pod's MODIFIED event (deletionTimestamp set)
    tick(world, rec)
    assert world.replicas() == (1, 2)  # a terminating pod keeps no surge
    world.gone()
    tick(world, rec)
    pool = world.kube.objects[("SpotPool", None, "gpu-spot")]["status"]
    assert pool["podsDrained"] == 1 and pool["requestsCut"] == 0
    assert status(world)["spot"]["drainingPods"] == []
    assert world.replicas() == (1, 2)
    reasons = [r for _, r, _ in world.events]
    assert reasons.count("DrainStarted") == 2  # on the LLMService and on the SpotPool
    assert "DrainEvicted" in reasons and "SpotInterrupted" in reasons


def test_pooled_syncs_read_nodes_from_the_watch_not_a_list_each_time():
    # A Node list per re-read costs the API server a whole cluster's nodes each time a pod
    # changes; one list seeds the cache, the Node watch keeps it current.
    world, rec = pooled_world()
    lists = []
    plain_list = world.kube.list

    async def counting_list(kind, namespace, label_selector=""):
        lists.append(kind)
        return await plain_list(kind, namespace, label_selector)

    world.kube.list = counting_list
    for _ in range(3):
        world.changed()  # pod events: each sync re-reads the pods
        world.advance(1)
        tick(world, rec)
    assert lists.count("Pod") >= 3 and lists.count("Node") == 0  # seeded by pooled_world's first sync
    world.taint("gpu-spot-a")  # the watch's event, not a list, carries the notice
    tick(world, rec)
    assert lists.count("Node") == 0
    assert DRAIN_STARTED in spot_pod_on(world, "gpu-spot-a")["metadata"]["annotations"]
    world.advance(300)  # the periodic re-list, once for the process: it catches what a watch missed
    world.changed()
    tick(world, rec)
    assert lists.count("Node") == 1


def test_a_taint_the_watch_delivers_during_the_node_list_is_not_lost():
    # Found in review: the list's older snapshot replaced the watch's newer node, and the
    # unchanged signature kept later copies of the same event from restoring it.
    world, rec = pooled_world()
    spot = rec.spot
    plain_list = world.kube.list

    async def slow_list(kind, namespace, label_selector=""):
        snapshot = await plain_list(kind, namespace, label_selector)
        if kind == "Node":
            world.taint("gpu-spot-a")  # the watch's event arrives while the list is in flight
        return snapshot

    world.kube.list = slow_list
    spot.nodes_relisted()  # kopf listed again (after a pause or a 410): the cache is listed afresh
    world.changed()
    tick(world, rec)
    cached = {n["metadata"]["name"]: n for n in spot.nodes.values()}
    assert [t["key"] for t in cached["gpu-spot-a"]["spec"]["taints"]] == [NTH]
    assert DRAIN_STARTED in spot_pod_on(world, "gpu-spot-a")["metadata"]["annotations"]


def test_a_refused_eviction_backs_off_and_retries():
    world, rec = pooled_world()
    pod = spot_pod_on(world, "gpu-spot-a")
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    world.kube.evictions[name] = ["TooManyRequests", "TooManyRequests"]
    world.taint("gpu-spot-a")
    tick(world, rec)
    world.advance(3)  # past the 2 s drain grace, nothing in flight
    tick(world, rec)
    assert world.kube.writes("evict") == [("evict", "Pod", name)]
    marks = world.pods()[name]["metadata"]["annotations"]
    assert marks[EVICTION_ATTEMPTS] == "1"
    assert ("Warning", "EvictionRefused") in [(t, r) for t, r, _ in world.events]
    tick(world, rec)  # within the 1 s backoff: no new call
    assert len(world.kube.writes("evict")) == 1
    until_quiet(world, rec, 1)
    assert len(world.kube.writes("evict")) == 2  # retried after 1 s; refused again: 2 s now
    assert world.pods()[name]["metadata"]["annotations"][EVICTION_ATTEMPTS] == "2"
    until_quiet(world, rec, 1)
    assert len(world.kube.writes("evict")) == 2
    until_quiet(world, rec, 1)
    assert len(world.kube.writes("evict")) == 3
    assert "deletionTimestamp" in world.pods()[name]["metadata"]
    assert world.engines[ip]["draining"]


def test_past_the_last_safe_moment_the_pod_is_deleted():
    world, rec = pooled_world()
    name = spot_pod_on(world, "gpu-spot-a")["metadata"]["name"]
    world.kube.evictions[name] = ["TooManyRequests"] * 1000  # the PDB never allows it
    world.taint("gpu-spot-a")
    until_quiet(world, rec, 110)  # D - M = 110 s; delete at 105 s (no pod watch event: cached pods)
    assert world.kube.log.count(("delete", "Pod", name)) == 1  # once, and counted once
    assert world.kube.objects[("SpotPool", None, "gpu-spot")]["status"]["podsDrained"] == 1
    assert ("Warning", "DrainDeleted") in [(t, r) for t, r, _ in world.events]


def test_a_restarted_operator_resumes_the_drain_from_the_pod_annotations():
    world, rec = pooled_world()
    pod = spot_pod_on(world, "gpu-spot-a")
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    world.taint("gpu-spot-a")
    tick(world, rec)
    world.engines[ip]["in_flight"] = 1
    started = copy.deepcopy(world.pods()[name]["metadata"]["annotations"])
    assert world.replicas() == (1, 3)
    events_before = len(world.events)
    world.kube.log.clear()

    world.advance(5)
    fresh = world.reconciler()  # a new process: no memory, no node cache
    sync(world, fresh, force_apply=True)
    assert world.replicas() == (1, 3)  # the surge is recomputed from the annotation, not added again
    assert world.pods()[name]["metadata"]["annotations"] == started  # same start, same deadline
    assert ("POST /drain", "Pod", ip) not in world.kube.log  # the engine says it is draining already
    assert ("GET /drain", "Pod", ip) in world.kube.log
    assert "DrainStarted" not in [r for _, r, _ in world.events[events_before:]]
    world.engines[ip]["in_flight"] = 0
    until_quiet(world, fresh, 2)
    assert world.kube.writes("evict") == [("evict", "Pod", name)]
    assert world.kube.objects[("SpotPool", None, "gpu-spot")]["status"]["interruptionsSeen"] == 1


def test_an_operator_killed_right_after_the_drain_marks_still_announced_the_drain():
    # Found on the bed: the operator pod was killed between writing the drain marks and the end of
    # the sync; the new process (rightly) does not announce a drain the marks say had begun, so
    # DrainStarted must be posted with the marks, not after the Deployments are applied.
    world, rec = pooled_world()
    pod = spot_pod_on(world, "gpu-spot-a")
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]

    async def killed(obj, force=True):
        raise RuntimeError("the operator process is gone")

    world.kube.apply = killed  # the sync dies after begin(), before the apply and finish()
    world.taint("gpu-spot-a")
    with pytest.raises(RuntimeError, match="the operator process is gone"):
        tick(world, rec)
    assert DRAIN_STARTED in world.pods()[name]["metadata"]["annotations"]
    assert ("POST /drain", "Pod", ip) not in world.kube.log  # finish() never ran
    del world.kube.apply
    fresh = world.reconciler()
    world.advance(1)
    sync(world, fresh, force_apply=True)
    assert ("POST /drain", "Pod", ip) in world.kube.log  # the new process drains the engine
    reasons = [r for _, r, _ in world.events]
    assert reasons.count("DrainStarted") == 2  # once on the LLMService, once on the SpotPool
    assert world.replicas() == (1, 3)


def test_a_restarted_engine_is_drained_again():
    world, rec = pooled_world()
    pod = spot_pod_on(world, "gpu-spot-a")
    ip = pod["status"]["podIP"]
    world.taint("gpu-spot-a")
    tick(world, rec)
    world.engines[ip] = {"draining": False, "in_flight": 1}  # the container restarted
    world.kube.log.clear()
    until_quiet(world, rec, 2)
    assert ("POST /drain", "Pod", ip) in world.kube.log


def test_no_schedulable_spot_node_flips_the_split_to_on_demand_and_back():
    world = SpotWorld()
    world.pool(fallback={"pendingSeconds": 30, "returnAfterSeconds": 60})
    for node in ("gpu-spot-a", "gpu-spot-b"):
        world.node(node)["spec"]["unschedulable"] = True  # cordoned: no spot capacity
    world.service(replicas=3, spotPoolRef={"name": "gpu-spot"})
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    assert world.replicas() == (3, 0)
    st = status(world)["spot"]
    assert st["fallbackActive"] is True and st["fallbackReplicas"] == 2
    assert ("Normal", "SpotFallback") in [(t, r) for t, r, _ in world.events]
    world.place()
    tick(world, rec)
    assert world.replicas() == (3, 0)

    # The nodes come back (Ready since now): the replicas return after returnAfterSeconds.
    for node in ("gpu-spot-a", "gpu-spot-b"):
        n = world.node(node)
        n["spec"]["unschedulable"] = False
        n["status"]["conditions"][0]["lastTransitionTime"] = format_rfc3339(world.now)
        rec.spot.node_seen(n)
    rec.spot_changed()
    until_quiet(world, rec, 30, step=5)
    assert world.replicas() == (3, 0)  # not yet
    until_quiet(world, rec, 40, step=5)
    assert world.replicas() == (1, 2)
    assert status(world)["spot"]["fallbackActive"] is False
    assert ("Normal", "SpotReturned") in [(t, r) for t, r, _ in world.events]


def test_the_autoscaler_counts_draining_pods_as_leaving():
    world = SpotWorld()
    world.pool()
    world.policy(minReplicas=3, maxReplicas=6)
    world.service(autoscalePolicyRef={"name": "chat-policy"}, spotPoolRef={"name": "gpu-spot"},
                  drainGraceSeconds=2, drainTimeoutSeconds=30)
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    world.place()
    sync(world, rec)
    assert world.replicas() == (1, 2)
    victim = spot_pod_on(world, "gpu-spot-a")
    world.engines[victim["status"]["podIP"]] = {"draining": False, "in_flight": 1}  # still busy: no eviction yet
    world.taint("gpu-spot-a")
    tick(world, rec)
    assert world.replicas() == (1, 3)
    for _ in range(4):  # several autoscaler periods with the surge in place: no scale either way
        world.advance(5)
        tick(world, rec)
    assert world.replicas() == (1, 3)
    assert "SuccessfulRescale" not in [r for _, r, _ in world.events]


def test_the_pool_says_when_a_notice_is_too_short():
    world = SpotWorld()
    for node in ("gpu-spot-a", "gpu-spot-b"):
        world.node(node)["spec"]["providerID"] = f"gce://proj/us-central1-a/{node}"
    world.pool()
    world.service(replicas=3, spotPoolRef={"name": "gpu-spot"})
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    cond = next(c for c in world.kube.objects[("SpotPool", None, "gpu-spot")]["status"]["conditions"]
                if c["type"] == "NoticeTooShort")
    assert cond["status"] == "True" and "GKE" in cond["message"]


def test_a_service_without_pool_has_no_spot_status():
    world = SpotWorld()
    world.service(replicas=1)
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    assert "spot" not in status(world)
    assert world.deployment("chat")["spec"]["replicas"] == 1


def test_a_pod_gone_before_its_drain_marks_are_written_does_not_fail_the_sync():
    world, rec = pooled_world()
    name = spot_pod_on(world, "gpu-spot-a")["metadata"]["name"]
    real_patch = world.kube.patch

    async def patch(kind, namespace, obj, body, subresource=None):
        if kind == "Pod" and obj == name:
            world.kube.objects.pop(("Pod", namespace, name), None)  # deleted under us
        return await real_patch(kind, namespace, obj, body, subresource)

    world.kube.patch = patch
    world.taint("gpu-spot-a")
    tick(world, rec)  # no exception
    assert world.replicas() == (1, 2)  # no marks written: no surge
    assert not world.kube.writes("evict")


# --- a service without a SpotPool --------------------------------------------------------------


def unpooled_world(**service) -> tuple[SpotWorld, Reconciler]:
    """2 replicas of a service without a pool, spread over the four nodes (spot and on-demand)."""
    world = SpotWorld()
    world.service(replicas=2, drainGraceSeconds=2, drainTimeoutSeconds=30, **service)
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    world.place()
    sync(world, rec)
    return world, rec


def pod_on(world: SpotWorld, node: str) -> dict | None:
    return next((p for p in world.pods().values() if p["spec"]["nodeName"] == node), None)


def test_an_unpooled_pod_on_a_noticed_node_annotates_surges_drains_and_evicts():
    world, rec = unpooled_world()
    assert world.deployment("chat")["spec"]["replicas"] == 2
    victim = next(iter(sorted(world.pods().values(), key=lambda p: p["metadata"]["name"])))
    other = next(p for p in world.pods().values() if p is not victim)
    name, ip, node = victim["metadata"]["name"], victim["status"]["podIP"], victim["spec"]["nodeName"]
    assert other["spec"]["nodeName"] != node
    world.kube.log.clear()

    world.taint(node)  # NTH's taint: a 120 s notice from first sight, whatever the node's capacity type
    tick(world, rec)
    order = [w for w in world.kube.log if w[0] in ("patch", "apply", "POST /drain", "evict")
             and w[1] in ("Pod", "Deployment") and w[2] in (name, "chat", ip)]
    assert order[:3] == [("patch", "Pod", name), ("apply", "Deployment", "chat"), ("POST /drain", "Pod", ip)]
    marks = world.pods()[name]["metadata"]["annotations"]
    assert marks[DRAIN_STARTED] == format_rfc3339(world.now)
    assert marks[DRAIN_DEADLINE] == format_rfc3339(world.now + timedelta(seconds=120))
    assert marks[DRAIN_SURGE] == "any"
    # the POST carries this service's drain token, the one its Secret holds (an unkeyed POST is refused)
    secret = world.kube.objects[("Secret", NS, "chat-drain-token")]
    assert world.drain_tokens == [base64.b64decode(secret["data"]["token"]).decode()]
    assert world.drain_tokens == [rec.drain_key.token(NS, "chat")]
    assert world.deployment("chat")["spec"]["replicas"] == 3  # the replacement starts first
    assert DRAIN_STARTED not in (world.pods()[other["metadata"]["name"]]["metadata"].get("annotations") or {})
    assert ("GET /drain", "Pod", other["status"]["podIP"]) not in world.kube.log  # the other pod: untouched
    st = status(world)
    assert [p["name"] for p in st["spot"]["drainingPods"]] == [name] and "fallbackActive" not in st["spot"]
    spot_cond = next(c for c in st["conditions"] if c["type"] == "SpotInterrupted")
    assert (spot_cond["status"], spot_cond["reason"]) == ("True", "Draining")
    assert [r for _, r, _ in world.events].count("DrainStarted") == 1  # on the LLMService; there is no pool
    assert not [w for w in world.kube.log if w[1] == "SpotPool"]

    world.place()  # the replacement (not on the tainted node)
    assert pod_on(world, node)["metadata"]["name"] == name
    world.engines[ip]["in_flight"] = 1
    until_quiet(world, rec, 3)
    assert not world.kube.writes("evict")  # a request still runs: wait
    world.engines[ip]["in_flight"] = 0
    until_quiet(world, rec, 2)
    assert world.kube.writes("evict") == [("evict", "Pod", name)]
    assert world.kube.graces == [(name, 42)]
    world.changed()
    tick(world, rec)
    assert world.deployment("chat")["spec"]["replicas"] == 2  # the surge goes with the terminating pod
    world.gone()
    tick(world, rec)
    st = status(world)
    assert "spot" not in st
    spot_cond = next(c for c in st["conditions"] if c["type"] == "SpotInterrupted")
    assert (spot_cond["status"], spot_cond["reason"]) == ("False", "NoInterruption")
    assert world.deployment("chat")["spec"]["replicas"] == 2 and len(world.pods()) == 2
    assert "DrainEvicted" in [r for _, r, _ in world.events]
    assert "Node" not in world.kube.listed  # every node came from the watch


def test_an_unpooled_service_is_woken_only_by_signals_on_its_own_nodes():
    world, rec = unpooled_world()
    mine = {p["spec"]["nodeName"] for p in world.pods().values()}
    free = next(n for n in ("gpu-od-a", "gpu-od-b", "gpu-spot-a", "gpu-spot-b") if n not in mine)
    mem = rec.services[(NS, "chat")]
    world.advance(1)
    tick(world, rec)
    assert not mem.status_dirty
    world.kube.log.clear()

    world.taint(free)  # a notice on a node without a pod of the service
    assert not mem.status_dirty  # not woken: nothing to re-read
    busy = sorted(mine)[0]
    node = world.node(busy)
    node["metadata"]["labels"]["team"] = "ml"  # not a signal
    node["metadata"]["labels"]["aws-node-termination-handler/action-time"] = "1767268800"  # a time, no taint
    rec.spot.node_seen(node)
    rec.spot_changed()
    assert not mem.status_dirty
    until_quiet(world, rec, 3)
    assert not [w for w in world.kube.log if w[0] in ("GET /drain", "POST /drain", "evict")]
    assert not any(DRAIN_SURGE in (p["metadata"].get("annotations") or {}) for p in world.pods().values())
    assert world.deployment("chat")["spec"]["replicas"] == 2
    assert "spot" not in status(world)
    assert not [c for c in status(world)["conditions"] if c["type"] == "SpotInterrupted"]

    world.taint(busy, "karpenter.sh/disrupted")  # a signal on one of its nodes: woken
    assert mem.status_dirty
    tick(world, rec)
    assert world.deployment("chat")["spec"]["replicas"] == 3


def test_a_karpenter_event_wakes_the_unpooled_service_on_that_node():
    world, rec = unpooled_world()
    victim = sorted(world.pods().values(), key=lambda p: p["metadata"]["name"])[0]
    mem = rec.services[(NS, "chat")]
    tick(world, rec)
    event = {"metadata": {"uid": "ev-1", "name": "ev-1", "namespace": "default"}, "reason": "SpotInterrupted",
             "involvedObject": {"kind": "Node", "name": victim["spec"]["nodeName"],
                                "uid": f"uid-{victim['spec']['nodeName']}"},
             "lastTimestamp": format_rfc3339(world.now)}
    assert rec.spot.event_seen(event)
    rec.spot_changed()
    assert mem.status_dirty
    tick(world, rec)
    marks = world.pods()[victim["metadata"]["name"]]["metadata"]["annotations"]
    assert marks[DRAIN_DEADLINE] == format_rfc3339(world.now + timedelta(seconds=120))


def test_a_restarted_operator_resumes_an_unpooled_drain_without_surging_twice():
    world, rec = unpooled_world()
    victim = sorted(world.pods().values(), key=lambda p: p["metadata"]["name"])[0]
    name, ip = victim["metadata"]["name"], victim["status"]["podIP"]
    world.taint(victim["spec"]["nodeName"])
    tick(world, rec)
    assert world.deployment("chat")["spec"]["replicas"] == 3
    world.place()
    world.engines[ip]["in_flight"] = 1
    started = copy.deepcopy(world.pods()[name]["metadata"]["annotations"])
    events_before = len(world.events)
    world.kube.log.clear()

    world.advance(5)
    fresh = world.reconciler(watch_nodes=False)  # a new process whose Node watch has not listed yet
    sync(world, fresh, force_apply=True)
    assert world.deployment("chat")["spec"]["replicas"] == 3  # recomputed from the annotation, not added again
    assert world.pods()[name]["metadata"]["annotations"] == started  # same start, same deadline
    assert ("GET /drain", "Pod", ip) in world.kube.log
    assert ("POST /drain", "Pod", ip) not in world.kube.log  # the engine says it drains already
    assert "DrainStarted" not in [r for _, r, _ in world.events[events_before:]]
    for (kind, _, _), obj in sorted(world.kube.objects.items()):  # the watch's initial list arrives
        if kind == "Node":
            fresh.spot.node_seen(copy.deepcopy(obj))
    fresh.spot_changed()
    world.advance(30)  # first sight of the time-less taint is now 35 s later in this process
    tick(world, fresh)
    assert world.pods()[name]["metadata"]["annotations"][DRAIN_DEADLINE] == started[DRAIN_DEADLINE]
    assert world.deployment("chat")["spec"]["replicas"] == 3
    world.engines[ip]["in_flight"] = 0
    until_quiet(world, fresh, 2)
    assert world.kube.writes("evict") == [("evict", "Pod", name)]
    assert [r for _, r, _ in world.events].count("DrainStarted") == 1


def test_a_rebalance_recommendation_starts_an_unpooled_replacement_and_drops_it():
    world, rec = unpooled_world()
    victim = sorted(world.pods().values(), key=lambda p: p["metadata"]["name"])[0]
    node, name = victim["spec"]["nodeName"], victim["metadata"]["name"]
    advisory = "aws-node-termination-handler/rebalance-recommendation"
    world.taint(node, advisory)
    tick(world, rec)
    assert world.deployment("chat")["spec"]["replicas"] == 3
    assert world.pods()[name]["metadata"]["annotations"] == {DRAIN_SURGE: "any"}
    assert not [w for w in world.kube.log if w[0] in ("POST /drain", "evict")]
    cond = next(c for c in status(world)["conditions"] if c["type"] == "SpotInterrupted")
    assert (cond["status"], cond["reason"]) == ("False", "ReplacementStarted")
    assert "ReplacementStarted" in [r for _, r, _ in world.events]
    world.untaint(node, advisory)
    tick(world, rec)
    assert world.deployment("chat")["spec"]["replicas"] == 2
    assert DRAIN_SURGE not in (world.pods()[name]["metadata"].get("annotations") or {})


def test_the_autoscaler_counts_unpooled_draining_pods_as_leaving():
    world = SpotWorld()
    world.policy(minReplicas=2, maxReplicas=6)
    world.service(autoscalePolicyRef={"name": "chat-policy"}, drainGraceSeconds=2, drainTimeoutSeconds=30)
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    world.place()
    sync(world, rec)
    assert world.deployment("chat")["spec"]["replicas"] == 2
    victim = sorted(world.pods().values(), key=lambda p: p["metadata"]["name"])[0]
    world.engines[victim["status"]["podIP"]] = {"draining": False, "in_flight": 1}  # busy: no eviction yet
    world.taint(victim["spec"]["nodeName"])
    tick(world, rec)
    assert world.deployment("chat")["spec"]["replicas"] == 3
    for _ in range(4):  # several autoscaler periods with the surge in place: no scale either way
        world.advance(5)
        tick(world, rec)
    assert world.deployment("chat")["spec"]["replicas"] == 3
    assert "SuccessfulRescale" not in [r for _, r, _ in world.events]
