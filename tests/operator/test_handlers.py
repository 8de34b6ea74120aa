"""The reconciler against a fake API server: what it applies, what it writes, what it announces.

No cluster and no kopf: the Reconciler takes its Kubernetes adapter, scraper, clocks and
event sink as arguments, so each story here is given objects -> sync -> observed writes.
"""

from __future__ import annotations

import asyncio

import pytest
from fakes import NS, World, cond, status, sync, tick
from llmfleet.operator.handlers.reconciler import Reconciler, merge_patch
from llmfleet.operator.scaling import POD_DELETION_COST_ANNOTATION

# --- a fixed-replica service ----------------------------------------------------------------


def test_first_sync_applies_children_with_owner_references_and_reports_progress():
    world = World()
    world.service(replicas=2, pricing={"onDemandHourly": 3.0})
    rec = world.reconciler()
    sync(world, rec, force_apply=True)

    assert {w for w in world.kube.writes("apply")} == {
        ("apply", "Deployment", "chat"), ("apply", "Service", "chat"), ("apply", "PodDisruptionBudget", "chat"),
        ("apply", "Secret", "chat-drain-token")}
    dep = world.deployment()
    assert dep["spec"]["replicas"] == 2
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "uid-chat"
    st = status(world)
    assert st["phase"] == "Pending" and st["readyText"] == "0/2"  # no pod scheduled yet
    assert st["endpoint"] == "http://chat.team-a.svc/v1"
    assert st["selector"] == "app.kubernetes.io/instance=chat,app.kubernetes.io/name=llmfleet-engine,llmfleet.dev/service=chat"
    assert ("Normal", "Created", "Created Deployment chat with 2 replicas") in world.events
    assert "spec" not in str(world.kube.writes("patch"))  # only status is ever patched on the LLMService

    world.run_pods()  # the pods' watch events mark the service's status dirty
    world.advance(1)
    tick(world, rec)
    st = status(world)
    assert (st["phase"], st["readyText"], st["cost"]) == ("Ready", "2/2", {"perHour": 6.0})
    assert cond(world, "Ready") == ("True", "AllReplicasReady")
    assert any(e[1] == "PhaseReady" for e in world.events)


def test_a_second_sync_changes_nothing():
    world = World()
    world.service(replicas=1)
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    world.run_pods()
    sync(world, rec, force_apply=True)
    rv = {k: o["metadata"]["resourceVersion"] for k, o in world.kube.objects.items()}
    events = len(world.events)
    sync(world, rec, force_apply=True)
    assert {k: o["metadata"]["resourceVersion"] for k, o in world.kube.objects.items()} == rv
    assert len(world.events) == events


def test_a_restarted_operator_converges_without_duplicates():
    world = World()
    world.service(replicas=2)
    sync(world, world.reconciler(), force_apply=True)
    world.run_pods()
    before = sorted(world.kube.objects)
    sync(world, world.reconciler(), force_apply=True)  # a new process: empty memory
    assert sorted(world.kube.objects) == before
    assert status(world)["phase"] == "Ready"


# --- references -----------------------------------------------------------------------------


def test_missing_policy_is_a_condition_and_is_picked_up_when_it_appears():
    world = World()
    world.service(autoscalePolicyRef={"name": "chat-policy"})
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    assert ("Deployment", NS, "chat") not in world.kube.objects
    assert cond(world, "Ready") == ("False", "AutoscalePolicyNotFound")
    assert status(world)["phase"] == "Pending"
    assert ("Warning", "AutoscalePolicyNotFound", "AutoscalePolicy chat-policy not found in namespace team-a") in world.events

    world.advance(1)
    tick(world, rec)
    assert [e for e in world.events if e[1] == "AutoscalePolicyNotFound"].__len__() == 1  # not repeated per tick

    world.policy(minReplicas=2)
    rec.reference_changed("AutoscalePolicy", NS, "chat-policy")  # what the kopf event handler does
    tick(world, rec)
    assert world.deployment()["spec"]["replicas"] == 2  # starts at minReplicas
    policy_status = world.kube.objects[("AutoscalePolicy", NS, "chat-policy")]["status"]
    assert policy_status["services"] == ["chat"]
    assert policy_status["bounds"] == {"minReplicas": 2, "maxReplicas": 8, "activeSchedules": []}


def test_missing_secret_names_it():
    world = World()
    world.service(replicas=1, apiKeySecretRef={"name": "chat-key", "key": "key"})
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    assert cond(world, "Ready") == ("False", "SecretNotFound")
    assert "Secret chat-key not found" in next(c for c in status(world)["conditions"] if c["type"] == "Degraded")["message"]
    world.kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chat-key", "namespace": NS}})
    rec.reference_changed("Secret", NS, "chat-key")
    tick(world, rec)
    assert ("Deployment", NS, "chat") in world.kube.objects


# --- autoscaling ----------------------------------------------------------------------------


def autoscaled_world(replicas: int = 1, **policy) -> tuple[World, Reconciler]:
    world = World()
    world.policy(**policy)
    world.service(autoscalePolicyRef={"name": "chat-policy"})
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    world.deployment()["spec"]["replicas"] = replicas
    world.run_pods()
    return world, rec


def test_spec_edit_keeps_the_autoscaled_count():
    world, rec = autoscaled_world(replicas=3)
    body = world.body()
    body["spec"]["engine"] = {"maxNumSeqs": 8}
    body["metadata"]["generation"] = 2
    world.kube.put(body)
    sync(world, rec, force_apply=True)
    dep = world.deployment()
    assert dep["spec"]["replicas"] == 3  # not reset to 1 or minReplicas
    assert "--max-num-seqs" in dep["spec"]["template"]["spec"]["containers"][0]["args"]


def test_queue_above_target_scales_the_deployment_up_and_explains_why():
    world, rec = autoscaled_world(replicas=1)
    world.queue = {"chat-0": 10}  # target 2 per replica -> 5
    world.advance(5)
    tick(world, rec)
    assert world.deployment()["spec"]["replicas"] == 5
    st = status(world)
    assert st["lastScaleReason"] == "1 -> 5: QueueDepth above target"
    assert st["scaling"]["decisions"][-1]["from"] == 1 and st["scaling"]["decisions"][-1]["to"] == 5
    assert st["scaling"]["policy"] == "chat-policy"
    assert st["averageQueueDepth"] == 10
    assert ("Normal", "SuccessfulRescale", "New size: 5; reason: QueueDepth above target (was 1)") in world.events
    assert cond(world, "MetricsAvailable") == ("True", "ValidMetricFound")
    assert world.body()["spec"] == {"model": {"uri": "file:///models/tiny"}, "autoscalePolicyRef": {"name": "chat-policy"}}


def test_no_decision_between_sync_periods():
    world, rec = autoscaled_world(replicas=1)
    world.queue = {"chat-0": 10}
    world.advance(5)
    tick(world, rec)
    world.run_pods()
    world.queue = {f"chat-{i}": 10 for i in range(5)}
    world.advance(1)
    rec.mark_status(NS, "chat")
    tick(world, rec)  # pods changed: status refresh only, no new decision inside the period
    assert world.deployment()["spec"]["replicas"] == 5


def test_scale_down_sets_deletion_costs_first_and_least_busy_go_first():
    world, rec = autoscaled_world(replicas=3, behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    world.queue = {"chat-0": 0, "chat-1": 0, "chat-2": 0}
    world.running = {"chat-0": 3, "chat-1": 0, "chat-2": 1}
    world.advance(5)
    tick(world, rec)
    assert world.deployment()["spec"]["replicas"] == 1
    costs = {n: world.kube.objects[("Pod", NS, n)]["metadata"]["annotations"][POD_DELETION_COST_ANNOTATION]
             for n in ("chat-0", "chat-1", "chat-2")}
    assert costs == {"chat-0": "3", "chat-1": "0", "chat-2": "1"}
    order = [w for w in world.kube.log if w[1] in ("Pod", "Deployment")]
    assert order.index(("patch", "Pod", "chat-0")) < order.index(("apply", "Deployment", "chat"), 2)


def test_restart_remembers_a_burst_through_status():
    world, rec = autoscaled_world(replicas=1)  # default scale-down window: 300 s
    world.queue = {"chat-0": 10}
    world.advance(5)
    tick(world, rec)
    world.run_pods()
    world.queue = {}
    world.advance(60)
    fresh = world.reconciler()  # operator restarted: nothing in memory
    sync(world, fresh, force_apply=True)
    world.advance(5)
    tick(world, fresh)
    assert world.deployment()["spec"]["replicas"] == 5  # the burst's recommendation is still in the window
    assert cond(world, "AbleToScale") == ("True", "ScaleDownStabilized")


def test_removing_the_policy_drops_autoscaler_state():
    world, rec = autoscaled_world(replicas=2)
    world.advance(5)
    tick(world, rec)
    body = world.body()
    body["spec"].pop("autoscalePolicyRef")
    body["spec"]["replicas"] = 1
    world.kube.put(body)
    sync(world, rec, force_apply=True)
    st = status(world)
    assert "scaling" not in st
    assert {c["type"] for c in st["conditions"]} == {"Ready", "Progressing", "Degraded"}
    assert world.deployment()["spec"]["replicas"] == 1


# --- spot pools ---------------------------------------------------------------------------------


def test_a_pool_renders_both_deployments_and_removes_the_unpooled_one():
    world = World()
    world.service(replicas=2)
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    world.kube.put({"apiVersion": "llmfleet.dev/v1alpha1", "kind": "SpotPool", "metadata": {"name": "gpu-spot"},
                    "spec": {"spot": {"nodeSelector": {"karpenter.sh/capacity-type": "spot"}}}})
    world.kube.put({"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "gpu-spot-a", "labels": {"karpenter.sh/capacity-type": "spot"}},
        "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    body = world.body()
    body["spec"]["spotPoolRef"] = {"name": "gpu-spot"}
    world.kube.put(body)
    sync(world, rec, force_apply=True)
    names = sorted(k[2] for k in world.kube.objects if k[0] == "Deployment")
    assert names == ["chat-ondemand", "chat-spot"]
    # onDemandBase 1 and maxSpotShare 100 (the defaults): one on each
    assert [world.deployment(n)["spec"]["replicas"] for n in names] == [1, 1]
    assert ("delete", "Deployment", "chat") in world.kube.log


# --- the status patch -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "old, new, patch",
    [
        ({"a": 1}, {"a": 1}, {}),
        ({"a": 1, "kopf": {"x": 1}}, {"a": 2}, {"a": 2}),                       # others' keys untouched
        ({"cost": {"perHour": 1, "per1kTokens": 2}}, {"cost": {"perHour": 1}}, {"cost": {"per1kTokens": None}}),
        ({"cost": {"perHour": 1}}, {"cost": None}, {"cost": None}),
        ({}, {"cost": None}, {}),
        ({"conditions": [1, 2]}, {"conditions": [1]}, {"conditions": [1]}),
    ],
)
def test_merge_patch(old, new, patch):
    assert merge_patch(old, new) == patch


def test_a_stale_watched_body_does_not_repeat_transitions():
    world = World()
    world.service(replicas=1)
    stale = world.body()  # as the timer may still hold it after the create handler's write
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    asyncio.run(rec.sync(stale))
    phase_events = [e for e in world.events if e[1].startswith("Phase")]
    assert phase_events == [("Normal", "PhasePending", "New -> Pending: 0/1 replicas ready")]


def test_every_referenced_secret_is_watched():
    world = World()
    world.service(replicas=1, model={"uri": "hf://org/model", "tokenSecretRef": {"name": "hf-token", "key": "t"}},
                  apiKeySecretRef={"name": "chat-key", "key": "key"})
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    assert cond(world, "Ready") == ("False", "SecretNotFound")
    for secret in ("chat-key", "hf-token"):
        world.kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret, "namespace": NS}})
        rec.reference_changed("Secret", NS, secret)
        tick(world, rec)
    assert ("Deployment", NS, "chat") in world.kube.objects


def test_waiting_on_a_reference_does_not_poll_the_api_every_tick():
    world = World()
    world.service(autoscalePolicyRef={"name": "chat-policy"})
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    calls = (len(world.kube.log), world.kube.reads)
    world.advance(1)
    tick(world, rec)
    assert (len(world.kube.log), world.kube.reads) == calls


def test_a_quiet_periodic_sync_reads_nothing_but_the_engines():
    world, rec = autoscaled_world(replicas=1)
    world.advance(5)
    tick(world, rec)  # the pods changed since the last read: one full read
    reads = world.kube.reads
    world.advance(5)
    tick(world, rec)  # nothing changed: scrape and decide from what the watch events left
    assert world.kube.reads == reads
    assert status(world)["scaling"]["lastSyncTime"] == "2026-01-01T12:00:10Z"
    world.advance(60)
    tick(world, rec)  # the safety net: a full read every minute
    assert world.kube.reads > reads


def test_a_policy_edit_applies_at_the_next_sync():
    world, rec = autoscaled_world(replicas=1)
    world.queue = {"chat-0": 3}  # above the target of 2: the metric asks for 2, maxReplicas 1 caps it
    world.policy(maxReplicas=1)
    rec.reference_changed("AutoscalePolicy", NS, "chat-policy")
    world.advance(5)
    tick(world, rec)
    assert world.deployment()["spec"]["replicas"] == 1
    assert cond(world, "ScalingLimited") == ("True", "TooManyReplicas")
    world.policy(maxReplicas=4)
    rec.reference_changed("AutoscalePolicy", NS, "chat-policy")
    world.advance(5)
    tick(world, rec)
    assert world.deployment()["spec"]["replicas"] == 2


def test_a_service_being_deleted_is_left_alone():
    world = World()
    body = world.service(replicas=1)
    body["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    asyncio.run(world.reconciler().sync(body, force_apply=True))
    assert world.kube.log == []


def test_a_deleted_service_leaves_its_policy_status():
    world, rec = autoscaled_world(replicas=1)
    world.service(name="other", autoscalePolicyRef={"name": "chat-policy"})
    sync(world, rec, name="other", force_apply=True)
    policy = lambda: world.kube.objects[("AutoscalePolicy", NS, "chat-policy")]["status"]["services"]  # noqa: E731
    assert policy() == ["chat", "other"]
    asyncio.run(rec.forget(NS, "chat"))
    assert policy() == ["other"]
