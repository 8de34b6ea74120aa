"""SpotPool model: defaults cover the clouds' interruption signals; its rules mirror the CRD's."""

from __future__ import annotations

import pytest
from llmfleet.operator.api.spotpool import DEFAULT_SIGNALS, SpotPoolSpec
from pydantic import ValidationError

MINIMAL = {"spot": {"nodeSelector": {"karpenter.sh/capacity-type": "spot"}}}


def test_defaults():
    s = SpotPoolSpec.model_validate(MINIMAL)
    assert s.on_demand_base == 1
    assert s.max_spot_share == 100
    assert s.drain_deadline_margin_seconds == 10
    assert (s.fallback.pending_seconds, s.fallback.return_after_seconds) == (120, 300)
    assert s.interruption.signals == list(DEFAULT_SIGNALS)


@pytest.mark.parametrize(
    "source, key, advisory",
    [
        ("NodeTaint", "aws-node-termination-handler/spot-itn", False),
        ("NodeTaint", "karpenter.sh/disrupted", False),
        ("NodeEvent", "SpotInterrupted", False),
        ("NodeTaint", "remediator.kubernetes.azure.com/unschedulable", False),
        ("PodCondition", "DisruptionTarget", False),
        ("NodeAnnotation", "llmfleet.dev/interruption-deadline", False),
        ("NodeTaint", "aws-node-termination-handler/rebalance-recommendation", True),
        ("NodeEvent", "SpotRebalanceRecommendation", True),
    ],
)
def test_default_signals_cover_issue_5(source, key, advisory):
    matches = [s for s in DEFAULT_SIGNALS if (s.source, s.key) == (source, key)]
    assert len(matches) == 1 and matches[0].advisory is advisory


def test_deadline_sources():
    by_key = {s.key: s for s in DEFAULT_SIGNALS}
    nth = by_key["aws-node-termination-handler/spot-itn"].timestamp_from
    assert (nth.key, nth.format, nth.marks) == ("aws-node-termination-handler/action-time", "UnixSeconds", "Notice")
    own = by_key["llmfleet.dev/interruption-deadline"].timestamp_from
    assert (own.source, own.format, own.marks) == ("NodeAnnotation", "RFC3339", "Deadline")
    assert by_key["DisruptionTarget"].notice_seconds <= 15  # GKE: the notice is short


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"spot": {"nodeSelector": {}}}, "at least 1"),
        ({"spot": {}}, "nodeSelector"),
        ({"onDemand": {"nodeSelector": {"karpenter.sh/capacity-type": "spot"}}}, "must differ"),
        ({"maxSpotShare": 101}, "less than or equal to 100"),
        ({"onDemandBase": -1}, "greater than or equal to 0"),
        ({"fallback": {"pendingSeconds": 600, "returnAfterSeconds": 60}}, "returnAfterSeconds must be at least"),
        ({"fallback": {"pendingSeconds": 0}}, "greater than or equal to 1"),
        ({"interruption": {"signals": [{"source": "Telepathy", "key": "x"}]}}, "NodeTaint"),
    ],
)
def test_invalid_specs(fields, message):
    with pytest.raises(ValidationError, match=message):
        SpotPoolSpec.model_validate({**MINIMAL, **fields})


def test_wire_round_trip():
    s = SpotPoolSpec.model_validate({**MINIMAL, "onDemandBase": 2, "maxSpotShare": 50})
    again = SpotPoolSpec.model_validate(s.to_wire())
    assert again == s
