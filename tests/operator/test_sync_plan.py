"""plan_sync as a table: one row is an observed world -> the counts, problem and events it plans.

No API and no clock: an Observation of plain dicts in, a SyncPlan out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from llmfleet.operator.adapters.scrape import EngineScrape
from llmfleet.operator.api.autoscalepolicy import AutoscalePolicySpec
from llmfleet.operator.api.spotpool import SpotPool
from llmfleet.operator.spot.drain_state import DRAIN_STARTED, DRAIN_SURGE, EngineDrain
from llmfleet.operator.spot.notice import Notice
from llmfleet.operator.sync import Observation, plan_status, plan_sync, with_marks
from llmfleet.operator.sync.spot_view import observe_pool

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NS = "team-a"
POLICY = {"metadata": {"name": "p", "namespace": NS, "generation": 1},
          "spec": {"maxReplicas": 8, "metric": {"type": "QueueDepth", "targetAverageValue": 2}}}
POOL = {"metadata": {"name": "gpu-spot", "generation": 1},
        "spec": {"spot": {"nodeSelector": {"capacity": "spot"}}, "onDemand": {"nodeSelector": {"capacity": "od"}},
                 "onDemandBase": 1}}


def body(**spec) -> dict:
    return {"apiVersion": "llmfleet.dev/v1alpha1", "kind": "LLMService",
            "metadata": {"name": "chat", "namespace": NS, "generation": 1, "uid": "u"},
            "spec": {"model": {"uri": "file:///models/tiny"}, **spec}}


def deployment(name: str, replicas: int) -> dict:
    return {"metadata": {"name": name, "namespace": NS, "generation": 1}, "spec": {"replicas": replicas}}


def pod(name: str, *, node: str = "n1", capacity: str = "any", annotations: dict | None = None) -> dict:
    return {"metadata": {"name": name, "namespace": NS, "labels": {"llmfleet.dev/capacity": capacity},
                         "annotations": dict(annotations or {})},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 60},
            "status": {"phase": "Running", "podIP": f"10.0.0.{name[-1]}",
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def node(name: str, capacity: str) -> dict:
    return {"metadata": {"name": name, "labels": {"capacity": capacity}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}


def scrapes(**waiting: float) -> dict:
    return {p: EngineScrape(p, NOW, waiting=w, running=0.0) for p, w in waiting.items()}


ROWS = [
    # (why, observation, counts, problem reason, events)
    ("fixed replicas, nothing yet: one Deployment of spec.replicas",
     Observation(body(replicas=3)), {"any": 3}, None, []),
    ("waiting on a policy that is not there: nothing applied",
     Observation(body(autoscalePolicyRef={"name": "p"})), None, "AutoscalePolicyNotFound", []),
    ("a missing Secret blocks the apply too",
     Observation(body(replicas=1, apiKeySecretRef={"name": "k", "key": "key"}), missing_secrets=["k"]),
     None, "SecretNotFound", []),
    ("a missing SpotPool",
     Observation(body(replicas=1, spotPoolRef={"name": "gpu-spot"})), None, "SpotPoolNotFound", []),
    ("the first sync under a policy starts at minReplicas",
     Observation(body(autoscalePolicyRef={"name": "p"}), policy_obj=POLICY), {"any": 1}, None, []),
    ("between sync periods the autoscaled count is kept",
     Observation(body(autoscalePolicyRef={"name": "p"}), policy_obj=POLICY, deployments=[deployment("chat", 2)],
                 pods=[pod("chat-1"), pod("chat-2")], scrapes=scrapes(**{"chat-1": 10})), {"any": 2}, None, []),
    ("on a sync period, a queue of 10 with target 2 asks for 5",
     Observation(body(autoscalePolicyRef={"name": "p"}), policy_obj=POLICY, deployments=[deployment("chat", 1)],
                 pods=[pod("chat-1")], scrapes=scrapes(**{"chat-1": 10}), periodic=True),
     {"any": 5}, None, [("Normal", "SuccessfulRescale", "New size: 5; reason: QueueDepth above target (was 1)")]),
    ("a pod already draining keeps its surge replica on the one Deployment",
     Observation(body(replicas=2), deployments=[deployment("chat", 3)],
                 pods=[pod("chat-1", annotations={DRAIN_STARTED: "2026-01-01T11:59:00Z",
                                                  "llmfleet.dev/drain-deadline": "2026-01-01T12:10:00Z",
                                                  DRAIN_SURGE: "any"}), pod("chat-2"), pod("chat-3")],
                 notices={}), {"any": 3}, None, []),
]


@pytest.mark.parametrize("why, obs, counts, problem, events", ROWS, ids=[r[0] for r in ROWS])
def test_plan_sync(why, obs, counts, problem, events):
    plan = plan_sync(obs, NOW)
    assert plan.counts == counts
    assert (plan.problem.reason if plan.problem else None) == problem
    assert [*plan.events, *([plan.autoscale.event] if plan.autoscale and plan.autoscale.event else [])] == events


def test_an_invalid_spec_plans_a_failed_status_and_nothing_else():
    obs = Observation({**body(replicas=1), "spec": {"model": {}}})
    plan = plan_sync(obs, NOW)
    assert plan.invalid is not None and plan.invalid.reason == "InvalidSpec" and plan.counts is None


def test_a_noticed_unpooled_pod_is_marked_and_surged_before_anything_else():
    notice = Notice(node="n1", kind="Interruption", source="NodeTaint/x", deadline=NOW + timedelta(seconds=120),
                    noticed_at=NOW, deadline_known=True)
    obs = Observation(body(replicas=2), deployments=[deployment("chat", 2)],
                      pods=[pod("chat-1", node="n1"), pod("chat-2", node="n2")], notices={"n1": notice},
                      engines={"chat-1": EngineDrain(draining=False, in_flight=1)})
    plan = plan_sync(obs, NOW)
    assert [s.pod for s in plan.drains] == ["chat-1"] and plan.drains[0].drain
    assert plan.counts == {"any": 3}  # the replacement starts first
    marked = with_marks(obs.pods, plan.drains)[0]["metadata"]["annotations"]
    assert marked[DRAIN_SURGE] == "any" and DRAIN_STARTED in marked


def test_a_pool_splits_on_demand_base_and_spot_and_reports_the_fallback():
    pods = [pod("chat-1", node="od-1", capacity="ondemand"), pod("chat-2", node="spot-1", capacity="spot")]
    nodes = [node("od-1", "od"), node("spot-1", "spot")]
    view = observe_pool(POOL, SpotPool.model_validate(POOL).spec, nodes, pods, [], NOW)
    obs = Observation(body(replicas=3, spotPoolRef={"name": "gpu-spot"}), pool_obj=POOL, spot=view,
                      deployments=[deployment("chat-ondemand", 1), deployment("chat-spot", 1)], pods=pods)
    plan = plan_sync(obs, NOW)
    assert plan.counts == {"ondemand": 1, "spot": 2}
    assert plan.spot_status is not None and plan.spot_status["fallbackActive"] is False
    status = plan_status(obs, plan, obs.deployments, pods, None, NOW)
    assert status.fields["spotReplicas"] == 1 and status.fields["onDemandReplicas"] == 1
    assert any(c["type"] == "SpotInterrupted" for c in status.fields["conditions"])


def test_a_scale_down_sets_deletion_costs_least_busy_first():
    policy = {**POLICY, "spec": {**POLICY["spec"], "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}}
    obs = Observation(body(autoscalePolicyRef={"name": "p"}), policy_obj=policy, deployments=[deployment("chat", 3)],
                      pods=[pod("chat-1"), pod("chat-2"), pod("chat-3")], periodic=True,
                      scrapes={p: EngineScrape(p, NOW, waiting=0.0, running=r)
                               for p, r in (("chat-1", 3.0), ("chat-2", 0.0), ("chat-3", 1.0))})
    plan = plan_sync(obs, NOW)
    assert plan.counts == {"any": 1} and plan.autoscale is not None and plan.autoscale.direction == "down"
    assert plan.autoscale.deletion_costs == {"chat-1": "3", "chat-2": "0", "chat-3": "1"}
    assert AutoscalePolicySpec.model_validate(policy["spec"]).sync_period_seconds == plan.period
