"""Stabilization windows and rate limits, row by row as the HPA's TestScalingWithRules reads.

Each row: behavior, current, the stabilized recommendation, min/max and recent scale
events → replicas and the ScalingLimited reason.
"""

from datetime import UTC, datetime, timedelta

import pytest
from llmfleet.operator.api.hpa_behavior import HPABehavior
from llmfleet.operator.api.scaling_status import Recommendation, ScaleEvent
from llmfleet.operator.scaling.behavior import (
    limit_scale_rate,
    record_scale_event,
    scale_down_limit,
    scale_up_limit,
    stabilize_recommendation,
)

NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)


def ago(seconds):
    return NOW - timedelta(seconds=seconds)


def behavior(up=None, down=None):
    raw = {}
    if up is not None:
        raw["scaleUp"] = up
    if down is not None:
        raw["scaleDown"] = down
    return HPABehavior.model_validate(raw)


def rules(*policies, select="Max", window=None):
    out = {
        "selectPolicy": select,
        "policies": [{"type": t, "value": v, "periodSeconds": p} for t, v, p in policies],
    }
    if window is not None:
        out["stabilizationWindowSeconds"] = window
    return out


def up(n, seconds_ago):
    return ScaleEvent(timestamp=ago(seconds_ago), replica_change=n, direction="Up")


def down(n, seconds_ago):
    return ScaleEvent(timestamp=ago(seconds_ago), replica_change=n, direction="Down")


RATE_CASES = [
    # (name, behavior, current, desired, min, max, events, expected, reason)
    ("defaults: double beats +4", behavior(), 10, 50, 1, 1000, [], 20, "ScaleUpLimit"),
    ("defaults: +4 beats double", behavior(), 1, 10, 1, 1000, [], 5, "ScaleUpLimit"),
    ("defaults: within the rate", behavior(), 4, 8, 1, 1000, [], 8, "DesiredWithinRange"),
    ("defaults: scale-down any amount", behavior(), 10, 1, 1, 1000, [], 1, "DesiredWithinRange"),
    (
        "selectPolicy Min on scale-up",
        behavior(up=rules(("Percent", 100, 15), ("Pods", 4, 15), select="Min")),
        10,
        50,
        1,
        1000,
        [],
        14,
        "ScaleUpLimit",
    ),
    (
        "Percent scale-up rounds up: ceil(3 x 1.1)",
        behavior(up=rules(("Percent", 10, 60))),
        3,
        10,
        1,
        100,
        [],
        4,
        "ScaleUpLimit",
    ),
    (
        "Percent scale-up rounds up: 1 pod at 1% still grows",
        behavior(up=rules(("Percent", 1, 60))),
        1,
        10,
        1,
        100,
        [],
        2,
        "ScaleUpLimit",
    ),
    (
        "Percent scale-down truncates: trunc(7 x 0.9)",
        behavior(down=rules(("Percent", 10, 60))),
        7,
        1,
        1,
        100,
        [],
        6,
        "ScaleDownLimit",
    ),
    (
        "Percent scale-down truncates: trunc(10 x 0.85)",
        behavior(down=rules(("Percent", 15, 60))),
        10,
        1,
        1,
        100,
        [],
        8,
        "ScaleDownLimit",
    ),
    ("Pods scale-down", behavior(down=rules(("Pods", 2, 60))), 10, 1, 1, 100, [], 8, "ScaleDownLimit"),
    (
        "selectPolicy Min on scale-down",
        behavior(down=rules(("Pods", 2, 60), ("Percent", 50, 60), select="Min")),
        10,
        1,
        1,
        100,
        [],
        8,
        "ScaleDownLimit",
    ),
    (
        "selectPolicy Max on scale-down",
        behavior(down=rules(("Pods", 2, 60), ("Percent", 50, 60))),
        10,
        1,
        1,
        100,
        [],
        5,
        "ScaleDownLimit",
    ),
    (
        "scale-up Disabled",
        behavior(up=rules(("Pods", 4, 15), select="Disabled")),
        5,
        20,
        1,
        100,
        [],
        5,
        "ScaleUpLimit",
    ),
    (
        "scale-down Disabled",
        behavior(down=rules(("Pods", 4, 15), select="Disabled")),
        5,
        1,
        1,
        100,
        [],
        5,
        "ScaleDownLimit",
    ),
    ("clamped to maxReplicas", behavior(), 5, 50, 1, 8, [], 8, "TooManyReplicas"),
    ("clamped to minReplicas", behavior(), 5, 1, 3, 100, [], 3, "TooFewReplicas"),
    # Events inside the period count against it; one exactly a period old does not.
    (
        "scale-up events use the period",
        behavior(up=rules(("Pods", 4, 60))),
        8,
        20,
        1,
        100,
        [up(4, 30)],
        8,
        "ScaleUpLimit",
    ),
    (
        "scale-up event a full period old is gone",
        behavior(up=rules(("Pods", 4, 60))),
        8,
        20,
        1,
        100,
        [up(4, 60)],
        12,
        "ScaleUpLimit",
    ),
    (
        "two scale-ups within one period add up",
        behavior(up=rules(("Pods", 4, 60))),
        10,
        20,
        1,
        100,
        [up(2, 50), up(2, 20)],
        10,
        "ScaleUpLimit",
    ),
    (
        "scale-down events use the period",
        behavior(down=rules(("Percent", 50, 60))),
        5,
        1,
        1,
        100,
        [down(5, 10)],
        5,
        "ScaleDownLimit",
    ),
    (
        "scale-up period start counts scale-downs",
        behavior(up=rules(("Pods", 4, 60))),
        6,
        20,
        1,
        100,
        [down(2, 10)],
        12,
        "ScaleUpLimit",
    ),
    (
        "scale-down period start counts scale-ups",
        behavior(down=rules(("Pods", 2, 60))),
        8,
        1,
        1,
        100,
        [up(3, 10)],
        3,
        "ScaleDownLimit",
    ),
]


@pytest.mark.parametrize(
    "name,beh,current,desired,lo,hi,events,expected,reason", RATE_CASES, ids=[c[0] for c in RATE_CASES]
)
def test_limit_scale_rate(name, beh, current, desired, lo, hi, events, expected, reason):
    limited = limit_scale_rate(beh, current, desired, lo, hi, events, NOW)
    assert (limited.replicas, limited.reason) == (expected, reason)
    assert limited.limited == (reason != "DesiredWithinRange")


def test_limits_never_reverse_the_direction():
    # Recent scale-ups larger than the policy allows: the raw limit is below current.
    beh = behavior(up=rules(("Pods", 1, 60)))
    assert scale_up_limit(10, [up(5, 10)], beh.scale_up, NOW) == 6
    assert limit_scale_rate(beh, 10, 20, 1, 100, [up(5, 10)], NOW).replicas == 10
    beh = behavior(down=rules(("Pods", 1, 60)))
    assert scale_down_limit(5, [down(5, 10)], beh.scale_down, NOW) == 9
    assert limit_scale_rate(beh, 5, 1, 1, 100, [down(5, 10)], NOW).replicas == 5


def rec(replicas, seconds_ago):
    return Recommendation(timestamp=ago(seconds_ago), replicas=replicas)


STABILIZE_CASES = [
    # (name, behavior, current, desired, recommendations, expected, reason)
    (
        "scale-down holds the highest in 300s",
        behavior(),
        8,
        3,
        [rec(8, 200), rec(6, 100)],
        8,
        "ScaleDownStabilized",
    ),
    (
        "scale-down to the highest still in window",
        behavior(),
        8,
        3,
        [rec(8, 300), rec(5, 100)],
        5,
        "ScaleDownStabilized",
    ),
    (
        "scale-down once the window has passed",
        behavior(),
        8,
        3,
        [rec(8, 301), rec(3, 100)],
        3,
        "ReadyForNewScale",
    ),
    ("scale-up is immediate by default", behavior(), 2, 10, [rec(2, 10), rec(2, 5)], 10, "ReadyForNewScale"),
    (
        "scale-up window takes the lowest",
        behavior(up=rules(("Pods", 4, 15), window=60)),
        4,
        10,
        [rec(4, 30), rec(8, 15)],
        4,
        "ScaleUpStabilized",
    ),
    (
        "scale-up window: lowest above current",
        behavior(up=rules(("Pods", 4, 15), window=60)),
        4,
        10,
        [rec(6, 30), rec(8, 15)],
        6,
        "ScaleUpStabilized",
    ),
    (
        "no window, no history",
        behavior(down=rules(("Percent", 100, 15), window=0)),
        8,
        3,
        [],
        3,
        "ReadyForNewScale",
    ),
]


@pytest.mark.parametrize(
    "name,beh,current,desired,recs,expected,reason", STABILIZE_CASES, ids=[c[0] for c in STABILIZE_CASES]
)
def test_stabilize_recommendation(name, beh, current, desired, recs, expected, reason):
    stabilized = stabilize_recommendation(beh, current, desired, recs, NOW)
    assert (stabilized.replicas, stabilized.reason) == (expected, reason)


def test_stabilization_records_the_unstabilized_recommendation_and_prunes():
    stabilized = stabilize_recommendation(behavior(), 8, 3, [rec(9, 400), rec(8, 200)], NOW)
    assert [(r.replicas, r.timestamp) for r in stabilized.recommendations] == [(8, ago(200)), (3, NOW)]


def test_record_scale_event_keeps_the_longest_period_of_either_direction():
    beh = behavior(up=rules(("Pods", 4, 15)), down=rules(("Percent", 100, 120)))
    events = record_scale_event(beh, [up(2, 100), up(1, 130)], 6, 10, NOW)
    assert [(e.direction, e.replica_change, e.timestamp) for e in events] == [
        ("Up", 2, ago(100)),
        ("Up", 4, NOW),
    ]
    events = record_scale_event(beh, events, 10, 7, NOW)
    assert events[-1].direction == "Down" and events[-1].replica_change == 3
