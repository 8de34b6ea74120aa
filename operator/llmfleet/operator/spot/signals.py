"""Which nodes are about to be reclaimed, and by when: interruption notices from cluster state.

`scan_signals` reads nodes, engine pods and Events (as the API server returns them) against
a SpotPool's configured signals and returns one Notice per node, plus the signals it had to
ignore (each with a reason a handler can put in an event or condition).

| signal found                        | notice start (t0)                         | deadline                         |
| ----------------------------------- | ----------------------------------------- | -------------------------------- |
| timestampFrom, marks Deadline       | —                                         | the timestamp                    |
| timestampFrom, marks Notice         | the timestamp                             | t0 + noticeSeconds               |
| taint with timeAdded                | taint.timeAdded                           | t0 + noticeSeconds               |
| Event                               | eventTime / lastTimestamp / firstTimestamp | t0 + noticeSeconds              |
| pod condition                       | condition.lastTransitionTime              | t0 + noticeSeconds               |
| anything else (labels, annotations) | first seen (from SpotPool status), else now | t0 + noticeSeconds             |

Invariants: several signals on one node merge into one Notice; an Interruption beats an
Advisory, and among Interruptions the earliest deadline wins (the conservative reading).
A malformed timestamp that *is* the signal (the llmfleet annotation) drops the signal; a
malformed timestamp beside another signal (aws-node-termination-handler's label) falls back
to noticeSeconds and is reported too.

Events are evidence only when no tenant could have written them (`trusted_node_event`):

| Event                                                        | taken as a notice? |
| ------------------------------------------------------------ | ------------------ |
| in `default`, involvedObject a Node, no involvedObject.namespace, its uid = the Node's uid | yes |
| in any other namespace (the API server requires involvedObject.namespace = the Event's there) | no |
| about a Node by name but with another uid, or none (a namesake, or hand-made) | no (EventNodeMismatch) |

An Event's deadline that has already passed when it is first read is not confirmed by the
Event alone (`Notice.confirmed` False): the drain evicts with the pods' own grace, honouring
the PodDisruptionBudget, unless a second signal on the node (a taint) confirms the notice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from llmfleet.operator.api.spotpool import (
    InterruptionSignal,
    SpotPoolSpec,
    TimestampSource,
)

from .event_trust import (
    _event_node,
    _event_time,
    trusted_node_event,
)
from .notice import (
    IgnoredSignal,
    Notice,
    NoticeKind,
    SignalScan,
    format_rfc3339,
    parse_rfc3339,
)

# Events are kept by the API server for an hour; one whose deadline passed this long ago
# speaks of a node that has since gone (a new node may carry the same name).
STALE_EVENT_SECONDS = 600


def signal_name(signal: InterruptionSignal) -> str:
    return f"{signal.source}/{signal.key}"


def _parse_time(text: object, fmt: str) -> datetime | None:
    if fmt == "UnixSeconds":
        if not isinstance(text, str) or not text.strip().isdigit():
            return None
        return datetime.fromtimestamp(int(text.strip()), UTC)
    return parse_rfc3339(text)


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _node_value(node: Mapping[str, Any], source: str, key: str) -> str | None:
    """The taint value, label value or annotation value of `key`, or None if absent."""
    if source == "NodeTaint":
        for taint in (node.get("spec") or {}).get("taints") or []:
            if taint.get("key") == key:
                return taint.get("value") or ""
        return None
    bucket = "labels" if source == "NodeLabel" else "annotations"
    value = (_meta(node).get(bucket) or {}).get(key)
    return None if value is None else str(value)


def _taint_time(node: Mapping[str, Any], key: str) -> datetime | None:
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("key") == key:
            return parse_rfc3339(taint.get("timeAdded"))
    return None


@dataclass(frozen=True)
class _Hit:
    node: str
    signal: InterruptionSignal
    given_at: datetime | None  # when the signal itself says it was given, if it does


def _hits(
    nodes: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    signals: Iterable[InterruptionSignal],
) -> Iterable[_Hit]:
    names = {_meta(n).get("name") for n in nodes}
    uids = {_meta(n).get("name"): _meta(n).get("uid") for n in nodes}
    # A node name can come back (a new instance given a reclaimed one's name): an Event about a
    # node from before that node was created is about its predecessor (Events live an hour).
    born = {_meta(n).get("name"): parse_rfc3339(_meta(n).get("creationTimestamp")) for n in nodes}
    for signal in signals:
        if signal.source in ("NodeTaint", "NodeLabel", "NodeAnnotation"):
            for node in nodes:
                value = _node_value(node, signal.source, signal.key)
                if value is None or (signal.value is not None and value != signal.value):
                    continue
                given = _taint_time(node, signal.key) if signal.source == "NodeTaint" else None
                yield _Hit(_meta(node)["name"], signal, given)
        elif signal.source == "NodeEvent":
            for event in events:
                about = _event_node(event)
                if event.get("reason") == signal.key and about is not None and about in names:
                    if not trusted_node_event(event) or not uids.get(about) or \
                            (event.get("involvedObject") or event.get("regarding") or {}).get("uid") != uids[about]:
                        continue  # a namesake's, or not the API server's word (see trusted_node_event)
                    at, created = _event_time(event), born.get(about)
                    if at is not None and created is not None and at < created:
                        continue
                    yield _Hit(about, signal, at)
        else:  # PodCondition
            for pod in pods:
                on: str | None = (pod.get("spec") or {}).get("nodeName")
                if on is None or on not in names:
                    continue
                for cond in (pod.get("status") or {}).get("conditions") or []:
                    if cond.get("type") != signal.key or cond.get("status") != "True":
                        continue
                    if signal.value is not None and cond.get("reason") != signal.value:
                        continue
                    yield _Hit(on, signal, parse_rfc3339(cond.get("lastTransitionTime")))


def _timestamp(node: Mapping[str, Any] | None, ts: TimestampSource) -> tuple[datetime | None, str | None]:
    """(the parsed time, or None) and the raw text when present but malformed."""
    raw = None if node is None else _node_value(node, ts.source, ts.key)
    if raw is None:
        return None, None
    value = _parse_time(raw, ts.format)
    return value, (None if value is not None else raw)


def scan_signals(
    nodes: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    pool: SpotPoolSpec,
    now: datetime,
    first_seen: Mapping[tuple[str, str], datetime] | None = None,
) -> SignalScan:
    """Every node with a matching signal → one Notice; unusable signals → IgnoredSignal.

    `first_seen` maps (node, signal name) to when the operator first saw a signal that carries
    no time of its own (kept in SpotPool status.interruptedNodes[].seenAt), so a restarted
    operator does not push such a deadline later.
    """
    first_seen = first_seen or {}
    by_name = {_meta(n).get("name"): n for n in nodes}
    per_node: dict[str, list[Notice]] = {}
    ignored: list[IgnoredSignal] = []
    for hit in _hits(nodes, pods, events, pool.interruption.signals):
        name = signal_name(hit.signal)
        notice_len = timedelta(seconds=hit.signal.notice_seconds)
        t0 = hit.given_at or first_seen.get((hit.node, name)) or now
        deadline, known = t0 + notice_len, False
        ts = hit.signal.timestamp_from
        if ts is not None:
            value, bad = _timestamp(by_name.get(hit.node), ts)
            if bad is not None:
                is_the_signal = (ts.source, ts.key) == (hit.signal.source, hit.signal.key)
                ignored.append(
                    IgnoredSignal(
                        hit.node,
                        name,
                        "MalformedDeadline" if is_the_signal else "MalformedNoticeTime",
                        f"{ts.source} {ts.key}={bad!r} is not a {ts.format} time"
                        + (
                            "; signal ignored"
                            if is_the_signal
                            else f"; assuming {hit.signal.notice_seconds}s from {format_rfc3339(t0)}"
                        ),
                    )
                )
                if is_the_signal:
                    continue
            elif value is not None and ts.marks == "Deadline":
                deadline, known = value, True
                t0 = min(t0, value)
            elif value is not None:
                t0, deadline, known = value, value + notice_len, True
        if hit.signal.source == "NodeEvent" and (now - deadline).total_seconds() > STALE_EVENT_SECONDS:
            ignored.append(
                IgnoredSignal(
                    hit.node, name, "StaleEvent", f"event deadline {format_rfc3339(deadline)} long past"
                )
            )
            continue
        kind: NoticeKind = "Advisory" if hit.signal.advisory else "Interruption"
        confirmed = not (hit.signal.source == "NodeEvent" and deadline <= now)
        per_node.setdefault(hit.node, []).append(Notice(hit.node, kind, name, deadline, t0, known,
                                                        confirmed=confirmed))
    return SignalScan([_merge(found) for _, found in sorted(per_node.items())], ignored)


def _merge(found: list[Notice]) -> Notice:
    """Interruption before Advisory, then the earliest deadline; keep the other sources for the record."""
    best = min(found, key=lambda n: (n.kind != "Interruption", n.deadline, n.source))
    others = tuple(sorted({n.source for n in found} - {best.source}))
    # An overdue Event is confirmed by any other interruption signal on the same node.
    confirmed = best.confirmed or any(n is not best and n.kind == "Interruption" for n in found)
    return replace(best, also=others, confirmed=confirmed)


def detect_interruptions(
    nodes: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    pool: SpotPoolSpec,
    now: datetime,
    first_seen: Mapping[tuple[str, str], datetime] | None = None,
) -> list[Notice]:
    """The notices alone (see scan_signals for the ignored signals and their reasons)."""
    return scan_signals(nodes, pods, events, pool, now, first_seen).notices


