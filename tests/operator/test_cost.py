"""Cost per hour from ready replicas and prices; per 1K tokens from the engines' counter deltas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from llmfleet.operator.api.llmservice import Pricing
from llmfleet.operator.cost import TokenReading, fleet_cost, hourly_cost, token_rate

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "pricing, on_demand, spot, expected",
    [
        (None, 2, 0, None),                                              # no prices: no figure
        (Pricing(on_demand_hourly=4.0), 2, 0, 8.0),
        (Pricing(on_demand_hourly=4.0, spot_hourly=1.5), 1, 2, 7.0),     # 4 + 2 x 1.5
        (Pricing(on_demand_hourly=4.0), 1, 2, 12.0),                     # spot unset: the on-demand price
        (Pricing(spot_hourly=1.5), 0, 2, 3.0),                           # only spot replicas, only its price
        (Pricing(spot_hourly=1.5), 1, 2, None),                          # an on-demand replica with no price
        (Pricing(on_demand_hourly=4.0), 0, 0, 0.0),                      # nothing ready costs nothing
    ],
)
def test_hourly_cost(pricing, on_demand, spot, expected):
    assert hourly_cost(pricing, on_demand, spot) == expected


def test_token_rate_sums_pods_and_survives_a_restarted_counter():
    before = {"a": TokenReading(1000, T0), "b": TokenReading(500, T0), "gone": TokenReading(9, T0)}
    after = {
        "a": TokenReading(1600, T0 + timedelta(seconds=15)),    # +600
        "b": TokenReading(300, T0 + timedelta(seconds=15)),     # restarted: counts 300 from zero
        "new": TokenReading(50, T0 + timedelta(seconds=15)),    # first sight: no rate yet
    }
    assert token_rate(before, after) == pytest.approx(900 / 15)
    assert token_rate({}, after) is None


def test_cost_per_1k_tokens():
    # 8 per hour at 100 tokens/s = 360,000 tokens/h -> 8 / 360 per 1K tokens
    cost = fleet_cost(Pricing(on_demand_hourly=4.0), 2, 0, 100.0)
    assert cost.per_hour == 8.0
    assert cost.per_1k_tokens == pytest.approx(8 / 360, rel=1e-3)
    assert cost.to_wire() == {"perHour": 8.0, "per1kTokens": 0.02222}
    idle = fleet_cost(Pricing(on_demand_hourly=4.0), 2, 0, 0.0)
    assert idle.per_1k_tokens is None and idle.to_wire() == {"perHour": 8.0}
    assert fleet_cost(None, 2, 0, 100.0) is None
