"""A sync writes status when it changed, not because a sync ran (sync/status_write.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fakes import NS, Index, World, status, sync, tick
from llmfleet.operator.sync.status_write import SCALING_REFRESH_SECONDS, only_sync_times, status_patch

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def scaling(at: datetime, replicas: int = 1, metric: float = 0.0) -> dict:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"policy": "p", "desiredReplicas": replicas, "currentMetric": metric, "lastSyncTime": stamp,
            "recommendations": [{"timestamp": stamp, "replicas": replicas}]}


def test_a_patch_of_sync_times_alone_waits_for_the_refresh():
    old = {"phase": "Ready", "scaling": scaling(T0)}
    later = T0 + timedelta(seconds=15)
    new = {"phase": "Ready", "scaling": scaling(later)}
    assert only_sync_times(old, new)
    assert status_patch(old, new, later) == {}
    due = T0 + timedelta(seconds=SCALING_REFRESH_SECONDS)
    assert status_patch(old, {"phase": "Ready", "scaling": scaling(due)}, due)["scaling"]["lastSyncTime"] == \
        "2026-01-01T12:01:00Z"


def test_any_other_change_is_written_at_once_with_the_current_times():
    old = {"phase": "Ready", "scaling": scaling(T0)}
    later = T0 + timedelta(seconds=15)
    for new in ({"phase": "Ready", "scaling": scaling(later, metric=2.5)},  # the metric moved
                {"phase": "Ready", "scaling": scaling(later, replicas=2)},  # a new recommendation
                {"phase": "Degraded", "scaling": scaling(later)}):  # another field
        patch = status_patch(old, new, later)
        assert patch and not only_sync_times(old, new)
        assert patch.get("scaling", {}).get("lastSyncTime") in (None, "2026-01-01T12:00:15Z")
    assert status_patch(old, dict(old), later) == {}


def test_a_status_never_written_is_written():
    new = {"scaling": scaling(T0)}
    assert status_patch({}, new, T0) == new
    assert status_patch({"scaling": {"policy": "p"}}, new, T0)["scaling"]["lastSyncTime"] == "2026-01-01T12:00:00Z"


def test_a_quiet_autoscaled_service_writes_its_status_once_a_refresh_period():
    world = World()
    world.policy()
    world.service(autoscalePolicyRef={"name": "chat-policy"})
    rec = world.reconciler()
    rec.use_store(Index(world.kube))
    sync(world, rec, force_apply=True)
    world.run_pods()
    for _ in range(2):  # Ready, the first scrape, the first low recommendation: status moves
        world.advance(5)
        tick(world, rec)
    patches = len(world.kube.writes("patch/status"))
    synced = status(world)["scaling"]["lastSyncTime"]
    for _ in range(11):  # 55 s of quiet 5 s syncs: decided, not written
        world.advance(5)
        tick(world, rec)
    assert len(world.kube.writes("patch/status")) == patches
    assert status(world)["scaling"]["lastSyncTime"] == synced
    for _ in range(2):
        world.advance(5)
        tick(world, rec)
    assert len(world.kube.writes("patch/status")) == patches + 1  # the refresh
    assert status(world)["scaling"]["lastSyncTime"] > synced
    assert status(world)["phase"] == "Ready"


def test_a_readiness_change_is_written_at_the_next_sync():
    world = World()
    world.policy()
    world.service(autoscalePolicyRef={"name": "chat-policy"})
    rec = world.reconciler()
    rec.use_store(Index(world.kube))
    sync(world, rec, force_apply=True)
    world.run_pods()
    for _ in range(3):
        world.advance(5)
        tick(world, rec)
    assert status(world)["readyText"] == "1/1"
    world.kube.objects[("Deployment", NS, "chat")]["spec"]["replicas"] = 2  # a second replica, not ready yet
    world.run_pods(ready=False)
    rec.mark_status(NS, "chat")
    world.advance(1)
    tick(world, rec)
    assert status(world)["readyText"] == "1/2"
