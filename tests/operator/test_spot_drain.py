"""plan_drain: one row per situation a draining pod can be in → the actions, in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from llmfleet.operator.spot.drain import after_eviction, clear_advisory, plan_advisory, plan_drain
from llmfleet.operator.spot.drain_state import (
    DRAIN_DEADLINE,
    DRAIN_STARTED,
    DRAIN_SURGE,
    EVICTION_ATTEMPTS,
    EVICTION_RETRY_AT,
    Annotate,
    Delete,
    DrainMarks,
    EngineDrain,
    Evict,
    PodDrain,
    PostDrain,
    RecordEvent,
    Surge,
    Wait,
)
from llmfleet.operator.spot.fleet_pods import (
    deployment_replicas,
    is_leaving,
    replicas_without_surge,
    serving_pods,
)
from llmfleet.operator.spot.notice import Notice

NOW = datetime(2026, 11, 22, tzinfo=UTC)
S = timedelta(seconds=1)
MARGIN, GRACE = 10, 5


def notice(seconds=120, kind="Interruption"):
    return Notice("n1", kind, "NodeTaint/karpenter.sh/disrupted", NOW + seconds * S, NOW, False)


def pod(
    grace=135,
    started=None,
    deadline=None,
    surge=None,
    attempts=0,
    retry_at=None,
    terminating=False,
    capacity="spot",
):
    return PodDrain(
        "p1",
        "n1",
        capacity,
        grace,
        terminating,
        DrainMarks(started, deadline, surge, attempts, retry_at),
    )


def kinds(actions):
    return [type(a).__name__ for a in actions]


def drain(draining=True, in_flight=0):
    return EngineDrain(draining=draining, in_flight=in_flight)


# (case, pod, notice seconds, now offset, engine, pdb_allows) → (action kinds, phase, detail check)
CASES = [
    (
        "120s notice, grace 135s > notice: start and evict at once with all the time left (110s)",
        pod(),
        120,
        0,
        drain(False, 2),
        None,
        ["Annotate", "Surge", "PostDrain", "RecordEvent", "Evict", "RecordEvent"],
        "Evicting",
        lambda a: a[4] == Evict("p1", 110) and a[5].reason == "RequestsAtRisk",
    ),
    (
        "600s notice: start, then wait (evict_by is 600-10-135 = 455s away)",
        pod(),
        600,
        0,
        drain(False, 2),
        None,
        ["Annotate", "Surge", "PostDrain", "RecordEvent", "Wait"],
        "Started",
        lambda a: (
            a[0].annotations
            == {
                DRAIN_STARTED: "2026-11-22T00:00:00Z",
                DRAIN_DEADLINE: "2026-11-22T00:10:00Z",
                DRAIN_SURGE: "spot",
            }
            and a[1] == Surge("spot", 1)
            and a[4].until == NOW + 2 * S
        ),
    ),
    (
        "requests still running, evict_by not reached: wait and poll",
        pod(started=NOW),
        600,
        30,
        drain(True, 3),
        None,
        ["Wait"],
        "Draining",
        lambda a: a[0].until == NOW + 32 * S,
    ),
    (
        "nothing in flight after the drain grace: evict with the pod's full grace",
        pod(started=NOW),
        600,
        30,
        drain(True, 0),
        None,
        ["Evict"],
        "Evicting",
        lambda a: a[0] == Evict("p1", 135),
    ),
    (
        "nothing in flight but inside the drain grace (load balancers may still send): wait out the grace",
        pod(started=NOW),
        600,
        2,
        drain(True, 0),
        None,
        ["Wait"],
        "Draining",
        lambda a: a[0].until == NOW + 4 * S,
    ),
    (
        "evict_by reached with requests running: evict, full grace, nothing at risk",
        pod(started=NOW),
        600,
        455,
        drain(True, 4),
        None,
        ["Evict"],
        "Evicting",
        lambda a: a[0] == Evict("p1", 135),
    ),
    (
        "the PDB allows nothing: record a refusal and back off, no doomed API call",
        pod(started=NOW),
        600,
        455,
        drain(True, 4),
        False,
        ["Annotate", "RecordEvent"],
        "Draining",
        lambda a: a[0].annotations == {EVICTION_ATTEMPTS: "1", EVICTION_RETRY_AT: "2026-11-22T00:07:36Z"},
    ),
    (
        "backing off after a 429",
        pod(started=NOW, attempts=2, retry_at=NOW + 460 * S),
        600,
        458,
        drain(True, 4),
        None,
        ["Wait"],
        "Draining",
        lambda a: a[0].until == NOW + 460 * S,
    ),
    (
        "5s before D-M: delete (the PDB no longer protects anything), requests at risk counted",
        pod(started=NOW, attempts=5),
        600,
        585,
        drain(True, 2),
        None,
        ["Delete", "RecordEvent", "RecordEvent"],
        "Deleting",
        lambda a: a[0] == Delete("p1", 5) and a[2].reason == "RequestsAtRisk" and "2 request" in a[2].message,
    ),
    (
        "GKE: 15s notice, margin 10s → delete at once with 5s grace, the running request is at risk",
        pod(),
        15,
        0,
        drain(False, 1),
        None,
        ["Annotate", "Surge", "PostDrain", "RecordEvent", "Delete", "RecordEvent", "RecordEvent"],
        "Deleting",
        lambda a: a[4] == Delete("p1", 5),
    ),
    (
        "evicted already: nothing more to do",
        pod(started=NOW, terminating=True),
        600,
        100,
        drain(True, 1),
        None,
        [],
        "Terminating",
        lambda a: True,
    ),
    (
        "the engine forgot it is draining (restarted): drain again",
        pod(started=NOW),
        600,
        30,
        drain(False, 1),
        None,
        ["PostDrain", "Wait"],
        "Draining",
        lambda a: True,
    ),
    (
        "an advisory already surged: no second surge",
        pod(surge="spot"),
        600,
        0,
        None,
        None,
        ["Annotate", "PostDrain", "RecordEvent", "Wait"],
        "Started",
        lambda a: DRAIN_SURGE not in a[0].annotations,
    ),
]


@pytest.mark.parametrize(
    "case, p, seconds, at, engine, pdb, expected, phase, check", CASES, ids=[c[0] for c in CASES]
)
def test_plan_drain(case, p, seconds, at, engine, pdb, expected, phase, check):
    plan = plan_drain(
        p, notice(seconds), NOW + at * S, margin=MARGIN, drain_grace=GRACE, engine=engine, pdb_allows=pdb
    )
    assert kinds(plan.actions) == expected
    assert plan.phase == phase
    assert check(plan.actions), plan.actions


def test_at_risk_is_the_in_flight_count_when_the_kill_comes_early():
    plan = plan_drain(pod(), notice(15), NOW, margin=MARGIN, drain_grace=GRACE, engine=drain(False, 3))
    assert plan.at_risk == 3
    plan = plan_drain(
        pod(started=NOW), notice(600), NOW + 455 * S, margin=MARGIN, drain_grace=GRACE, engine=drain(True, 3)
    )
    assert plan.at_risk == 0  # full grace: the engine's own budget, not the node, bounds the requests


def test_with_the_engines_estimates_only_the_requests_longer_than_the_grace_are_at_risk():
    # A 15 s notice with a 10 s margin leaves 5 s: of three requests in flight, the engine says
    # one needs 40 s more, one 4.5 s and one 0.2 s; only the first is cut.
    engine = EngineDrain(draining=False, in_flight=3, seconds_left=(40.0, 4.5, 0.2))
    plan = plan_drain(pod(), notice(15), NOW, margin=MARGIN, drain_grace=GRACE, engine=engine)
    assert plan.at_risk == 1
    at_risk = [a for a in plan.actions if isinstance(a, RecordEvent) and a.reason == "RequestsAtRisk"]
    assert len(at_risk) == 1 and "1 of 3 request(s)" in at_risk[0].message and "estimates" in at_risk[0].message
    # With the full grace, a request longer than the grace is still cut (by the engine's
    # --shutdown-timeout): counted, so the pool's requestsCut never hides one.
    long = EngineDrain(draining=True, in_flight=2, seconds_left=(500.0, 1.0))
    plan = plan_drain(pod(started=NOW), notice(600), NOW + 455 * S, margin=MARGIN, drain_grace=GRACE, engine=long)
    assert plan.at_risk == 1


def test_engine_drain_answers_are_read_leniently():
    assert EngineDrain.from_json({"draining": True, "in_flight": 2, "seconds_left": [3, 1.5]}).seconds_left == (3.0, 1.5)
    assert EngineDrain.from_json({"draining": True, "in_flight": 2}).seconds_left is None
    assert EngineDrain.from_json({"in_flight": 1, "seconds_left": ["x"]}).seconds_left is None
    assert EngineDrain.from_json({"in_flight": 1, "seconds_left": "soon"}).cut_by(5, 10) == 1


def test_an_engine_without_drain_is_evicted_on_the_timeline():
    plan = plan_drain(
        pod(), notice(600), NOW, margin=MARGIN, drain_grace=GRACE, engine=None, supports_drain=False
    )
    assert "PostDrain" not in kinds(plan.actions) and kinds(plan.actions)[-1] == "Wait"


def test_the_drain_continues_on_the_recorded_deadline_when_the_signal_goes():
    p = pod(started=NOW, deadline=NOW + 120 * S)
    plan = plan_drain(p, None, NOW + 106 * S, margin=MARGIN, drain_grace=GRACE, engine=drain(True, 1))
    assert plan.actions[0] == Delete("p1", 4)
    with pytest.raises(ValueError, match="nothing to drain for"):
        plan_drain(pod(), None, NOW, margin=MARGIN, drain_grace=GRACE, engine=None)


def test_an_earlier_notice_overrides_the_recorded_deadline():
    p = pod(started=NOW, deadline=NOW + 600 * S)
    plan = plan_drain(p, notice(60), NOW + 46 * S, margin=MARGIN, drain_grace=GRACE, engine=drain(True, 1))
    assert plan.actions[0] == Delete("p1", 4)


# (attempts before, result) → retry delay in seconds (None: nothing to retry)
BACKOFF = [
    (0, "TooManyRequests", 1),
    (1, "TooManyRequests", 2),
    (2, "Error", 4),
    (9, "TooManyRequests", 5),
    (0, "Evicted", None),
    (3, "NotFound", None),
]


@pytest.mark.parametrize("attempts, result, delay", BACKOFF)
def test_after_eviction(attempts, result, delay):
    actions = after_eviction(pod(started=NOW, attempts=attempts), result, NOW)
    if delay is None:
        assert all(isinstance(a, RecordEvent) and a.type == "Normal" for a in actions)
        return
    annotate, event = actions
    assert annotate.annotations[EVICTION_ATTEMPTS] == str(attempts + 1)
    assert annotate.annotations[EVICTION_RETRY_AT] == (NOW + delay * S).isoformat().replace("+00:00", "Z")
    assert event.type == "Warning" and event.reason == "EvictionRefused"


def test_retry_never_past_the_delete_point():
    (annotate, _) = after_eviction(pod(started=NOW, attempts=4), "TooManyRequests", NOW, stop_by=NOW + 8 * S)
    assert annotate.annotations[EVICTION_RETRY_AT] == "2026-11-22T00:00:03Z"


def test_advisory_starts_a_replacement_once_and_clears_it():
    actions = plan_advisory(pod(), notice(kind="Advisory"))
    assert kinds(actions) == ["Annotate", "Surge", "RecordEvent"] and actions[1] == Surge("spot", 1)
    assert plan_advisory(pod(surge="spot"), notice(kind="Advisory")) == []
    assert clear_advisory(pod(surge="spot")) == [Annotate("p1", {DRAIN_SURGE: None}), Surge("spot", -1)]
    assert clear_advisory(pod(surge="spot", started=NOW)) == []  # an interruption took over


def k8s_pod(name, capacity, annotations=None, deleting=False):
    meta = {"name": name, "labels": {"llmfleet.dev/capacity": capacity}, "annotations": annotations or {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-22T00:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 135}}


def test_autoscaler_sees_draining_pods_as_leaving_and_deployments_keep_their_replica():
    pods = [
        k8s_pod("a", "spot", {DRAIN_STARTED: "2026-11-22T00:00:00Z", DRAIN_SURGE: "spot"}),
        k8s_pod("b", "spot"),
        k8s_pod("c", "spot", {DRAIN_SURGE: "spot"}),  # advisory: replacement started, still serving
        k8s_pod(
            "d", "ondemand", {DRAIN_STARTED: "2026-11-22T00:00:00Z", DRAIN_SURGE: "ondemand"}, deleting=True
        ),
        k8s_pod("e", "ondemand"),
    ]
    assert [is_leaving(p) for p in pods] == [True, False, False, True, False]
    assert [p["metadata"]["name"] for p in serving_pods(pods)] == ["b", "c", "e"]
    # The split (1 on-demand, 2 spot) plus one kept replica per drained/advised pod not yet terminating.
    assert deployment_replicas((1, 2), pods) == {"ondemand": 1, "spot": 4}
    # The autoscaler sees the 3 it asked for, not the 5 the Deployments run.
    assert replicas_without_surge(5, pods) == 3


def test_pod_drain_from_a_pod_object():
    p = PodDrain.from_pod(
        k8s_pod("a", "spot", {DRAIN_STARTED: "2026-11-22T00:00:00Z", EVICTION_ATTEMPTS: "x"})
    )
    assert p == PodDrain("a", "n1", "spot", 135, False, DrainMarks(started=NOW))
    assert isinstance(PostDrain("a"), PostDrain) and isinstance(Wait(NOW, ""), Wait)


def test_a_service_without_a_pool_drains_too_and_surges_its_one_deployment():
    bare = {"metadata": {"name": "x"}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 135}}
    p = PodDrain.from_pod(bare)
    assert p.capacity == "any"
    plan = plan_drain(p, notice(600), NOW, margin=MARGIN, drain_grace=GRACE, engine=None)
    assert Surge("any", 1) in plan.actions


def test_an_advisory_passed_by_mistake_drains_nothing_new():
    with pytest.raises(ValueError, match="nothing to drain for"):
        plan_drain(pod(), notice(kind="Advisory"), NOW, margin=MARGIN, drain_grace=GRACE, engine=None)
    started = pod(started=NOW, deadline=NOW + 600 * S)
    plan = plan_drain(
        started,
        notice(kind="Advisory"),
        NOW + 10 * S,
        margin=MARGIN,
        drain_grace=GRACE,
        engine=drain(True, 1),
    )
    assert kinds(plan.actions) == ["Wait"]
