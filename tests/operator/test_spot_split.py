"""The replica split between on-demand and spot, and the fallback to on-demand and back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from llmfleet.operator.api.spotpool import SpotPoolSpec
from llmfleet.operator.spot.notice import Notice
from llmfleet.operator.spot.split import (
    FallbackState,
    SpotCapacity,
    observe_spot_capacity,
    split_replicas,
    target_split,
)

NOW = datetime(2026, 11, 22, tzinfo=UTC)
S = timedelta(seconds=1)


def pool(base=1, share=100, pending=120, back=300) -> SpotPoolSpec:
    return SpotPoolSpec.model_validate(
        {
            "spot": {
                "nodeSelector": {"capacity": "spot"},
                "tolerations": [{"key": "spot", "operator": "Exists"}],
            },
            "onDemandBase": base,
            "maxSpotShare": share,
            "fallback": {"pendingSeconds": pending, "returnAfterSeconds": back},
        }
    )


PLENTY = SpotCapacity(schedulable_nodes=3, pending_too_long=0, available_since=NOW - 3600 * S)

# (total, onDemandBase, maxSpotShare) → (ondemand, spot): spot = floor((total - base) * share / 100)
TARGETS = [
    (0, 1, 100, (0, 0)),
    (1, 1, 100, (1, 0)),
    (3, 1, 100, (1, 2)),
    (3, 0, 100, (0, 3)),
    (5, 1, 50, (3, 2)),  # 4 above the base, half of them on spot
    (6, 1, 50, (4, 2)),  # 5 above the base: 2.5 rounds down, spot never exceeds the share
    (4, 2, 0, (4, 0)),
    (2, 5, 100, (2, 0)),  # the base is bigger than the fleet
    (10, 1, 75, (4, 6)),  # 9 * 0.75 = 6.75 → 6
]


@pytest.mark.parametrize("total, base, share, expected", TARGETS)
def test_target_split(total, base, share, expected):
    assert target_split(total, pool(base, share)) == expected
    split = split_replicas(total, pool(base, share), PLENTY, FallbackState(), NOW)
    assert tuple(split) == expected and split.fallback == FallbackState()


# (current (od, spot), new total, base, share) → (od, spot), reason fragment
MOVES = [
    ((1, 2), 2, 1, 100, (1, 1), "spot replicas first"),
    (
        (3, 2),
        4,
        1,
        50,
        (3, 1),
        "spot replicas first",
    ),  # the static split would say (2, 2)... after 5 → 4: spot goes
    ((4, 2), 5, 1, 50, (3, 2), "spot replicas first"),  # target (3, 2): spot stays at its max, on-demand goes
    ((4, 1), 5, 1, 50, (4, 1), "unchanged"),  # a drifted fleet is not churned at a constant total
    ((4, 1), 6, 1, 50, (4, 2), "new replicas go to spot"),  # it converges on scale-up
    ((1, 1), 4, 1, 100, (1, 3), "new replicas go to spot"),
    ((1, 3), 4, 1, 50, (3, 1), "spot above the share"),  # the share was lowered: spot drops to it
]


@pytest.mark.parametrize("current, total, base, share, expected, why", MOVES)
def test_scale_down_removes_spot_first_and_scale_up_adds_spot_first(
    current, total, base, share, expected, why
):
    split = split_replicas(total, pool(base, share), PLENTY, FallbackState(), NOW, current=current)
    assert tuple(split) == expected
    assert why in split.reason
    od, spot = split
    assert od >= min(total, base) and od + spot == total


def test_no_schedulable_spot_node_falls_back_at_once():
    gone = SpotCapacity(schedulable_nodes=0, pending_too_long=0)
    split = split_replicas(3, pool(), gone, FallbackState(), NOW)
    assert tuple(split) == (3, 0)
    assert split.fallback == FallbackState(2, NOW)
    assert "no schedulable spot node" in split.reason


def test_pending_spot_pods_move_one_by_one():
    full = SpotCapacity(schedulable_nodes=1, pending_too_long=1, available_since=NOW - 3600 * S)
    split = split_replicas(4, pool(), full, FallbackState(), NOW)
    assert tuple(split) == (2, 2) and split.fallback == FallbackState(1, NOW)
    # Next sync: the Pending pod went with the scale-down, nothing else is Pending: stay.
    split = split_replicas(4, pool(), PLENTY, split.fallback, NOW + 10 * S, current=(2, 2))
    assert tuple(split) == (2, 2) and "waiting" in split.reason


def test_return_needs_quiet_and_ready_for_return_after_seconds():
    state = FallbackState(2, NOW)
    just_back = SpotCapacity(schedulable_nodes=2, pending_too_long=0, available_since=NOW + 100 * S)
    # Spot nodes Ready again at +100 s; returnAfterSeconds 300 → back at +400 s, not before.
    for t, expected in [(200, (3, 0)), (399, (3, 0)), (400, (1, 2))]:
        split = split_replicas(3, pool(), just_back, state, NOW + t * S, current=(3, 0))
        assert tuple(split) == expected, t
    assert split.fallback == FallbackState() and "spot capacity back" in split.reason


def test_an_old_fallback_still_waits_after_the_taint_is_lifted():
    """Spot nodes stayed Ready all along (only tainted): the return still waits returnAfterSeconds
    from the last sync that saw no room on spot, not from the fallback's start."""
    old = FallbackState(2, NOW - 3600 * S)
    none = SpotCapacity(schedulable_nodes=0, pending_too_long=0, available_since=None)
    split = split_replicas(3, pool(), none, old, NOW, current=(3, 0))
    assert tuple(split) == (3, 0) and split.fallback == FallbackState(2, NOW)
    lifted = SpotCapacity(schedulable_nodes=2, pending_too_long=0, available_since=NOW - 3600 * S)
    for t, expected in [(10, (3, 0)), (299, (3, 0)), (300, (1, 2))]:
        assert tuple(split_replicas(3, pool(), lifted, split.fallback, NOW + t * S, current=(3, 0))) == expected, t


def test_fallback_state_survives_a_restart_through_status():
    state = FallbackState(2, NOW)
    status = state.to_status()
    assert status == {"fallbackActive": True, "fallbackReplicas": 2, "fallbackSince": NOW.isoformat()}
    assert FallbackState.from_status(status) == state
    assert FallbackState.from_status(None) == FallbackState()
    assert FallbackState.from_status({"fallbackActive": True}) == FallbackState(1, None)


def _node(name, *, ready=True, since=NOW - 3600 * S, spot=True, taints=(), unschedulable=False):
    return {
        "metadata": {"name": name, "labels": {"capacity": "spot" if spot else "ondemand"}},
        "spec": {"taints": list(taints), "unschedulable": unschedulable},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": since.isoformat(),
                }
            ]
        },
    }


def _pending_pod(waited_seconds):
    return {
        "metadata": {"name": "p"},
        "spec": {},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "lastTransitionTime": (NOW - waited_seconds * S).isoformat(),
                }
            ],
        },
    }


def test_observe_spot_capacity_from_nodes_and_pods():
    nodes = [
        _node("ok", since=NOW - 50 * S),
        _node("older", since=NOW - 500 * S),
        _node("notready", ready=False),
        _node("cordoned", unschedulable=True),
        _node("tainted", taints=[{"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}]),
        _node("tolerated", taints=[{"key": "spot", "value": "true", "effect": "NoSchedule"}]),
        _node("noticed"),
        _node("ondemand", spot=False),
    ]
    notice = Notice("noticed", "Interruption", "x", NOW, NOW, True)

    def running(node, **annotations):
        return {
            "metadata": {"annotations": annotations},
            "spec": {"nodeName": node},
            "status": {"phase": "Running"},
        }

    pods = [
        _pending_pod(121),
        _pending_pod(119),
        running("ok"),
        running("cordoned"),  # still running on a spot node: placed
        running("noticed"),  # on a node that is going: not placed
        running("older", **{"llmfleet.dev/drain-started": "2026-11-22T00:00:00Z"}),  # leaving
        running("ondemand"),  # not a spot node
    ]
    cap = observe_spot_capacity(nodes, pods, pool(), [notice], NOW)
    assert cap == SpotCapacity(
        schedulable_nodes=3, pending_too_long=1, available_since=NOW - 3600 * S, placed=2
    )


def test_no_schedulable_spot_node_keeps_the_pods_still_running_on_spot():
    # Every spot node got a rebalance recommendation (NoSchedule): nothing new fits on spot,
    # but the two running spot pods stay; only the replica without a pod moves.
    advised = SpotCapacity(schedulable_nodes=0, pending_too_long=0, placed=2)
    split = split_replicas(4, pool(), advised, FallbackState(), NOW, current=(1, 2))
    assert tuple(split) == (2, 2) and split.fallback == FallbackState(1, NOW)
    split = split_replicas(3, pool(), advised, FallbackState(), NOW, current=(1, 2))
    assert tuple(split) == (1, 2) and split.fallback == FallbackState()
