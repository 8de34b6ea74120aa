"""Forged node Events: a tenant may create Events in its own namespace, so a notice is taken
only from an Event the API server vouches for (in `default`, cluster-scoped involvedObject,
the Node's uid), only a summary of it is kept, and an Event whose deadline has already
passed drains with the pods' own grace unless a second signal (the taint) confirms it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from llmfleet.operator.adapters.kube import KubeClient
from llmfleet.operator.api.spotpool import SpotPoolSpec
from llmfleet.operator.handlers.spot import MAX_NODE_EVENTS, SpotRuntime
from llmfleet.operator.spot.drain import plan_drain
from llmfleet.operator.spot.drain_state import Delete, DrainMarks, Evict, PodDrain
from llmfleet.operator.spot.event_trust import event_summary
from llmfleet.operator.spot.notice import format_rfc3339
from llmfleet.operator.spot.signals import detect_interruptions

NOW = datetime(2026, 11, 22, tzinfo=UTC)
S = timedelta(seconds=1)
POOL = SpotPoolSpec.model_validate({"spot": {"nodeSelector": {"karpenter.sh/capacity-type": "spot"}}})


def node(name="n1", uid="uid-n1", taints=()):
    return {"metadata": {"name": name, "uid": uid}, "spec": {"taints": list(taints)}}


def event(namespace="default", about_ns=None, uid="uid-n1", at=NOW - 10 * S, **extra):
    about = {"kind": "Node", "name": "n1", "apiVersion": "v1"}
    if about_ns is not None:
        about["namespace"] = about_ns
    if uid is not None:
        about["uid"] = uid
    return {"metadata": {"name": "n1.ev", "namespace": namespace, "uid": "ev-1"}, "reason": "SpotInterrupted",
            "involvedObject": about, "lastTimestamp": format_rfc3339(at), **extra}


# (case, the Event) → taken as a notice?
TRUST = [
    ("Karpenter's: in default, about the Node by uid", event(), True),
    ("a tenant's, in its own namespace (the API server makes it name that namespace)",
     event(namespace="team-a", about_ns="team-a"), False),
    ("in a tenant namespace without involvedObject.namespace", event(namespace="team-a"), False),
    ("in default but naming a namespace", event(about_ns="team-a"), False),
    ("about another node of the same name (uid differs)", event(uid="uid-old"), False),
    ("without a uid: nothing ties it to this Node", event(uid=None), False),
]


@pytest.mark.parametrize("case, body, taken", TRUST, ids=[c[0] for c in TRUST])
def test_only_events_no_tenant_can_forge_become_notices(case, body, taken):
    assert bool(detect_interruptions([node()], [], [body], POOL, NOW)) is taken
    assert (event_summary(body) is not None) is (taken or case.startswith("about another"))


def test_a_forged_event_is_not_kept_and_a_trusted_one_only_as_a_small_summary():
    spot = SpotRuntime(kube=KubeClient(None), post_event=lambda *a: None)
    assert not spot.event_seen(event(namespace="team-a", about_ns="team-a"))
    assert spot.node_events == {} and spot.take_changed_nodes() == set()
    huge = event(message="x" * 1_000_000, annotations={"a": "y" * 100_000},
                 firstTimestamp="z" * 100_000)
    assert spot.event_seen(huge)
    (kept,) = spot.node_events.values()
    assert "message" not in kept and len(repr(kept)) < 1000
    assert kept["involvedObject"] == {"kind": "Node", "name": "n1", "uid": "uid-n1"}


def test_the_kept_events_are_bounded():
    spot = SpotRuntime(kube=KubeClient(None), post_event=lambda *a: None)
    for i in range(MAX_NODE_EVENTS + 10):
        body = event()
        body["metadata"] = {**body["metadata"], "uid": f"ev-{i}", "name": f"ev-{i}"}
        spot.event_seen(body)
    assert len(spot.node_events) == MAX_NODE_EVENTS
    assert "ev-0" not in spot.node_events and f"ev-{MAX_NODE_EVENTS + 9}" in spot.node_events


def drained_pod(grace=135):
    return PodDrain("p1", "n1", "spot", grace, False, DrainMarks())


def test_an_event_whose_deadline_passed_evicts_with_the_pods_own_grace():
    old = event(at=NOW - 150 * S)  # SpotInterrupted: 120 s notice, so the deadline was 30 s ago
    (notice,) = detect_interruptions([node()], [], [old], POOL, NOW)
    assert notice.deadline < NOW and not notice.confirmed
    plan = plan_drain(drained_pod(), notice, NOW, margin=10, drain_grace=5, engine=None)
    kills = [a for a in plan.actions if isinstance(a, Evict | Delete)]
    assert kills == [Evict("p1", 135)]  # through the PDB, the full grace; not a 1 s delete


def test_a_pdb_refusal_never_turns_an_unconfirmed_notice_into_a_delete():
    old = event(at=NOW - 150 * S)
    (notice,) = detect_interruptions([node()], [], [old], POOL, NOW)
    started = PodDrain("p1", "n1", "spot", 135, False,
                       DrainMarks(NOW, NOW + 145 * S, "spot", 7, None))
    for later in (NOW + 100 * S, NOW + 140 * S, NOW + 600 * S):
        plan = plan_drain(started, notice, later, margin=10, drain_grace=5, engine=None)
        assert not [a for a in plan.actions if isinstance(a, Delete)]
        assert [a.grace_seconds for a in plan.actions if isinstance(a, Evict)] in ([], [135])


def test_the_taint_confirms_an_overdue_event():
    old = event(at=NOW - 150 * S)
    tainted = node(taints=[{"key": "karpenter.sh/disrupted", "effect": "NoSchedule",
                            "timeAdded": format_rfc3339(NOW - 5 * S)}])
    (notice,) = detect_interruptions([tainted], [], [old], POOL, NOW)
    assert notice.confirmed and notice.deadline < NOW
    plan = plan_drain(drained_pod(), notice, NOW, margin=10, drain_grace=5, engine=None)
    assert [a for a in plan.actions if isinstance(a, Delete)] == [Delete("p1", 1)]
