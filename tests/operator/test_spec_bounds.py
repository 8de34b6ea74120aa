"""Specs the API server used to accept but the reconciler could not handle: each now has a
bound in the model (and so in the CRD's schema or CEL rules, `make crds`) or is handled, and
status stays within its own bounds under a mass interruption."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from llmfleet.operator.adapters.scrape import parse_exposition
from llmfleet.operator.api.autoscalepolicy import AutoscalePolicySpec
from llmfleet.operator.api.crd import render_crd
from llmfleet.operator.api.llmservice import CRD as LLMS_CRD
from llmfleet.operator.api.llmservice import LLMServiceSpec
from llmfleet.operator.api.llmservice_status import LLMServiceStatus
from llmfleet.operator.api.scaling_status import Recommendation, ScalingStatus
from llmfleet.operator.api.spotpool import CRD as POOL_CRD
from llmfleet.operator.api.spotpool import SpotPoolSpec, SpotPoolStatus
from llmfleet.operator.scaling import recommend_replicas
from llmfleet.operator.scaling.behavior import stabilize_recommendation
from llmfleet.operator.scaling.replica_calculator import PodMetric
from llmfleet.operator.spot.drain_state import DRAIN_DEADLINE, DRAIN_STARTED
from llmfleet.operator.spot.notice import Notice
from llmfleet.operator.spot.pool_notices import interrupted_nodes_status
from llmfleet.operator.sync.spot_status import draining_status, interrupted_condition
from pydantic import ValidationError

NOW = datetime(2026, 11, 22, tzinfo=UTC)
POLICY = {"minReplicas": 1, "maxReplicas": 10, "metric": {"type": "QueueDepth", "targetAverageValue": 4}}
POOL = {"spot": {"nodeSelector": {"karpenter.sh/capacity-type": "spot"}}}


def service(**spec):
    return {"model": {"uri": "hf://org/model"}, **spec}


# (case, model, the object) → refused?
SPECS = [
    ("maxReplicas a million", AutoscalePolicySpec, {**POLICY, "maxReplicas": 1_000_000}, True),
    ("minReplicas above any node count", AutoscalePolicySpec, {**POLICY, "minReplicas": 5000, "maxReplicas": 5000},
     True),
    ("a schedule's maxReplicas a million", AutoscalePolicySpec,
     {**POLICY, "schedules": [{"name": "w", "start": "08:00", "end": "18:00", "maxReplicas": 1_000_000}]}, True),
    ("maxReplicas 1000", AutoscalePolicySpec, {**POLICY, "maxReplicas": 1000}, False),
    ("targetAverageValue 1e-300 (ratio overflows)", AutoscalePolicySpec,
     {**POLICY, "metric": {"type": "QueueDepth", "targetAverageValue": 1e-300}}, True),
    ("targetAverageValue 0.001", AutoscalePolicySpec,
     {**POLICY, "metric": {"type": "KVCacheUsage", "targetAverageValue": 0.001}}, False),
    ("file:///tmp (the pod's /tmp: a duplicate mountPath)", LLMServiceSpec, service(model={"uri": "file:///tmp"}),
     True),
    ("file:///tmp/models (mounted on top of /tmp)", LLMServiceSpec, service(model={"uri": "file:///tmp/models"}),
     False),
    ("file:///var/cache/llmfleet (the cache's mountPath)", LLMServiceSpec,
     service(model={"uri": "file:///var/cache/llmfleet"}), True),
    ("file:/// (the node's root)", LLMServiceSpec, service(model={"uri": "file:///"}), True),
    ("file:///proc/1/root", LLMServiceSpec, service(model={"uri": "file:///proc/1/root"}), True),
    ("file:///var/run/secrets/llmfleet", LLMServiceSpec, service(model={"uri": "file:///var/run/secrets/llmfleet"}),
     True),
    ("file:///var/lib/models", LLMServiceSpec, service(model={"uri": "file:///var/lib/models"}), False),
    ("memory -1Gi", LLMServiceSpec, service(resources={"memory": "-1Gi"}), True),
    ("cpu -500m", LLMServiceSpec, service(resources={"cpu": "-500m"}), True),
    ("cpu -2 as a number", LLMServiceSpec, service(resources={"cpu": -2}), True),
    ("memory 16Gi", LLMServiceSpec, service(resources={"memory": "16Gi", "cpu": 2}), False),
    ("drainTimeoutSeconds 0", LLMServiceSpec, service(drainTimeoutSeconds=0), True),
    ("drainTimeoutSeconds 1", LLMServiceSpec, service(drainTimeoutSeconds=1), False),
    ("on-demand selector containing the spot one", SpotPoolSpec,
     {**POOL, "onDemand": {"nodeSelector": {"karpenter.sh/capacity-type": "spot", "zone": "a"}}}, True),
    ("on-demand selector equal to the spot one", SpotPoolSpec,
     {**POOL, "onDemand": {"nodeSelector": {"karpenter.sh/capacity-type": "spot"}}}, True),
    ("disjoint selectors", SpotPoolSpec,
     {**POOL, "onDemand": {"nodeSelector": {"karpenter.sh/capacity-type": "on-demand"}}}, False),
    ("on-demand sharing a label but not all", SpotPoolSpec,
     {"spot": {"nodeSelector": {"gpu": "a100", "spot": "true"}}, "onDemand": {"nodeSelector": {"gpu": "a100"}}},
     False),
]


@pytest.mark.parametrize("case, model, raw, refused", SPECS, ids=[c[0] for c in SPECS])
def test_bounds(case, model, raw, refused):
    if refused:
        with pytest.raises(ValidationError):
            model.model_validate(raw)
    else:
        model.model_validate(raw)


def _validations(schema: dict) -> list[str]:
    out: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            out.extend(v["rule"] for v in node.get("x-kubernetes-validations", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return out


def test_the_crds_carry_the_same_bounds():
    llms = render_crd(LLMS_CRD)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = llms["properties"]["spec"]["properties"]
    assert spec["drainTimeoutSeconds"]["minimum"] == 1
    assert spec["resources"]["properties"]["memory"]["pattern"].startswith("^((")  # no sign
    assert any("'/var/cache/llmfleet'" in r for r in _validations(spec["model"]))
    spot = llms["properties"]["status"]["properties"]["spot"]["properties"]
    assert spot["drainingPods"]["maxItems"] == 64 and "drainingPodCount" in spot
    pool = render_crd(POOL_CRD)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert any("self.spot.nodeSelector.all(" in r for r in _validations(pool["properties"]["spec"]))


@pytest.mark.parametrize("reading", [float("inf"), 1e308, 1e300])
def test_an_absurd_queue_reading_scales_to_max_not_overflow(reading):
    policy = AutoscalePolicySpec.model_validate({**POLICY, "metric": {"type": "QueueDepth",
                                                                      "targetAverageValue": 0.001}})
    pods = [PodMetric("p0", True, reading), PodMetric("p1", True, 1.0)]
    decision = recommend_replicas(policy, 2, pods, ScalingStatus(), NOW)  # no OverflowError
    assert decision.metric_replicas == 1_000_000 and 2 < decision.replicas <= 10  # up as fast as allowed
    assert decision.metric_average < float("inf")  # status (JSON) can carry it
    ScalingStatus.model_validate(decision.status.to_wire())


def test_an_infinite_gauge_is_no_reading():
    assert parse_exposition("llmfleet_engine_requests_waiting +Inf\nllmfleet_engine_requests_running 2\n") == {
        "llmfleet_engine_requests_running": 2.0}


def test_a_steady_load_keeps_one_recommendation_not_one_per_sync():
    policy = AutoscalePolicySpec.model_validate({**POLICY, "syncPeriodSeconds": 1,
                                                 "behavior": {"scaleDown": {"stabilizationWindowSeconds": 3600}}})
    status = ScalingStatus()
    for second in range(3600):
        status = recommend_replicas(policy, 3, [PodMetric("p", True, 4.0)] * 3, status,
                                    NOW + timedelta(seconds=second)).status
    assert len(status.recommendations) <= 2


def test_compaction_decides_exactly_as_the_whole_history():
    rng = random.Random(11)
    policy = AutoscalePolicySpec.model_validate({**POLICY, "behavior": {
        "scaleUp": {"stabilizationWindowSeconds": 30}, "scaleDown": {"stabilizationWindowSeconds": 300}}})
    whole: list[Recommendation] = []
    compact: list[Recommendation] = []
    current = 3
    for second in range(0, 2000, 5):
        now = NOW + timedelta(seconds=second)
        desired = rng.randint(1, 10)
        a = stabilize_recommendation(policy.behavior, current, desired, whole, now)
        b = stabilize_recommendation(policy.behavior, current, desired, compact, now)
        assert a.replicas == b.replicas, second
        whole = whole + [Recommendation(timestamp=now, replicas=desired)]  # never dropped: the oracle
        compact = b.recommendations
        current = a.replicas
    assert len(compact) < 40


def test_status_stays_within_bounds_under_a_mass_interruption():
    notices = [Notice(f"node-{i:03d}", "Interruption", "NodeTaint/karpenter.sh/disrupted",
                      NOW + timedelta(seconds=120 + i % 7), NOW, False) for i in range(300)]
    entries, new = interrupted_nodes_status(notices, [], NOW)
    assert len(entries) == 256 and new == 256
    assert entries[0]["deadline"] <= entries[-1]["deadline"]  # the earliest deadlines are listed
    SpotPoolStatus.model_validate({"interruptedNodes": entries, "interruptedNodeCount": len(notices)})
    # the same notices a second later: nothing is new again
    assert interrupted_nodes_status(notices, entries, NOW + timedelta(seconds=1))[1] == 0

    pods = [{"metadata": {"name": f"chat-{i:03d}", "annotations": {DRAIN_STARTED: "2026-11-22T00:00:00Z",
                                                                   DRAIN_DEADLINE: "2026-11-22T00:02:00Z"}},
             "spec": {"nodeName": f"node-{i:03d}"}} for i in range(100)]
    spot = draining_status(pods)
    assert len(spot["drainingPods"]) == 64 and spot["drainingPodCount"] == 100
    cond = interrupted_condition(pods)
    LLMServiceStatus.model_validate({"spot": spot, "conditions": [cond.to_wire()]})
    assert len(cond.message) < 2000 and "and 80 more" in cond.message
