"""Scale to and from zero (scaling/zero.py): one row per situation, with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from llmfleet.operator.api.autoscalepolicy import AutoscalePolicySpec
from llmfleet.operator.api.metric import MetricType
from llmfleet.operator.api.scaling_status import ScalingStatus
from llmfleet.operator.scaling.replica_calculator import PodMetric
from llmfleet.operator.scaling.zero import (
    SCALE_FROM_ZERO_REASON,
    Demand,
    recommend_with_zero,
    with_held_queue,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def policy(min_replicas=0, idle=300, down_window=0):
    return AutoscalePolicySpec.model_validate({
        "minReplicas": min_replicas, "maxReplicas": 4, "scaleToZeroIdleSeconds": idle,
        "metric": {"type": "QueueDepth", "targetAverageValue": 2},
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": down_window}}})


def idle_pods(n):
    return [PodMetric(f"p{i}", ready=True, value=0.0) for i in range(n)]


def ago(seconds):
    return NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("case", "spec", "current", "pods", "demand", "last_active", "replicas"),
    [
        ("at zero, a held request: wake one replica", policy(), 0, [], Demand(held=3), None, 1),
        ("at zero, nothing held: stay at zero", policy(), 0, [], Demand(), ago(1000), 0),
        ("idle replica inside the window: keep one", policy(), 1, idle_pods(1), Demand(), ago(100), 1),
        ("idle replica past the window: go to zero", policy(), 1, idle_pods(1), Demand(), ago(301), 0),
        ("a request running: not idle, whatever the clock", policy(), 1, idle_pods(1), Demand(in_flight=1),
         ago(10_000), 1),
        ("a request held by a router: not idle", policy(), 1, idle_pods(1), Demand(held=1), ago(10_000), 1),
        ("idle clock unknown (operator restart): the window starts now", policy(), 1, idle_pods(1), Demand(),
         None, 1),
        ("minReplicas 1: never zero, whatever is idle", policy(min_replicas=1), 1, idle_pods(1), Demand(),
         ago(10_000), 1),
        # 2 waiting + 6 held over 2 pods = average 4, target 2: ceil(2 x 4 / 2) = 4
        ("held requests join the queue the HPA sees", policy(), 2,
         [PodMetric("a", True, 1.0), PodMetric("b", True, 1.0)], Demand(held=6, in_flight=2), ago(1), 4),
    ],
)
def test_recommend_with_zero(case, spec, current, pods, demand, last_active, replicas):
    decision, _ = recommend_with_zero(spec, current, pods, ScalingStatus(), NOW, demand, last_active)
    assert decision.replicas == replicas, case


def test_scale_from_zero_says_why_in_the_history():
    decision, clock = recommend_with_zero(policy(), 0, [], ScalingStatus(), NOW, Demand(held=2), None)
    assert decision.rescale and decision.reason == SCALE_FROM_ZERO_REASON
    assert decision.status.decisions[-1].reason == SCALE_FROM_ZERO_REASON
    assert clock == NOW


def test_the_scale_down_window_still_applies_on_the_way_to_zero():
    """Idle past its window, a policy with a 300 s scale-down window still holds the replica while
    a recent recommendation asked for it (the HPA's own protection against flapping)."""
    spec = policy(down_window=300)
    first, _ = recommend_with_zero(spec, 1, idle_pods(1), ScalingStatus(), ago(60), Demand(in_flight=1), ago(60))
    later, _ = recommend_with_zero(spec, 1, idle_pods(1), first.status, NOW, Demand(), ago(400))
    assert later.replicas == 1


def test_kv_usage_is_not_a_queue():
    pods = [PodMetric("a", True, 0.5)]
    assert with_held_queue(pods, 4, MetricType.KV_CACHE_USAGE) == pods
    assert with_held_queue(pods, 4, MetricType.IN_FLIGHT)[0].value == 4.5


def test_min_replicas_zero_is_valid_api():
    assert AutoscalePolicySpec.model_validate({"minReplicas": 0, "maxReplicas": 1,
                                               "metric": {"targetAverageValue": 1}}).min_replicas == 0
