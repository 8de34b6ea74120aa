"""Interruption signals → notices: one row per signal a real cluster emits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from llmfleet.operator.api.spotpool import SpotPoolSpec
from llmfleet.operator.spot.notice import parse_rfc3339
from llmfleet.operator.spot.pool_notices import check_notice_length
from llmfleet.operator.spot.signals import detect_interruptions, scan_signals

NOW = datetime(2026, 11, 22, 0, 0, 0, tzinfo=UTC)
POOL = SpotPoolSpec.model_validate({"spot": {"nodeSelector": {"karpenter.sh/capacity-type": "spot"}}})


def node(name="n1", taints=(), labels=None, annotations=None, provider="aws:///us-east-1a/i-1"):
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels or {}, "annotations": annotations or {}},
        "spec": {"taints": list(taints), "providerID": provider},
    }


def taint(key, value=None, effect="NoSchedule", added=None):
    t = {"key": key, "effect": effect}
    if value is not None:
        t["value"] = value
    if added is not None:
        t["timeAdded"] = added
    return t


def event(reason, node_name="n1", at=NOW):
    return {
        "metadata": {"namespace": "default"},
        "reason": reason,
        "involvedObject": {"kind": "Node", "name": node_name, "uid": f"uid-{node_name}"},
        "lastTimestamp": at.isoformat().replace("+00:00", "Z"),
    }


def pod_with_condition(node_name="n1", ctype="DisruptionTarget", reason="TerminationByKubelet", at=NOW):
    return {
        "metadata": {"name": "p", "namespace": "team-a"},
        "spec": {"nodeName": node_name},
        "status": {
            "conditions": [
                {"type": ctype, "status": "True", "reason": reason, "lastTransitionTime": at.isoformat()}
            ]
        },
    }


T = timedelta
ts = int((NOW - T(seconds=30)).timestamp())

# (case, nodes, pods, events) → (kind, source, seconds from NOW to the deadline, deadline known)
CASES = [
    (
        "aws-node-termination-handler taint, action-time label = notice time 30s ago → 90s left",
        [
            node(
                taints=[taint("aws-node-termination-handler/spot-itn")],
                labels={"aws-node-termination-handler/action-time": str(ts)},
            )
        ],
        [],
        [],
        ("Interruption", "NodeTaint/aws-node-termination-handler/spot-itn", 90, True),
    ),
    (
        "NTH taint without its label → the default 120s from now",
        [node(taints=[taint("aws-node-termination-handler/spot-itn")])],
        [],
        [],
        ("Interruption", "NodeTaint/aws-node-termination-handler/spot-itn", 120, False),
    ),
    (
        "karpenter.sh/disrupted with timeAdded 20s ago → 100s left",
        [node(taints=[taint("karpenter.sh/disrupted", added=(NOW - T(seconds=20)).isoformat())])],
        [],
        [],
        ("Interruption", "NodeTaint/karpenter.sh/disrupted", 100, False),
    ),
    (
        "Karpenter SpotInterrupted event 10s ago → 110s left",
        [node()],
        [],
        [event("SpotInterrupted", at=NOW - T(seconds=10))],
        ("Interruption", "NodeEvent/SpotInterrupted", 110, False),
    ),
    (
        "AKS remediator taint → 30s",
        [node(taints=[taint("remediator.kubernetes.azure.com/unschedulable")])],
        [],
        [],
        ("Interruption", "NodeTaint/remediator.kubernetes.azure.com/unschedulable", 30, False),
    ),
    (
        "GKE impending-node-termination taint → 15s",
        [node(taints=[taint("cloud.google.com/impending-node-termination")])],
        [],
        [],
        ("Interruption", "NodeTaint/cloud.google.com/impending-node-termination", 15, False),
    ),
    (
        "GKE graceful shutdown: pod DisruptionTarget/TerminationByKubelet 5s ago → 10s",
        [node()],
        [pod_with_condition(at=NOW - T(seconds=5))],
        [],
        ("Interruption", "PodCondition/DisruptionTarget", 10, False),
    ),
    (
        "llmfleet annotation is the deadline itself",
        [node(annotations={"llmfleet.dev/interruption-deadline": "2026-11-22T00:01:40Z"})],
        [],
        [],
        ("Interruption", "NodeAnnotation/llmfleet.dev/interruption-deadline", 100, True),
    ),
    (
        "llmfleet annotation with an offset",
        [node(annotations={"llmfleet.dev/interruption-deadline": "2026-11-22T01:01:00+01:00"})],
        [],
        [],
        ("Interruption", "NodeAnnotation/llmfleet.dev/interruption-deadline", 60, True),
    ),
    (
        "NTH rebalance-recommendation taint is advisory",
        [node(taints=[taint("aws-node-termination-handler/rebalance-recommendation")])],
        [],
        [],
        ("Advisory", "NodeTaint/aws-node-termination-handler/rebalance-recommendation", 120, False),
    ),
    (
        "Karpenter SpotRebalanceRecommendation event is advisory",
        [node()],
        [],
        [event("SpotRebalanceRecommendation")],
        ("Advisory", "NodeEvent/SpotRebalanceRecommendation", 120, False),
    ),
    (
        "advisory and interruption on one node: the interruption wins",
        [
            node(
                taints=[
                    taint("aws-node-termination-handler/rebalance-recommendation"),
                    taint("karpenter.sh/disrupted"),
                ]
            )
        ],
        [],
        [],
        ("Interruption", "NodeTaint/karpenter.sh/disrupted", 120, False),
    ),
    (
        "two interruptions: the earliest deadline wins",
        [
            node(
                taints=[taint("karpenter.sh/disrupted")],
                annotations={"llmfleet.dev/interruption-deadline": "2026-11-22T00:00:45Z"},
            )
        ],
        [],
        [],
        ("Interruption", "NodeAnnotation/llmfleet.dev/interruption-deadline", 45, True),
    ),
]


@pytest.mark.parametrize("case, nodes, pods, events, expected", CASES, ids=[c[0] for c in CASES])
def test_signal_becomes_a_notice(case, nodes, pods, events, expected):
    (notice,) = detect_interruptions(nodes, pods, events, POOL, NOW)
    kind, source, seconds, known = expected
    assert (notice.kind, notice.source, notice.deadline_known) == (kind, source, known)
    assert (notice.deadline - NOW).total_seconds() == seconds


# (case, nodes, pods, events) → nothing
QUIET = [
    ("no signals", [node()], [], []),
    ("an unrelated taint", [node(taints=[taint("nvidia.com/gpu")])], [], []),
    (
        "an event about another kind of object",
        [node()],
        [],
        [{"reason": "SpotInterrupted", "involvedObject": {"kind": "Pod", "name": "n1"}}],
    ),
    ("an event about a node that is gone", [node()], [], [event("SpotInterrupted", node_name="old")]),
    (
        "a DisruptionTarget condition for another reason",
        [node()],
        [pod_with_condition(reason="PreemptionByScheduler")],
        [],
    ),
    (
        "a DisruptionTarget condition on a pod elsewhere",
        [node()],
        [pod_with_condition(node_name="other")],
        [],
    ),
]


@pytest.mark.parametrize("case, nodes, pods, events", QUIET, ids=[c[0] for c in QUIET])
def test_no_notice(case, nodes, pods, events):
    assert detect_interruptions(nodes, pods, events, POOL, NOW) == []


@pytest.mark.parametrize(
    "value", ["tomorrow", "2026-11-22T00:01:40", "1763770000", "", "2026-13-40T00:00:00Z"]
)
def test_malformed_llmfleet_annotation_is_ignored_with_a_reason(value):
    scan = scan_signals([node(annotations={"llmfleet.dev/interruption-deadline": value})], [], [], POOL, NOW)
    assert scan.notices == []
    (ignored,) = scan.ignored
    assert ignored.reason == "MalformedDeadline" and ignored.node == "n1" and repr(value) in ignored.message


def test_malformed_nth_label_falls_back_to_the_default_notice_and_says_so():
    nodes = [
        node(
            taints=[taint("aws-node-termination-handler/spot-itn")],
            labels={"aws-node-termination-handler/action-time": "soon"},
        )
    ]
    scan = scan_signals(nodes, [], [], POOL, NOW)
    (notice,) = scan.notices
    assert (notice.deadline - NOW).total_seconds() == 120 and not notice.deadline_known
    assert [i.reason for i in scan.ignored] == ["MalformedNoticeTime"]


def test_first_seen_keeps_a_restarted_operator_from_moving_the_deadline():
    nodes = [node(taints=[taint("remediator.kubernetes.azure.com/unschedulable")])]
    seen = {("n1", "NodeTaint/remediator.kubernetes.azure.com/unschedulable"): NOW - T(seconds=20)}
    (notice,) = detect_interruptions(nodes, [], [], POOL, NOW, first_seen=seen)
    assert (notice.deadline - NOW).total_seconds() == 10


def test_stale_event_is_ignored():
    scan = scan_signals([node()], [], [event("SpotInterrupted", at=NOW - T(minutes=30))], POOL, NOW)
    assert scan.notices == [] and [i.reason for i in scan.ignored] == ["StaleEvent"]


def test_an_event_about_a_nodes_predecessor_of_the_same_name_is_not_its_notice():
    # A reclaimed instance's SpotInterrupted Event lives an hour; a new node can get its name.
    reborn = node()
    reborn["metadata"]["creationTimestamp"] = (NOW - T(seconds=10)).isoformat().replace("+00:00", "Z")
    assert detect_interruptions([reborn], [], [event("SpotInterrupted", at=NOW - T(seconds=30))], POOL, NOW) == []
    (notice,) = detect_interruptions([reborn], [], [event("SpotInterrupted", at=NOW - T(seconds=5))], POOL, NOW)
    assert notice.node == "n1"


def test_events_api_regarding_and_event_time():
    ev = {
        "metadata": {"namespace": "default"},
        "reason": "SpotInterrupted",
        "regarding": {"kind": "Node", "name": "n1", "uid": "uid-n1"},
        "eventTime": "2026-11-21T23:59:30.000000Z",
    }
    (notice,) = detect_interruptions([node()], [], [ev], POOL, NOW)
    assert (notice.deadline - NOW).total_seconds() == 90


def test_value_filter_on_a_custom_signal():
    pool = SpotPoolSpec.model_validate(
        {
            "spot": {"nodeSelector": {"pool": "spot"}},
            "interruption": {
                "signals": [
                    {"source": "NodeLabel", "key": "example.com/reclaim", "value": "yes", "noticeSeconds": 45}
                ]
            },
        }
    )
    assert detect_interruptions([node(labels={"example.com/reclaim": "no"})], [], [], pool, NOW) == []
    (notice,) = detect_interruptions([node(labels={"example.com/reclaim": "yes"})], [], [], pool, NOW)
    assert notice.source == "NodeLabel/example.com/reclaim" and (notice.deadline - NOW).total_seconds() == 45


def test_parse_rfc3339_needs_an_offset():
    assert parse_rfc3339("2026-11-22T00:00:00Z") == NOW
    assert parse_rfc3339("2026-11-22T00:00:00") is None
    assert parse_rfc3339(None) is None


# (case, provider IDs of the spot nodes, needed seconds, margin) → too short?
NOTICE_LENGTH = [
    ("AWS 120s covers 5+60s with a 10s margin", ["aws:///a/i-1"], 65, 10, False),
    ("AWS 120s does not cover 5+120s", ["aws:///a/i-1"], 125, 10, True),
    ("GKE 15s never covers a 65s drain", ["gce://p/z/n"], 65, 10, True),
    ("AKS 30s does not cover 65s", ["azure:///subscriptions/x"], 65, 10, True),
    ("a mixed pool is as short as its shortest cloud", ["aws:///a/i-1", "gce://p/z/n"], 65, 10, True),
    ("unknown cloud (kwok): nothing known to be short", ["kwok://n1"], 65, 10, False),
]


@pytest.mark.parametrize(
    "case, providers, needed, margin, short", NOTICE_LENGTH, ids=[c[0] for c in NOTICE_LENGTH]
)
def test_notice_too_short(case, providers, needed, margin, short):
    pool = POOL.model_copy(update={"drain_deadline_margin_seconds": margin})
    nodes = [node(f"n{i}", provider=p) for i, p in enumerate(providers)]
    check = check_notice_length(nodes, pool, needed)
    assert check.too_short is short
    cond = check.condition()
    assert cond["type"] == "NoticeTooShort" and cond["status"] == ("True" if short else "False")
    if short:
        assert f"{needed}s" in cond["message"]


def test_an_observed_short_notice_counts_too():
    nodes = [
        node(annotations={"llmfleet.dev/interruption-deadline": "2026-11-22T00:00:20Z"}, provider="kwok://n1")
    ]
    notices = detect_interruptions(nodes, [], [], POOL, NOW)
    check = check_notice_length(nodes, POOL, 65, notices)
    assert check.too_short and "node n1 got 20s" in check.message


def test_status_round_trip_keeps_first_sight_across_a_restart():
    from llmfleet.operator.spot.pool_notices import first_seen_from_status, interrupted_nodes_status

    nodes = [node(taints=[taint("remediator.kubernetes.azure.com/unschedulable")])]
    notices = detect_interruptions(nodes, [], [], POOL, NOW)
    entries, new = interrupted_nodes_status(notices, [], NOW)
    assert new == 1
    assert entries == [
        {
            "name": "n1",
            "signal": "NodeTaint/remediator.kubernetes.azure.com/unschedulable",
            "seenAt": "2026-11-22T00:00:00Z",
            "deadline": "2026-11-22T00:00:30Z",
            "advisory": False,
        }
    ]
    # 20 s later a restarted operator reads status back: the deadline does not move.
    later = NOW + T(seconds=20)
    (again,) = detect_interruptions(nodes, [], [], POOL, later, first_seen_from_status(entries))
    assert again.deadline == NOW + T(seconds=30)
    entries2, new2 = interrupted_nodes_status([again], entries, later)
    assert new2 == 0 and entries2 == entries
