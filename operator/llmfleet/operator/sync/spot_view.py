"""A pooled service's reading of its SpotPool: the notices on the nodes and the spot capacity (pure).

`UNPOOLED` is what a service without a SpotPool watches for: a SpotPool's default signals and
margin (only `interruption.signals` and `drain_deadline_margin_seconds` of it are read; the
spot selector is a placeholder, such a service has one Deployment and no split).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from llmfleet.operator.api.spotpool import SpotPoolSpec
from llmfleet.operator.spot.notice import Notice, SignalScan
from llmfleet.operator.spot.pool_notices import first_seen_from_status
from llmfleet.operator.spot.signals import scan_signals
from llmfleet.operator.spot.split import SpotCapacity, observe_spot_capacity

UNPOOLED = SpotPoolSpec.model_validate({"spot": {"nodeSelector": {"llmfleet.dev/unpooled": "none"}}})


@dataclass
class SpotView:
    """One sync's reading of a pool: the notices and the capacity."""

    scan: SignalScan
    notices: dict[str, Notice]
    capacity: SpotCapacity
    nodes: list[dict]


def observe_pool(pool_obj: Mapping, pool: SpotPoolSpec, nodes: list[dict], pods: list[dict],
                 node_events: Iterable[dict], now: datetime) -> SpotView:
    """Scan the pool's nodes (first sight of time-less signals from its status.interruptedNodes)."""
    interrupted = (pool_obj.get("status") or {}).get("interruptedNodes")
    scan = scan_signals(nodes, pods, list(node_events), pool, now, first_seen_from_status(interrupted))
    spot_pods = [p for p in pods if (p["metadata"].get("labels") or {}).get("llmfleet.dev/capacity") == "spot"]
    capacity = observe_spot_capacity(nodes, spot_pods, pool, scan.notices, now)
    return SpotView(scan, {n.node: n for n in scan.notices}, capacity, nodes)
