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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from llmfleet.operator.api.spotpool import (
    MAX_INTERRUPTED_NODES,
    InterruptionSignal,
    SpotPoolSpec,
    TimestampSource,
)

NoticeKind = Literal["Interruption", "Advisory"]

# Events are kept by the API server for an hour; one whose deadline passed this long ago
# speaks of a node that has since gone (a new node may carry the same name).
STALE_EVENT_SECONDS = 600
# Where the API server stores Events about cluster-scoped objects, and the only namespace a
# Node notice is read from: core/v1 validation refuses an Event with an empty
# involvedObject.namespace anywhere else (events.k8s.io also allows kube-system; Karpenter
# and client-go's recorders write to default).
TRUSTED_EVENT_NAMESPACE = "default"
SUMMARY_TEXT_MAX = 253  # names, uids and times in a kept Event summary are cut to this


@dataclass(frozen=True)
class Notice:
    """A node that will be (Interruption) or may soon be (Advisory) reclaimed."""

    node: str
    kind: NoticeKind
    source: str  # "<source>/<key>" of the signal that decided the deadline
    deadline: datetime
    noticed_at: datetime  # t0: when the notice was given (or first seen)
    deadline_known: bool  # False: deadline = t0 + the signal's default noticeSeconds
    also: tuple[str, ...] = ()  # other signals seen on the same node
    # False: an Event alone says the deadline has already passed. The node is still there, so
    # the claim is doubtful: drain with the pods' own grace, not a 1 s kill past the PDB.
    confirmed: bool = True

    @property
    def notice_seconds(self) -> float:
        return (self.deadline - self.noticed_at).total_seconds()


@dataclass(frozen=True)
class IgnoredSignal:
    """A signal that could not be used as given; `reason` is one CamelCase word."""

    node: str
    source: str
    reason: str
    message: str


@dataclass(frozen=True)
class SignalScan:
    notices: list[Notice] = field(default_factory=list)
    ignored: list[IgnoredSignal] = field(default_factory=list)


def signal_name(signal: InterruptionSignal) -> str:
    return f"{signal.source}/{signal.key}"


def parse_rfc3339(text: object) -> datetime | None:
    """An RFC 3339 time with an offset (Z or ±hh:mm), or None. Naive times are refused."""
    if not isinstance(text, str) or not text or "T" not in text.upper():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def format_rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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


def _event_node(event: Mapping[str, Any]) -> str | None:
    obj = event.get("involvedObject") or event.get("regarding") or {}
    return obj.get("name") if obj.get("kind") == "Node" else None


def trusted_node_event(event: Mapping[str, Any]) -> bool:
    """An Event about a Node that no tenant can have written: stored in `default` with a
    cluster-scoped involvedObject (no namespace) that names the Node's uid. A tenant may
    create Events in its own namespace, but the API server then requires
    involvedObject.namespace to be that namespace (see the module table)."""
    about = event.get("involvedObject") or event.get("regarding") or {}
    return (
        about.get("kind") == "Node"
        and not about.get("namespace")
        and bool(about.get("name"))
        and bool(about.get("uid"))
        and _meta(event).get("namespace") == TRUSTED_EVENT_NAMESPACE
    )


def _text(value: object) -> str | None:
    return value[:SUMMARY_TEXT_MAX] if isinstance(value, str) and value else None


def event_summary(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the signal scan reads of a trusted Node Event (reason, node name and uid, times),
    each string cut to SUMMARY_TEXT_MAX; None for an Event that is not trusted. The message,
    annotations and managed fields are dropped: a kept Event costs a few hundred bytes."""
    if not trusted_node_event(event):
        return None
    meta = _meta(event)
    about = event.get("involvedObject") or event.get("regarding") or {}
    summary = {
        "metadata": {k: _text(meta.get(k)) for k in ("name", "namespace", "uid", "creationTimestamp")},
        "reason": _text(event.get("reason")),
        "involvedObject": {"kind": "Node", "name": _text(about.get("name")), "uid": _text(about.get("uid"))},
        **{k: _text(event.get(k)) for k in ("eventTime", "lastTimestamp", "firstTimestamp")},
    }
    last_observed = _text((event.get("series") or {}).get("lastObservedTime"))
    if last_observed:
        summary["series"] = {"lastObservedTime": last_observed}
    return summary


def _event_time(event: Mapping[str, Any]) -> datetime | None:
    for key in ("eventTime", "lastTimestamp", "firstTimestamp"):
        value = parse_rfc3339(event.get(key))
        if value is not None:
            return value
    series = event.get("series") or {}
    return parse_rfc3339(series.get("lastObservedTime")) or parse_rfc3339(
        _meta(event).get("creationTimestamp")
    )


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
