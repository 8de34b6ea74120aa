"""Spot observation: the Node and node-Event caches the watches keep, and the notices they yield.

| part                        | job                                                               |
| --------------------------- | ----------------------------------------------------------------- |
| node_seen / event_seen      | kopf's Node and Event watches feed the caches (briefs, not whole Nodes) |
| all_nodes                   | a pooled service's nodes: kopf's Node index (no API read); without it, the watch's cache, listed once per process and every NODE_RELIST_SECONDS |
| observe / observe_unpooled  | the notices (sync.observe_pool's scan, or the default signals of a service without a pool) |
| take_changed_nodes          | which nodes' default signals changed: only services with pods there are woken |
| engine_drain                | GET (poll) or POST (start) an engine's /drain                    |

The decisions are in sync/ (plan_drains, split) and operator/spot/; the writes in
handlers/drain_executor.py. Nothing here is kept that a restart needs: drain state is on the
pods, first-seen times in the pool's status.interruptedNodes, the fallback in the
LLMService's status.spot; the caches are refilled by kopf's initial lists on start.
(Without a pool, first sight of a time-less signal is kept in memory only; once a drain
starts, its deadline is on the pod.)
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from llmfleet.operator.adapters.engine_drain import call_drain
from llmfleet.operator.adapters.kube import Kube
from llmfleet.operator.api.spotpool import SpotPoolSpec, TimestampSource
from llmfleet.operator.render.paths import HTTP_PORT
from llmfleet.operator.spot.drain_state import DRAIN_STARTED, DRAIN_SURGE
from llmfleet.operator.spot.event_trust import event_summary
from llmfleet.operator.spot.notice import Notice
from llmfleet.operator.spot.signals import scan_signals
from llmfleet.operator.sync import UNPOOLED, SpotView, observe_pool

log = logging.getLogger("llmfleet.operator.spot")

# Trusted Node Events kept (a summary each, see signals.event_summary): Events live an hour,
# and a cluster of thousands of spot nodes sees far fewer notices than this in an hour.
MAX_NODE_EVENTS = 4096
NODE_RELIST_SECONDS = 300  # the pooled services' Node cache is listed afresh this often (one list for all)
# A drain must never wait on a dying (or hostile) engine: one deadline per call, a small body.
DRAIN_DEADLINE_SECONDS = 3.0

# (pod IP, POST?, drain token for a POST) -> the /drain JSON, None if no answer
EngineCall = Callable[[str, bool, str | None], Awaitable[dict | None]]
EventPoster = Callable[[dict, str, str, str], None]


async def engine_drain(ip: str, post: bool, token: str | None = None) -> dict | None:
    """POST (start, with the service's drain token) or GET (poll) the engine's /drain; None
    when it does not answer."""
    return await call_drain(ip, HTTP_PORT, post, token, DRAIN_DEADLINE_SECONDS)


# A service without a SpotPool watches what a SpotPool watches by default (sync.UNPOOLED).
_NODE_SOURCES = ("NodeTaint", "NodeLabel", "NodeAnnotation")
# (source, key) of the node metadata the default signals match on, and of their timestamps.
_UNPOOLED_KEYS: tuple[tuple[str, str], ...] = tuple(
    (s.source, s.key) for s in UNPOOLED.interruption.signals if s.source in _NODE_SOURCES)
_UNPOOLED_TIME_KEYS: tuple[tuple[str, str], ...] = tuple(
    (ts.source, ts.key) for ts in (s.timestamp_from for s in UNPOOLED.interruption.signals)
    if isinstance(ts, TimestampSource))
_UNPOOLED_POD_CONDITIONS = frozenset(s.key for s in UNPOOLED.interruption.signals if s.source == "PodCondition")


def _node_value(node: Mapping, source: str, key: str) -> tuple[str, str] | None:
    """(value, taint timeAdded) of a taint, label or annotation `key`; None if the node has none."""
    if source == "NodeTaint":
        for taint in (node.get("spec") or {}).get("taints") or []:
            if taint.get("key") == key:
                return str(taint.get("value") or ""), str(taint.get("timeAdded") or "")
        return None
    value = ((node.get("metadata") or {}).get("labels" if source == "NodeLabel" else "annotations") or {}).get(key)
    return None if value is None else (str(value), "")


def _event_node(event: Mapping) -> str | None:
    """The Node an Event is about (core/v1 involvedObject, events.k8s.io regarding), if any."""
    obj = event.get("involvedObject") or event.get("regarding") or {}
    return obj.get("name") if obj.get("kind") == "Node" else None


def unpooled_signature(node: Mapping) -> tuple:
    """What the default signals read of a node: all None when it carries none of them."""
    return tuple(_node_value(node, src, key) for src, key in _UNPOOLED_KEYS + _UNPOOLED_TIME_KEYS)


_NO_SIGNAL = tuple(None for _ in _UNPOOLED_KEYS + _UNPOOLED_TIME_KEYS)


def _signalled(node: Mapping) -> bool:
    """The node carries one of the default signals (a timestamp alone is no signal)."""
    return any(v is not None for v in unpooled_signature(node)[:len(_UNPOOLED_KEYS)])


def node_brief(node: Mapping) -> dict:
    """The parts of a Node that the signal scan reads (not its images, addresses or capacity)."""
    meta, spec = node.get("metadata") or {}, node.get("spec") or {}
    ready = [dict(c) for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"]
    return copy.deepcopy({
        "metadata": {"name": meta.get("name"), "uid": meta.get("uid"), "labels": dict(meta.get("labels") or {}),
                     "annotations": dict(meta.get("annotations") or {}),
                     "creationTimestamp": meta.get("creationTimestamp")},
        "spec": {"taints": [dict(t) for t in spec.get("taints") or []],
                 "unschedulable": bool(spec.get("unschedulable")), "providerID": spec.get("providerID")},
        "status": {"conditions": ready},
    })


def node_signature(node: Mapping) -> tuple:
    """What of a node the spot decisions read: a change here wakes the pool's services."""
    meta, spec = node.get("metadata") or {}, node.get("spec") or {}
    ready = next((c.get("status") for c in (node.get("status") or {}).get("conditions") or []
                  if c.get("type") == "Ready"), None)
    return (
        tuple(sorted((meta.get("labels") or {}).items())),
        tuple(sorted((meta.get("annotations") or {}).items())),
        tuple(sorted((t.get("key", ""), t.get("value") or "", t.get("effect", "")) for t in spec.get("taints") or [])),
        bool(spec.get("unschedulable")),
        ready,
    )


@dataclass
class SpotRuntime:
    kube: Kube
    post_event: EventPoster
    engine: EngineCall = engine_drain
    drain_token: Callable[[str, str], str] | None = None  # (namespace, service) -> its drain token
    node_events: dict[str, dict] = field(default_factory=dict)  # Event uid -> Event about a Node (Karpenter)
    # Services without a pool: first sight of time-less default signals, and the nodes whose
    # default signals changed since the reconciler last asked (take_changed_nodes).
    first_seen: dict[tuple[str, str], datetime] = field(default_factory=dict)
    changed_nodes: set[str] = field(default_factory=set)
    # Every node's brief, the one node cache: kept by the Node watch, listed once per process
    # for services with a pool (the watch's first events may come after the first sync).
    nodes: dict[str, dict] = field(default_factory=dict)
    nodes_listed_at: datetime | None = None
    _listing: asyncio.Lock = field(default_factory=asyncio.Lock)
    _seen_while_listing: set[str] | None = None  # names the watch updated while a list was in flight
    # kopf's Node index (handlers/store.py): every node's brief, kept by the watch, deletions
    # included (kopf re-lists after a pause). With it, all_nodes never lists.
    node_index: Callable[[], list[dict]] | None = None

    # --- watch feeds (kopf) -------------------------------------------------------------

    def event_seen(self, body: Mapping, deleted: bool = False) -> bool:
        """An Event about a Node (the watch filters by reason). True when it is new. Only a
        summary of a trusted Event is kept (signals.trusted_node_event), at most MAX_NODE_EVENTS."""
        uid = str((body.get("metadata") or {}).get("uid") or (body.get("metadata") or {}).get("name"))
        if deleted:
            self.node_events.pop(uid, None)
            return False
        summary = event_summary(body)  # None: not an Event the API server vouches for (a tenant's)
        if summary is None:
            return False
        new = uid not in self.node_events
        self.node_events.pop(uid, None)
        self.node_events[uid] = summary
        while len(self.node_events) > MAX_NODE_EVENTS:  # the oldest first (dicts keep insertion order)
            self.node_events.pop(next(iter(self.node_events)))
        node = _event_node(summary)
        if new and node:
            self.changed_nodes.add(node)
        return new

    def node_seen(self, body: Mapping, deleted: bool = False) -> bool:
        """A Node changed; True when something the spot decisions read changed (its signature).

        Notes the node for services without a pool when its default signals changed."""
        name = str((body.get("metadata") or {}).get("name"))
        if self._seen_while_listing is not None:
            self._seen_while_listing.add(name)
        before = self.nodes.get(name)
        was = unpooled_signature(before) if before is not None and _signalled(before) else None
        if deleted:
            self.nodes.pop(name, None)
            if was is not None:
                self.changed_nodes.add(name)
            self._forget_first_seen(name)
            return before is not None
        after = self.nodes[name] = node_brief(body)  # the brief keeps more than the signature compares
        signalled = _signalled(after)
        if (signalled or was is not None) and unpooled_signature(after) != (was if was is not None else _NO_SIGNAL):
            self.changed_nodes.add(name)
        if not signalled:
            self._forget_first_seen(name)
        return before is None or node_signature(before) != node_signature(after)

    def nodes_relisted(self) -> None:
        """kopf listed the Nodes again (its first list, or after a pause or a 410): what went
        meanwhile is not reported as deleted, so the cache is listed afresh at the next sync."""
        self.nodes_listed_at = None

    async def all_nodes(self, now: datetime) -> list[dict]:
        """Every node's brief, for a pooled service's sync. A Node list seeds the cache (an API
        list is as new as anything the watch delivered before it) and refreshes it every
        NODE_RELIST_SECONDS for the whole process (a watch re-opened after a pause or a 410 lists
        again but reports no deletion meanwhile); between lists the watch keeps it current, so
        a sync costs no Node list, whatever the cluster's size and the number of services.
        With kopf's Node index (node_index), the index is the answer: no list at all."""
        if self.node_index is not None:
            return sorted(self.node_index(), key=lambda n: str(n["metadata"]["name"]))
        async with self._listing:  # one list at a time, whichever services sync meanwhile
            if self.nodes_listed_at is None or (now - self.nodes_listed_at).total_seconds() >= NODE_RELIST_SECONDS:
                self._seen_while_listing = set()
                try:
                    listed = await self.kube.list("Node", None)
                    fresh = {str(n["metadata"]["name"]): node_brief(n) for n in listed}
                    for name in self._seen_while_listing:  # the watch's word is newer than the list's
                        if name in self.nodes:
                            fresh[name] = self.nodes[name]
                        else:
                            fresh.pop(name, None)
                    self.nodes, self.nodes_listed_at = fresh, now
                finally:
                    self._seen_while_listing = None
        return [copy.deepcopy(n) for _, n in sorted(self.nodes.items())]

    def take_changed_nodes(self) -> set[str]:
        """The nodes whose default signals (or Karpenter Events) changed since the last call."""
        changed, self.changed_nodes = self.changed_nodes, set()
        return changed

    def _forget_first_seen(self, node: str) -> None:
        for key in [k for k in self.first_seen if k[0] == node]:
            del self.first_seen[key]

    # --- observe ------------------------------------------------------------------------

    def observe(self, pool_obj: dict, pool: SpotPoolSpec, nodes: list[dict], pods: list[dict],
                now: datetime) -> SpotView:
        return observe_pool(pool_obj, pool, nodes, pods, self.node_events.values(), now)

    def observe_unpooled(self, pods: list[dict], now: datetime) -> dict[str, Notice] | None:
        """The notices on the nodes of a service without a SpotPool (the default signals), or
        None when it has no drain work: no node hosting one of its pods has a signal, no pod has
        a signalling condition, and no pod carries drain marks. Reads no API: the nodes come
        from the Node watch (node_seen), Karpenter's Events from the Event watch."""
        hosts = {n for n in ((p.get("spec") or {}).get("nodeName") for p in pods) if n}
        marked = any(DRAIN_STARTED in a or DRAIN_SURGE in a
                     for a in ((p.get("metadata") or {}).get("annotations") or {} for p in pods))
        signalled = {h: self.nodes[h] for h in hosts if h in self.nodes and _signalled(self.nodes[h])}
        candidates = set(signalled)
        if self.node_events:
            candidates |= hosts & {n for n in map(_event_node, self.node_events.values()) if n}
        for pod in pods:
            if any(c.get("type") in _UNPOOLED_POD_CONDITIONS and c.get("status") == "True"
                   for c in (pod.get("status") or {}).get("conditions") or []):
                candidates.add((pod.get("spec") or {}).get("nodeName") or "")
        candidates.discard("")
        if not candidates and not marked:
            return None
        # the Node's brief (its uid: an Event must name it) from the Node watch when it has one
        nodes = [signalled.get(n) or self.nodes.get(n) or {"metadata": {"name": n}} for n in sorted(candidates)]
        scan = scan_signals(nodes, pods, list(self.node_events.values()), UNPOOLED, now, self.first_seen)
        for line in scan.ignored:
            log.debug("node %s: %s ignored (%s): %s", line.node, line.source, line.reason, line.message)
        current = {(n.node, n.source) for n in scan.notices}
        for key in [k for k in self.first_seen if k[0] in candidates and k not in current]:
            del self.first_seen[key]
        for notice in scan.notices:
            self.first_seen.setdefault((notice.node, notice.source), notice.noticed_at)
        return {n.node: n for n in scan.notices}

__all__ = ["SpotRuntime", "engine_drain", "node_signature"]
