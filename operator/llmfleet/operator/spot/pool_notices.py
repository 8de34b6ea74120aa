"""What a SpotPool's status says of the notices: whether they are long enough for its services'
drains (NoticeTooShort), and status.interruptedNodes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llmfleet.operator.api.spotpool import (
    MAX_INTERRUPTED_NODES,
    SpotPoolSpec,
)

from .notice import Notice, format_rfc3339, parse_rfc3339

# Notice a pod actually gets on each cloud's spot nodes, by the node's spec.providerID scheme.
# AWS: the 2-minute instance-action notice. GCE/GKE: the VM stops 30 s after preemption and
# graceful node shutdown gives non-system pods the first 15 s. Azure: Scheduled Events give
# at least 30 s before a Spot VM is evicted.
CLOUD_NOTICE_SECONDS: dict[str, tuple[str, int]] = {
    "aws": ("AWS", 120),
    "gce": ("GKE", 15),
    "azure": ("AKS", 30),
}


@dataclass(frozen=True)
class NoticeCheck:
    """Whether notices can be long enough to finish every generation the services allow."""

    too_short: bool
    reason: str
    message: str

    def condition(self) -> dict[str, Any]:
        """The SpotPool's NoticeTooShort condition (merge it like any other by type)."""
        return {
            "type": "NoticeTooShort",
            "status": "True" if self.too_short else "False",
            "reason": self.reason,
            "message": self.message,
        }


def check_notice_length(
    spot_nodes: Sequence[Mapping[str, Any]], pool: SpotPoolSpec, needed_seconds: int, notices: Sequence[Notice] = ()
) -> NoticeCheck:
    """Too short when the usable notice (notice - drainDeadlineMarginSeconds) on some cloud of the
    pool's spot nodes, or of a notice actually received, is below `needed_seconds`: the longest
    drain a service referencing the pool allows (drainGraceSeconds + drainTimeoutSeconds).
    """
    margin = pool.drain_deadline_margin_seconds
    short: list[str] = []
    clouds = sorted({((n.get("spec") or {}).get("providerID") or "").split("://", 1)[0] for n in spot_nodes})
    for scheme in clouds:
        if scheme in CLOUD_NOTICE_SECONDS:
            cloud, seconds = CLOUD_NOTICE_SECONDS[scheme]
            if seconds - margin < needed_seconds:
                short.append(f"{cloud} spot nodes give pods about {seconds}s of notice")
    for notice in notices:
        if notice.kind == "Interruption" and notice.notice_seconds - margin < needed_seconds:
            short.append(f"node {notice.node} got {notice.notice_seconds:.0f}s of notice ({notice.source})")
    if short:
        usable = "; ".join(short)
        return NoticeCheck(
            True,
            "NoticeShorterThanDrain",
            f"{usable}, minus a {margin}s margin, is less than the {needed_seconds}s a drain may need: "
            "generations still running when the node goes are cut (counted in status.requestsCut).",
        )
    return NoticeCheck(
        False, "NoticeLongEnough", f"known notices cover a {needed_seconds}s drain plus a {margin}s margin"
    )


def first_seen_from_status(interrupted_nodes: Sequence[Mapping[str, Any]] | None) -> dict[tuple[str, str], datetime]:
    """SpotPool status.interruptedNodes → the `first_seen` argument of scan_signals."""
    seen: dict[tuple[str, str], datetime] = {}
    for entry in interrupted_nodes or []:
        when = entry.get("seenAt")
        when = parse_rfc3339(when) if isinstance(when, str) else when
        if entry.get("name") and entry.get("signal") and isinstance(when, datetime):
            seen[(entry["name"], entry["signal"])] = when
    return seen


def interrupted_nodes_status(
    notices: Sequence[Notice], previous: Sequence[Mapping[str, Any]] | None, now: datetime,
    limit: int = MAX_INTERRUPTED_NODES,
) -> tuple[list[dict[str, Any]], int]:
    """SpotPool status.interruptedNodes for these notices, and how many of them are new
    (to add to status.interruptionsSeen). An entry keeps its seenAt while its signal stays.

    A mass interruption may notice more nodes than status may list: the `limit` with the
    earliest deadlines are listed (the rest are counted in interruptedNodeCount, and counted
    as seen when they are listed); the drains themselves do not depend on this list."""
    before = first_seen_from_status(previous)
    known_nodes = {entry.get("name") for entry in previous or []}
    entries, new = [], 0
    for notice in sorted(notices, key=lambda n: (n.deadline, n.node))[:limit]:
        seen = before.get((notice.node, notice.source), min(notice.noticed_at, now))
        if notice.node not in known_nodes and notice.kind == "Interruption":
            new += 1
        entries.append(
            {
                "name": notice.node,
                "signal": notice.source,
                "seenAt": format_rfc3339(seen),
                "deadline": format_rfc3339(notice.deadline),
                "advisory": notice.kind == "Advisory",
            }
        )
    return entries, new
