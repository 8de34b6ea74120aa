"""Fleet cost from spec.pricing: per hour from ready replicas, per 1K tokens from the token rate.

| figure        | from                                                                 |
| ------------- | -------------------------------------------------------------------- |
| per hour      | ready on-demand (and `any`) replicas x onDemandHourly + ready spot replicas x spotHourly (on-demand price when unset) |
| per 1K tokens | per hour / (generated tokens per hour / 1000), the token rate from the engines' generation_tokens counters between two scrapes |

Counters are per pod and restart at zero with the pod: a reading below the previous one
counts from zero (as Prometheus' rate() does). A pod seen once has no rate yet, and a
fleet that generated nothing has no cost per token (None, not infinity). Prices are for
reporting only; no decision reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from llmfleet.operator.api.llmservice import Pricing
from llmfleet.operator.api.llmservice_status import Cost


@dataclass(frozen=True)
class TokenReading:
    """One pod's generation_tokens counter at a time."""

    value: float
    timestamp: datetime


def hourly_cost(pricing: Pricing | None, ready_on_demand: int, ready_spot: int) -> float | None:
    """Cost per hour of the ready replicas; None without the prices it needs."""
    if pricing is None:
        return None
    spot_price = pricing.spot_hourly if pricing.spot_hourly is not None else pricing.on_demand_hourly
    total = 0.0
    for count, price in ((ready_on_demand, pricing.on_demand_hourly), (ready_spot, spot_price)):
        if count == 0:
            continue
        if price is None:
            return None
        total += count * price
    return total


def token_rate(previous: Mapping[str, TokenReading], current: Mapping[str, TokenReading]) -> float | None:
    """Generated tokens per second over the pods present in both readings; None when none is."""
    tokens = 0.0
    seconds = 0.0
    pods = 0
    for pod, now in current.items():
        before = previous.get(pod)
        if before is None:
            continue
        elapsed = (now.timestamp - before.timestamp).total_seconds()
        if elapsed <= 0:
            continue
        delta = now.value - before.value
        if delta < 0:  # the pod restarted: its counter began again at zero
            delta = now.value
        tokens += delta
        seconds = max(seconds, elapsed)
        pods += 1
    if pods == 0 or seconds == 0:
        return None
    return tokens / seconds


def fleet_cost(
    pricing: Pricing | None, ready_on_demand: int, ready_spot: int, tokens_per_second: float | None
) -> Cost | None:
    """status.cost: None without pricing; per1kTokens only while tokens are being generated."""
    per_hour = hourly_cost(pricing, ready_on_demand, ready_spot)
    if per_hour is None:
        return None
    per_1k = None
    if tokens_per_second is not None and tokens_per_second > 0:
        per_1k = per_hour / (tokens_per_second * 3600 / 1000)
    return Cost(per_hour=_round(per_hour), per_1k_tokens=_round(per_1k) if per_1k is not None else None)


def _round(value: float) -> float:
    """Four significant digits: enough to read, few enough that status does not churn every sync."""
    return float(f"{value:.4g}")
