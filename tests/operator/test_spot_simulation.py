"""Stories: a fleet on spot nodes, a reclaim notice, and what the plan makes of it.

Given 2 spot pods and 1 on-demand pod with requests in flight, when a spot node gets a
notice, then the replacement starts first, the pod drains, it is evicted (or deleted) so it
is gone before the deadline, and every request either finishes or is counted as cut —
with the cut ones announced in advance. The world is tests/operator/test_spot_world.py.
"""

from __future__ import annotations

from llmfleet.operator.api.spotpool import SpotPoolSpec
from llmfleet.operator.spot.drain_state import DRAIN_STARTED
from llmfleet.operator.spot.pool_notices import check_notice_length
from llmfleet.operator.spot.signals import detect_interruptions
from test_spot_world import Node, Operator, Pod, World, at, run, serving

POOL = SpotPoolSpec.model_validate(
    {
        "spot": {"nodeSelector": {"capacity": "spot"}},
        "onDemand": {"nodeSelector": {"capacity": "ondemand"}},
        "onDemandBase": 1,
        "maxSpotShare": 100,
        "drainDeadlineMarginSeconds": 10,
        "fallback": {"pendingSeconds": 120, "returnAfterSeconds": 300},
    }
)
DOOMED = {"key": "sim/doomed", "effect": "NoSchedule"}  # keeps replacements off the node; not a signal


def fleet(startup=30.0, spare_spot=1, spare_ondemand=2) -> tuple[World, Operator]:
    world = World(startup=startup)
    for name in ["spot-a", "spot-b"] + [f"spot-spare-{i}" for i in range(spare_spot)]:
        world.nodes[name] = Node(name, "spot")
    for name in ["od-1"] + [f"od-spare-{i}" for i in range(spare_ondemand)]:
        world.nodes[name] = Node(name, "ondemand")
    world.pods = [
        Pod("spot-a-pod", "spot", -3600, "spot-a", -3600),
        Pod("spot-b-pod", "spot", -3600, "spot-b", -3600),
        Pod("od-pod", "ondemand", -3600, "od-1", -3600),
    ]
    world.replicas = {"ondemand": 1, "spot": 2}
    return world, Operator(POOL, total=3, current=(1, 2))


def notice(world: World, node: str, seconds: float) -> None:
    n = world.nodes[node]
    n.annotations["llmfleet.dev/interruption-deadline"] = at(world.t + seconds).isoformat()
    n.taints.append(DOOMED)
    n.dies_at = world.t + seconds


def reasons(world: World, pod: str) -> list[str]:
    return [r for _, p, r in world.events if p == pod]


def test_120s_notice_replacement_first_drain_evict_before_the_deadline_nothing_cut():
    world, op = fleet(startup=30)
    pod = world.pod("spot-a-pod")
    pod.requests = [10, 40, 80]  # in flight at t=0, ending at these times
    world.pod("spot-b-pod").requests = [100]
    notice(world, "spot-a", 120)

    run(world, op, until=130)

    # The replacement was created at once, on the spare spot node, and was serving at t=30.
    replacement = next(p for p in world.pods if p.name.startswith("spot-") and p.created == 0)
    assert replacement.node == "spot-spare-0" and replacement.bound_at == 0
    # Drained at t=0; the PDB held the eviction until the replacement was ready (a 4th expected
    # pod not yet healthy), then the eviction went through with grace ending at D - M = 110.
    # (In a real cluster the first attempt may pass: the PDB status lags the surge.)
    assert pod.annotations[DRAIN_STARTED] == "2026-11-22T00:00:00Z"
    evicted = [(t, r) for t, p, r in world.evictions if p == "spot-a-pod"]
    assert evicted[-1][1] == "Evicted" and 30 <= evicted[-1][0] <= 35  # within one backoff step
    assert all(r == "TooManyRequests" for _, r in evicted[:-1])
    assert pod.kill_at == 110
    assert reasons(world, "spot-a-pod")[0] == "DrainStarted" and "DrainEvicted" in reasons(
        world, "spot-a-pod"
    )
    # Every request finished; the pod left when its last one did (t=80), 40 s before the node.
    assert world.cut == 0 and world.finished == 4 and pod.gone
    # At the eviction (t≈32) two requests were in flight with only ~78 s of grace instead of the
    # pod's 135 s: the plan announced both as at risk; both ended (t=40, t=80) before t=110.
    assert op.at_risk == {"spot-a-pod": 2}
    assert serving(world) == 3 and world.replicas == {"ondemand": 1, "spot": 2}


def test_gke_15s_notice_cuts_a_60s_request_and_says_so_in_advance():
    world, op = fleet(startup=30)
    world.pod("spot-a-pod").requests = [60]
    # GKE's taint, no timestamp: the default 15 s notice for that signal.
    world.nodes["spot-a"].taints.append(
        {"key": "cloud.google.com/impending-node-termination", "effect": "NoSchedule"}
    )
    world.nodes["spot-a"].dies_at = 15

    (n,) = detect_interruptions(world.node_objs(), [], [], POOL, at(0))
    assert n.notice_seconds == 15
    # The pool's status condition says plainly that 15 s cannot cover a 125 s drain.
    assert check_notice_length(world.node_objs(), POOL, 125, [n]).too_short

    run(world, op, until=20)

    assert op.at_risk == {"spot-a-pod": 1}  # the plan counted it before the kill...
    assert world.cut == 1  # ...and it was cut: an honest count, not zero
    assert "RequestsAtRisk" in reasons(world, "spot-a-pod") and "DrainDeleted" in reasons(world, "spot-a-pod")
    assert world.pod("spot-a-pod").kill_at == 5  # gone by D - M, before the VM stops


def test_pdb_holds_each_eviction_until_that_pods_replacement_is_ready():
    world, op = fleet(startup=20, spare_spot=2)
    world.pod("spot-a-pod").requests = [100]
    world.pod("spot-b-pod").requests = [130]
    notice(world, "spot-a", 120)

    def second_notice(w: World) -> None:
        if w.t == 40:
            notice(w, "spot-b", 120)

    run(world, op, until=170, on_tick=second_notice)

    def evictions(name):
        return [(t, r) for t, p, r in world.evictions if p == name]

    # A: refused while its replacement loads (the surge makes 4 expected pods with 2 healthy,
    # and maxUnavailable is 1), evicted within one backoff step of the replacement's ready (t=20).
    a = evictions("spot-a-pod")
    assert {r for _, r in a[:-1]} == {"TooManyRequests"} and a[-1][1] == "Evicted" and 20 <= a[-1][0] <= 25
    # B (notice at t=40): the same, against its own replacement (ready at t=60).
    b = evictions("spot-b-pod")
    assert b[0][1] == "TooManyRequests" and 40 <= b[0][0] <= 41  # refused from the notice on
    assert b[-1][1] == "Evicted" and 60 <= b[-1][0] <= 66
    assert reasons(world, "spot-b-pod").count("RequestsAtRisk") <= 1  # announced once, not per retry
    assert world.cut == 0 and world.finished == 2 and serving(world) == 3


def test_two_nodes_at_once_exceed_the_pdb_and_the_plan_deletes_at_the_point_of_no_return():
    world, op = fleet(startup=30, spare_spot=2)
    world.pod("spot-a-pod").requests = [90]
    world.pod("spot-b-pod").requests = [95]
    notice(world, "spot-a", 120)
    notice(world, "spot-b", 120)

    run(world, op, until=130)

    # Two drained pods plus two loading replacements: the PDB (maxUnavailable 1) refuses every
    # eviction; the plan retries with backoff and at D - M - 5 s deletes with the 5 s left.
    for name in ("spot-a-pod", "spot-b-pod"):
        assert {r for _, p, r in world.evictions if p == name} == {"TooManyRequests"}, name
        assert "EvictionRefused" in reasons(world, name) and "DrainDeleted" in reasons(world, name)
        assert world.pod(name).gone
    assert world.cut == 0 and world.finished == 2  # both requests ended before t=105
    assert serving(world) == 3


def test_all_spot_nodes_gone_falls_back_to_on_demand_and_returns():
    world, op = fleet(startup=30, spare_spot=0, spare_ondemand=3)
    notice(world, "spot-a", 120)
    notice(world, "spot-b", 120)

    run(world, op, until=130)
    # No schedulable spot node: both replicas moved to on-demand at once (well within
    # pendingSeconds), and the fleet serves 3 replicas again from on-demand nodes.
    assert op.fallback.replicas == 2
    assert world.replicas == {"ondemand": 3, "spot": 0}
    assert serving(world) == 3

    # New spot nodes join at t=200; after returnAfterSeconds (300 s) the replicas go back.
    for name in ("spot-c", "spot-d"):
        world.nodes[name] = Node(name, "spot", ready_since=200)
    run(world, op, until=499)
    assert world.replicas == {"ondemand": 3, "spot": 0}
    run(world, op, until=500)
    assert op.fallback.replicas == 0 and world.replicas == {"ondemand": 1, "spot": 2}
    run(world, op, until=560)
    spot_serving = [p for p in world.pods if not p.gone and p.capacity == "spot" and world.ready(p)]
    assert {p.node for p in spot_serving} == {"spot-c", "spot-d"}


def test_full_spot_nodes_fall_back_after_pending_seconds():
    world, op = fleet(startup=30, spare_spot=0, spare_ondemand=3)
    op.total = 4  # one more replica than the spot nodes can hold
    run(world, op, until=120)
    pending = [p for p in world.pods if p.capacity == "spot" and p.node is None and not p.gone]
    assert len(pending) == 1 and op.fallback.replicas == 0  # Pending 120 s: not yet
    run(world, op, until=122)
    assert op.fallback.replicas == 1 and world.replicas == {"ondemand": 2, "spot": 2}
