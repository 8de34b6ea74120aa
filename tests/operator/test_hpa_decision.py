"""recommend_replicas end to end: bounds, metric proposal, windows, limits, history, conditions."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from llmfleet.operator.api.autoscalepolicy import AutoscalePolicySpec
from llmfleet.operator.api.common import Condition
from llmfleet.operator.api.scaling_status import Recommendation, ScalingStatus
from llmfleet.operator.scaling import PodMetric, merge_conditions, recommend_replicas

NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)  # a Monday


def spec(**overrides):
    raw = {"minReplicas": 1, "maxReplicas": 20, "metric": {"type": "QueueDepth", "targetAverageValue": 4}}
    raw.update(overrides)
    return AutoscalePolicySpec.model_validate(raw)


def ready(*values):
    return [PodMetric(f"pod-{i}", ready=True, value=v) for i, v in enumerate(values)]


def starting(n, offset=100):
    return [PodMetric(f"pod-{offset + i}", ready=False) for i in range(n)]


def history(*recs, events=()):
    return ScalingStatus(
        recommendations=[Recommendation(timestamp=NOW - timedelta(seconds=s), replicas=r) for r, s in recs],
        scale_events=list(events),
    )


def conditions(decision):
    return {c.type: (c.status, c.reason) for c in decision.conditions}


CASES = [
    # (name, spec, current, pods, previous status, expected replicas, expected reason)
    (
        "burst: rate-limited scale-up",
        spec(),
        2,
        ready(20, 20),
        history((2, 15)),
        6,
        "QueueDepth above target",
    ),
    ("at target: hold", spec(), 3, ready(4, 4, 4), history((3, 15)), 3, ""),
    ("lull inside the window: stabilized", spec(), 6, ready(0, 0, 0, 0, 0, 0), history((6, 100)), 6, ""),
    (
        "lull after the window: scale down",
        spec(),
        6,
        ready(0, 0, 0, 0, 0, 0),
        history((6, 301), (1, 200)),
        1,
        "QueueDepth below target",
    ),
    (
        "clamped to maxReplicas",
        spec(maxReplicas=5),
        4,
        ready(40, 40, 40, 40),
        history((4, 15)),
        5,
        "QueueDepth above target",
    ),
    (
        "clamped to minReplicas",
        spec(minReplicas=2),
        4,
        ready(0, 0, 0, 0),
        history((4, 400)),
        2,
        "QueueDepth below target",
    ),
    (
        "above maxReplicas: straight down to it",
        spec(maxReplicas=3),
        6,
        ready(40) * 6,
        history((6, 15)),
        3,
        "Current number of replicas above maxReplicas",
    ),
    (
        "below minReplicas: straight up to it",
        spec(minReplicas=4),
        1,
        ready(0),
        history((1, 15)),
        4,
        "Current number of replicas below minReplicas",
    ),
    (
        "starting pods damp a scale-up",
        spec(),
        4,
        ready(12, 12) + starting(2),
        history((4, 15)),
        6,
        "QueueDepth above target",
    ),
    ("starting pods are not idle", spec(), 4, ready(5, 5) + starting(2), history((4, 15)), 4, ""),
    (
        "Hold: metrics missing keeps the count",
        spec(),
        3,
        [PodMetric("a", True), PodMetric("b", True)],
        history((5, 100)),
        3,
        "",
    ),
    (
        "Fallback up: fallbackReplicas",
        spec(onMetricsUnavailable="Fallback", fallbackReplicas=6),
        2,
        [PodMetric("a", True), PodMetric("b", True)],
        history((2, 15)),
        6,
        "metrics unavailable, fallbackReplicas 6",
    ),
    (
        "Fallback down waits for the window",
        spec(onMetricsUnavailable="Fallback", fallbackReplicas=2),
        6,
        [PodMetric("a", True)],
        history((6, 100)),
        6,
        "",
    ),
    (
        "no ready pod yet: hold even with Fallback",
        spec(onMetricsUnavailable="Fallback", fallbackReplicas=6),
        2,
        starting(2),
        history((2, 15)),
        2,
        "",
    ),
    (
        "first sync: seeded with current, no early scale-down",
        spec(),
        5,
        ready(0, 0, 0, 0, 0),
        ScalingStatus(),
        5,
        "",
    ),
    (
        "InFlight metric",
        spec(metric={"type": "InFlight", "targetAverageValue": 8}),
        2,
        ready(16, 16),
        history((2, 15)),
        4,
        "InFlight above target",
    ),
]


@pytest.mark.parametrize(
    "name,sp,current,pod_list,previous,expected,reason", CASES, ids=[c[0] for c in CASES]
)
def test_recommend_replicas(name, sp, current, pod_list, previous, expected, reason):
    decision = recommend_replicas(sp, current, pod_list, previous, NOW)
    assert decision.replicas == expected
    assert decision.reason == reason
    assert decision.rescale == (expected != current)


def test_conditions_say_why():
    d = recommend_replicas(spec(), 2, ready(20, 20), history((2, 15)), NOW)
    assert conditions(d) == {
        "MetricsAvailable": ("True", "ValidMetricFound"),
        "AbleToScale": ("True", "ReadyForNewScale"),
        "ScalingLimited": ("True", "ScaleUpLimit"),
    }
    hold = recommend_replicas(spec(), 3, [PodMetric("a", True)], history(), NOW)
    assert conditions(hold) == {"MetricsAvailable": ("False", "HoldingReplicas")}
    fb = spec(onMetricsUnavailable="Fallback", fallbackReplicas=6)
    assert conditions(recommend_replicas(fb, 2, [PodMetric("a", True)], history(), NOW))[
        "MetricsAvailable"
    ] == (
        "False",
        "UsingFallbackReplicas",
    )
    assert conditions(recommend_replicas(fb, 2, starting(2), history(), NOW))["MetricsAvailable"] == (
        "False",
        "NoReadyPods",
    )
    stab = recommend_replicas(spec(), 6, ready(0) * 6, history((6, 100)), NOW)
    assert conditions(stab)["AbleToScale"] == ("True", "ScaleDownStabilized")


def test_hold_records_no_recommendation():
    previous = history((5, 100))
    d = recommend_replicas(spec(), 3, [PodMetric("a", True)], previous, NOW)
    assert d.status.recommendations == previous.recommendations
    assert d.metric_replicas is None and d.metric_average is None


def test_status_records_the_scale():
    d = recommend_replicas(spec(), 2, ready(20, 20), history((2, 15)), NOW)
    s = d.status
    assert (s.desired_replicas, s.current_metric, s.metric_type, s.last_scale_time) == (
        6,
        20,
        "QueueDepth",
        NOW,
    )
    assert [(r.from_, r.to, r.reason) for r in s.decisions] == [(2, 6, "QueueDepth above target")]
    assert [(e.direction, e.replica_change) for e in s.scale_events] == [("Up", 4)]
    assert s.recommendations[-1] == Recommendation(timestamp=NOW, replicas=10)
    assert d.metric_replicas == 10


def test_decision_history_is_bounded():
    status = ScalingStatus()
    replicas = 1
    for i in range(30):
        load = 40 if i % 2 == 0 else 0
        sp = spec(behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
        d = recommend_replicas(
            sp, replicas, ready(*([load] * replicas)), status, NOW + timedelta(seconds=15 * i)
        )
        status, replicas = d.status, d.replicas
    assert len(status.decisions) == 10
    assert len(status.recommendations) <= 2
    assert all(NOW + timedelta(seconds=15 * 29 - 15) <= e.timestamp for e in status.scale_events)


def test_schedule_raises_the_floor():
    sp = spec(schedules=[{"name": "peak", "start": "11:00", "end": "13:00", "minReplicas": 5}])
    d = recommend_replicas(sp, 2, ready(0, 0), history((2, 15)), NOW)
    assert d.replicas == 5
    assert d.reason == "Current number of replicas below minReplicas (schedules in force: peak)"
    assert d.bounds.active_schedules == ["peak"]


def run(sp, loads, roundtrip):
    """Replay a load sequence with history kept in memory, or through the wire (a restart each sync)."""
    status, replicas, out = ScalingStatus(), 2, []
    for i, load in enumerate(loads):
        if roundtrip:
            status = ScalingStatus.from_status(json.loads(json.dumps(status.to_wire())))
        d = recommend_replicas(
            sp, replicas, ready(*([load / replicas] * replicas)), status, NOW + timedelta(seconds=15 * i)
        )
        status, replicas = d.status, d.replicas
        out.append(replicas)
    return out, status


def test_history_survives_a_restart_through_status():
    loads = [8] * 4 + [80] * 6 + [0] * 30
    in_memory, _ = run(spec(), loads, roundtrip=False)
    restarted, status = run(spec(), loads, roundtrip=True)
    assert restarted == in_memory
    assert max(in_memory) == 20 and in_memory[-1] == 1
    wire = status.to_wire()
    assert set(wire) >= {"desiredReplicas", "currentMetric", "decisions", "recommendations", "scaleEvents"}
    assert set(wire["decisions"][0]) == {"time", "from", "to", "reason"}
    assert wire["decisions"][0]["time"].endswith("Z")


def test_restart_does_not_scale_down_early():
    # A burst 200s ago recommended 10; the operator restarts and sees an idle fleet.
    previous = ScalingStatus.from_status(
        {"recommendations": [{"timestamp": "2026-03-02T11:56:40Z", "replicas": 10}], "scaleEvents": []}
    )
    d = recommend_replicas(spec(), 10, ready(*[0] * 10), previous, NOW)
    assert d.replicas == 10


def test_restart_does_not_forget_a_burst():
    # Four pods were added 5s ago; the scale-up policy (Pods 4 per 60s) is spent.
    sp = spec(behavior={"scaleUp": {"policies": [{"type": "Pods", "value": 4, "periodSeconds": 60}]}})
    previous = ScalingStatus.from_status(
        {
            "recommendations": [],
            "scaleEvents": [{"timestamp": "2026-03-02T11:59:55Z", "replicaChange": 4, "direction": "Up"}],
        }
    )
    d = recommend_replicas(sp, 8, ready(*[40] * 8), previous, NOW)
    assert d.replicas == 8
    assert conditions(d)["ScalingLimited"] == ("True", "ScaleUpLimit")


def test_merge_conditions_keeps_transition_time_when_status_is_unchanged():
    old = [
        Condition(type="MetricsAvailable", status="True", reason="ValidMetricFound", last_transition_time=NOW)
    ]
    later = NOW + timedelta(minutes=5)
    same = [
        Condition(
            type="MetricsAvailable", status="True", reason="ValidMetricFound", last_transition_time=later
        )
    ]
    flip = [
        Condition(
            type="MetricsAvailable", status="False", reason="HoldingReplicas", last_transition_time=later
        )
    ]
    assert merge_conditions(old, same)[0].last_transition_time == NOW
    assert merge_conditions(old, flip)[0].last_transition_time == later
