"""Spot wiring: the reconciler's side of issue 5 (the decisions are in `operator/spot/`).

For a service with a SpotPool, each sync (see Reconciler._sync):

    observe   nodes (listed on refresh) + Karpenter Events on nodes (fed by kopf's watch)
              -> scan_signals -> notices; observe_spot_capacity -> capacity
    begin     for each engine pod on a noticed node, or already marked as draining:
              GET /drain, plan_drain (or plan_advisory / clear_advisory), and apply the
              plan's Annotate actions (the drain marks, the surge) to the pod
    (the reconciler then splits with split_replicas and applies
     deployment_replicas(split, pods): the Surge, so the replacement starts first)
    finish    the rest of each plan, in order: PostDrain, RecordEvent, Evict
              (429 -> after_eviction backoff), Delete; the earliest Wait says when to look again
    pool      SpotPool status (node counts, interruptedNodes, interruptionsSeen, podsDrained,
              requestsCut, NoticeTooShort) through the status subresource

A service without a SpotPool drains the same way when one of its pods is on a node with a
notice (observe_unpooled): the default signals of a SpotPool, the default margin, its one
Deployment surged by surge_by_capacity(pods)["any"]. It lists no Node: the Node watch keeps
the bodies here (node_seen), and a sync does drain work only when a node hosting one of its
pods has a notice or a pod already carries drain marks. `take_changed_nodes` tells the
reconciler which nodes' default signals changed, so it wakes only the services with pods there.

Nothing here is kept in memory that a restart needs: drain state is on the pods
(annotations, see spot/drain.py), first-seen times in the pool's status.interruptedNodes,
the fallback in the LLMService's status.spot. The Event and Node caches are refilled by
kopf's initial lists on start. (Without a pool, first sight of a time-less signal is kept in
memory only; once a drain starts, its deadline is on the pod.)
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from llmfleet.operator import metrics
from llmfleet.operator.adapters.engine_drain import call_drain
from llmfleet.operator.adapters.kube import Kube, KubeError
from llmfleet.operator.api.common import Condition
from llmfleet.operator.api.llmservice import MAX_DRAINING_PODS
from llmfleet.operator.api.spotpool import SpotPoolSpec, TimestampSource
from llmfleet.operator.render.paths import HTTP_PORT
from llmfleet.operator.spot import (
    Annotate,
    Delete,
    EngineDrain,
    Evict,
    Notice,
    PodDrain,
    PostDrain,
    RecordEvent,
    SignalScan,
    SpotCapacity,
    Surge,
    Wait,
    after_eviction,
    check_notice_length,
    clear_advisory,
    first_seen_from_status,
    interrupted_nodes_status,
    observe_spot_capacity,
    plan_advisory,
    plan_drain,
    scan_signals,
)
from llmfleet.operator.spot.drain import (
    DRAIN_DEADLINE,
    DRAIN_STARTED,
    DRAIN_SURGE,
    EVICTION_ATTEMPTS,
    drain_stop_by,
    unconfirmed,
)
from llmfleet.operator.spot.signals import event_summary, format_rfc3339, parse_rfc3339
from llmfleet.operator.spot.split import is_spot_node

log = logging.getLogger("llmfleet.operator.spot")

# Trusted Node Events kept (a summary each, see signals.event_summary): Events live an hour,
# and a cluster of thousands of spot nodes sees far fewer notices than this in an hour.
MAX_NODE_EVENTS = 4096
NODE_RELIST_SECONDS = 300  # the pooled services' Node cache is listed afresh this often (one list for all)
# A drain must never wait on a dying (or hostile) engine: one deadline per call, a small body.
DRAIN_DEADLINE_SECONDS = 3.0
# Events on the SpotPool: the milestones only (a 429 retry every few seconds stays on the LLMService).
# Announcements of a drain or replacement that began: posted with their marks (see `begin`).
ANNOUNCE_AT_ONCE = {"DrainStarted", "ReplacementStarted"}
POOL_EVENT_REASONS = {"DrainStarted", "DrainEvicted", "DrainDeleted", "RequestsAtRisk", "ReplacementStarted"}

# (pod IP, POST?, drain token for a POST) -> the /drain JSON, None if no answer
EngineCall = Callable[[str, bool, str | None], Awaitable[dict | None]]
EventPoster = Callable[[dict, str, str, str], None]


async def engine_drain(ip: str, post: bool, token: str | None = None) -> dict | None:
    """POST (start, with the service's drain token) or GET (poll) the engine's /drain; None
    when it does not answer."""
    return await call_drain(ip, HTTP_PORT, post, token, DRAIN_DEADLINE_SECONDS)


# A service without a SpotPool watches what a SpotPool watches by default, with its default
# margin. Only `interruption.signals` and `drain_deadline_margin_seconds` of this spec are read;
# the spot selector is a placeholder (such a service has one Deployment, no split).
UNPOOLED = SpotPoolSpec.model_validate({"spot": {"nodeSelector": {"llmfleet.dev/unpooled": "none"}}})
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
class SpotView:
    """One sync's reading of a pool: the notices and the capacity."""

    scan: SignalScan
    notices: dict[str, Notice]
    capacity: SpotCapacity
    nodes: list[dict]


@dataclass
class Drain:
    """One pod's plan, between `begin` (annotations applied) and `finish` (the rest)."""

    pod: dict
    drain: PodDrain
    rest: list
    at_risk: int = 0
    engine: EngineDrain | None = None
    stop_by: datetime | None = None  # D - M: the pod must be gone by then


@dataclass
class Outcome:
    drained: int = 0  # pods evicted or deleted this sync
    cut: int = 0  # requests in flight when a shortened-grace eviction/delete was issued
    wake: datetime | None = None  # the earliest Wait
    killed: bool = False  # a pod was evicted or deleted: re-read the pods at the next sync


@dataclass
class SpotRuntime:
    kube: Kube
    post_event: EventPoster
    engine: EngineCall = engine_drain
    drain_token: Callable[[str, str], str] | None = None  # (namespace, service) -> its drain token
    node_events: dict[str, dict] = field(default_factory=dict)  # Event uid -> Event about a Node (Karpenter)
    node_sigs: dict[str, tuple] = field(default_factory=dict)
    # Services without a pool: the nodes carrying one of the default signals (name -> node_brief),
    # first sight of time-less signals on them, and the nodes whose signals changed since the
    # reconciler last asked (take_changed_nodes).
    signalled: dict[str, dict] = field(default_factory=dict)
    first_seen: dict[tuple[str, str], datetime] = field(default_factory=dict)
    changed_nodes: set[str] = field(default_factory=set)
    pool_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    needed: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)  # pool -> service -> drain s
    # Every node's brief, kept by the Node watch, for services with a pool: listed once per
    # process (the watch's first events may come after the first sync), then never again.
    nodes: dict[str, dict] = field(default_factory=dict)
    nodes_listed_at: datetime | None = None
    _listing: asyncio.Lock = field(default_factory=asyncio.Lock)
    _seen_while_listing: set[str] | None = None  # names the watch updated while a list was in flight

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
        """A Node changed; True when something the spot decisions read changed.

        Also keeps the brief body of every node that carries one of the default signals (for
        services without a pool) and notes the node when those signals changed."""
        name = str((body.get("metadata") or {}).get("name"))
        if self._seen_while_listing is not None:
            self._seen_while_listing.add(name)
        if deleted:
            self.nodes.pop(name, None)
            if self.signalled.pop(name, None) is not None:
                self.changed_nodes.add(name)
            self._forget_first_seen(name)
            return self.node_sigs.pop(name, None) is not None
        unpooled = unpooled_signature(body)
        before = self.signalled.get(name)
        signalled = any(v is not None for v in unpooled[:len(_UNPOOLED_KEYS)])  # a timestamp alone is no signal
        if (signalled or before is not None) and unpooled != (
                unpooled_signature(before) if before is not None else _NO_SIGNAL):
            self.changed_nodes.add(name)
        if signalled:
            self.signalled[name] = node_brief(body)
        else:
            self.signalled.pop(name, None)
            self._forget_first_seen(name)
        sig = node_signature(body)
        changed = self.node_sigs.get(name) != sig
        self.node_sigs[name] = sig
        self.nodes[name] = node_brief(body)  # always: the brief keeps more than the signature compares
        return changed

    def nodes_relisted(self) -> None:
        """kopf listed the Nodes again (its first list, or after a pause or a 410): what went
        meanwhile is not reported as deleted, so the cache is listed afresh at the next sync."""
        self.nodes_listed_at = None

    async def all_nodes(self, now: datetime) -> list[dict]:
        """Every node's brief, for a pooled service's sync. A Node list seeds the cache (an API
        list is as new as anything the watch delivered before it) and refreshes it every
        NODE_RELIST_SECONDS for the whole process (a watch re-opened after a pause or a 410 lists
        again but reports no deletion meanwhile); between lists the watch keeps it current, so
        a sync costs no Node list, whatever the cluster's size and the number of services."""
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
        interrupted = (pool_obj.get("status") or {}).get("interruptedNodes")
        scan = scan_signals(nodes, pods, list(self.node_events.values()), pool, now,
                            first_seen_from_status(interrupted))
        spot_pods = [p for p in pods if (p["metadata"].get("labels") or {}).get("llmfleet.dev/capacity") == "spot"]
        capacity = observe_spot_capacity(nodes, spot_pods, pool, scan.notices, now)
        return SpotView(scan, {n.node: n for n in scan.notices}, capacity, nodes)

    def observe_unpooled(self, pods: list[dict], now: datetime) -> dict[str, Notice] | None:
        """The notices on the nodes of a service without a SpotPool (the default signals), or
        None when it has no drain work: no node hosting one of its pods has a signal, no pod has
        a signalling condition, and no pod carries drain marks. Reads no API: the nodes come
        from the Node watch (node_seen), Karpenter's Events from the Event watch."""
        hosts = {n for n in ((p.get("spec") or {}).get("nodeName") for p in pods) if n}
        marked = any(DRAIN_STARTED in a or DRAIN_SURGE in a
                     for a in ((p.get("metadata") or {}).get("annotations") or {} for p in pods))
        candidates = {h for h in hosts if h in self.signalled}
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
        nodes = [self.signalled.get(n) or self.nodes.get(n) or {"metadata": {"name": n}} for n in sorted(candidates)]
        scan = scan_signals(nodes, pods, list(self.node_events.values()), UNPOOLED, now, self.first_seen)
        for line in scan.ignored:
            log.debug("node %s: %s ignored (%s): %s", line.node, line.source, line.reason, line.message)
        current = {(n.node, n.source) for n in scan.notices}
        for key in [k for k in self.first_seen if k[0] in candidates and k not in current]:
            del self.first_seen[key]
        for notice in scan.notices:
            self.first_seen.setdefault((notice.node, notice.source), notice.noticed_at)
        return {n.node: n for n in scan.notices}

    # --- drains -------------------------------------------------------------------------

    async def _patch_pod(self, namespace: str, pod: dict, annotations: dict) -> None:
        await self.kube.patch("Pod", namespace, pod["metadata"]["name"], {"metadata": {"annotations": annotations}})
        own = pod["metadata"].setdefault("annotations", {})
        for k, v in annotations.items():
            if v is None:
                own.pop(k, None)
            else:
                own[k] = v

    async def begin(self, namespace: str, service_drain_grace: int, margin: int, pods: list[dict],
                    notices: Mapping[str, Notice], now: datetime, supports_drain: bool = True,
                    announce: Callable[[RecordEvent], None] | None = None) -> list[Drain]:
        """Plan every pod that is on a noticed node or already draining; apply the Annotates
        (drain marks and surge) at once, so `deployment_replicas(split, pods)` (or, without a
        pool, surge_by_capacity(pods)["any"]) includes the surge before anything else happens.
        `margin` is drainDeadlineMarginSeconds. `pods` are updated in place.

        `announce` (see `recorder`) posts the DrainStarted / ReplacementStarted events right
        after their marks are written: a restart never announces a drain twice (the marks say
        it began), so an announcement left for `finish` would be lost to a restart in between."""
        out: list[Drain] = []
        for pod in pods:
            p = PodDrain.from_pod(pod)
            notice = notices.get(p.node or "")
            if p.terminating and p.marks.started is None:
                continue
            if notice is not None and notice.kind == "Advisory" and p.marks.started is None:
                actions = plan_advisory(p, notice)
            elif notice is None and p.marks.started is None:
                actions = clear_advisory(p)  # nothing unless an advisory had surged it
            else:
                if p.terminating:
                    continue  # evicted or deleted: the kubelet runs preStop and the grace period
                engine = None
                ip = (pod.get("status") or {}).get("podIP")
                if supports_drain and ip:  # before the first step too: a short notice may evict at once
                    answer = await self.engine(ip, False, None)
                    engine = EngineDrain.from_json(answer) if answer is not None else None
                try:
                    plan = plan_drain(p, notice, now, margin=margin,
                                      drain_grace=service_drain_grace, engine=engine,
                                      supports_drain=supports_drain)
                except ValueError as exc:  # marks without a deadline (edited by hand): nothing to work to
                    log.warning("%s", exc)
                    continue
                # an unconfirmed notice backs off without a deadline: the PDB is never bypassed
                stop_by = None if unconfirmed(notice) else drain_stop_by(p, notice, margin, now)
                out.append(Drain(pod, p, [], plan.at_risk, engine, stop_by))
                actions = plan.actions
            rest = []
            try:
                for action in actions:
                    if isinstance(action, Annotate):
                        await self._patch_pod(namespace, pod, action.annotations)
                    elif isinstance(action, RecordEvent) and action.reason in ANNOUNCE_AT_ONCE and announce:
                        announce(action)
                    elif not isinstance(action, Surge):  # Surge: the annotation is its durable form
                        rest.append(action)
            except KubeError as exc:  # the pod went meanwhile (404), or a conflict: the next sync sees
                log.info("pod %s: drain marks not written: %s", pod["metadata"]["name"], exc)
                if out and out[-1].pod is pod:
                    out.pop()
                continue
            if out and out[-1].pod is pod:
                out[-1].rest = rest
            elif rest:
                out.append(Drain(pod, p, rest))
        return out

    def recorder(self, body: dict, pool_obj: dict | None) -> Callable[[RecordEvent], None]:
        """Post a plan's event on the LLMService (and the milestones on its SpotPool)."""
        namespace = body["metadata"]["namespace"]

        def record(action: RecordEvent) -> None:
            self.post_event(body, action.type, action.reason, f"pod {action.pod}: {action.message}")
            if pool_obj is not None and action.reason in POOL_EVENT_REASONS:
                self.post_event(pool_obj, action.type, action.reason,
                                f"pod {namespace}/{action.pod}: {action.message}")

        return record

    async def finish(self, body: dict, pool_obj: dict | None, drains: list[Drain], now: datetime) -> Outcome:
        """The rest of each plan, in order; events on the LLMService (and milestones on the pool)."""
        namespace = body["metadata"]["namespace"]
        outcome = Outcome()
        record = self.recorder(body, pool_obj)

        def wake(at: datetime) -> None:
            outcome.wake = at if outcome.wake is None else min(outcome.wake, at)

        def gone(pod: dict) -> None:
            # Until its watch event arrives, a sync from the cached pods must not evict or
            # delete (and count) it again: mark it terminating here and have the next sync re-read.
            pod["metadata"].setdefault("deletionTimestamp", format_rfc3339(now))
            outcome.killed = True

        for d in drains:
            pod, name = d.pod, d.pod["metadata"]["name"]
            for action in d.rest:
                if isinstance(action, PostDrain):
                    ip = (pod.get("status") or {}).get("podIP")
                    token = self.drain_token(namespace, body["metadata"]["name"]) if self.drain_token else None
                    answer = await self.engine(ip, True, token) if ip else None
                    if answer is None:
                        log.info("pod %s: POST /drain got no answer; polling again", name)
                    wake(now)  # look at the engine again at the next step
                elif isinstance(action, RecordEvent):
                    if action.reason == "EvictionRefused":
                        attempts = int((pod["metadata"].get("annotations") or {}).get(EVICTION_ATTEMPTS, "1") or 1)
                        if attempts not in (1, 2) and attempts % 10:
                            continue  # one line per retry would flood the events
                    record(action)
                elif isinstance(action, Wait):
                    wake(action.until)
                elif isinstance(action, Evict):
                    result = await self.kube.evict(namespace, name, action.grace_seconds)
                    kind = result.split(":", 1)[0]
                    if kind == "Error":
                        log.warning("evicting %s: %s", name, result)
                    fresh = PodDrain.from_pod(pod)
                    for follow in after_eviction(fresh, kind, now, d.stop_by):
                        if isinstance(follow, Annotate):
                            try:
                                await self._patch_pod(namespace, pod, follow.annotations)
                            except KubeError as exc:
                                log.info("pod %s: %s", name, exc)
                        elif isinstance(follow, RecordEvent):
                            if follow.reason != "EvictionRefused" or fresh.marks.eviction_attempts + 1 in (1, 2) \
                                    or (fresh.marks.eviction_attempts + 1) % 10 == 0:
                                record(follow)
                    if kind == "Evicted":
                        gone(pod)
                        outcome.drained += 1
                        outcome.cut += d.at_risk
                        metrics.DRAINS.inc()
                    else:
                        retry = parse_rfc3339((pod["metadata"].get("annotations") or {}).get("llmfleet.dev/eviction-retry-at"))
                        wake(retry or now)
                elif isinstance(action, Delete):
                    try:
                        await self.kube.delete("Pod", namespace, name, grace_seconds=action.grace_seconds)
                    except KubeError as exc:
                        log.warning("deleting %s: %s", name, exc)
                        wake(now)
                        continue
                    gone(pod)
                    outcome.drained += 1
                    outcome.cut += d.at_risk
                    metrics.DRAINS.inc()
        return outcome

    # --- status -------------------------------------------------------------------------

    @staticmethod
    def draining_status(pods: list[dict]) -> dict:
        """status.spot's drainingPods (the first MAX_DRAINING_PODS by name) and drainingPodCount."""
        draining = SpotRuntime.draining_pods(pods)
        return {"drainingPods": draining[:MAX_DRAINING_PODS], "drainingPodCount": len(draining)}

    @staticmethod
    def draining_pods(pods: list[dict]) -> list[dict]:
        out = []
        for pod in pods:
            a = pod["metadata"].get("annotations") or {}
            if DRAIN_STARTED in a:
                out.append({"name": pod["metadata"]["name"], "node": (pod.get("spec") or {}).get("nodeName"),
                            "startedAt": a.get(DRAIN_STARTED), "deadline": a.get(DRAIN_DEADLINE)})
        return sorted(out, key=lambda x: x["name"])

    @staticmethod
    def interrupted_condition(pods: list[dict], view: SpotView | None) -> Condition:
        draining = SpotRuntime.draining_pods(pods)
        if draining:
            nodes = sorted({d["node"] or "?" for d in draining})
            return Condition(type="SpotInterrupted", status="True", reason="Draining",
                             message=f"{len(draining)} pod(s) draining off reclaimed node(s) {_first(nodes)}: "
                                     + _first([d["name"] for d in draining]))
        advised = [p["metadata"]["name"] for p in pods if DRAIN_SURGE in (p["metadata"].get("annotations") or {})]
        if advised:
            return Condition(type="SpotInterrupted", status="False", reason="ReplacementStarted",
                             message=f"rebalance recommendation: replacement started for {', '.join(advised)}")
        return Condition(type="SpotInterrupted", status="False", reason="NoInterruption",
                         message="no engine pod of this service is on a node with an interruption notice")

    async def pool_status(self, pool_obj: dict, pool: SpotPoolSpec, view: SpotView, service: tuple[str, str],
                          drain_seconds: int, outcome: Outcome, now: datetime) -> dict | None:
        """Write the SpotPool's status when it changes; returns the pool object as written (or None)."""
        name = pool_obj["metadata"]["name"]
        needs = self.needed.setdefault(name, {})
        needs[service] = drain_seconds
        needed = max(needs.values())
        lock = self.pool_locks.setdefault(name, asyncio.Lock())

        def fields(obj: dict) -> tuple[dict, dict]:
            old = obj.get("status") or {}
            entries, new = interrupted_nodes_status(view.scan.notices, old.get("interruptedNodes"), now)
            spot_nodes = [n for n in view.nodes if is_spot_node(n, pool)]
            od_sel = pool.on_demand.node_selector
            od_nodes = [n for n in view.nodes if not is_spot_node(n, pool) and all(
                ((n["metadata"].get("labels") or {}).get(k) == v) for k, v in od_sel.items())]
            check = check_notice_length(spot_nodes, pool, needed, view.scan.notices).condition()
            old_conds = [Condition.model_validate(c) for c in old.get("conditions") or []]
            prev = next((c for c in old_conds if c.type == "NoticeTooShort"), None)
            cond = Condition(type="NoticeTooShort", observed_generation=obj["metadata"].get("generation"),
                             last_transition_time=(prev.last_transition_time if prev is not None
                                                   and prev.status == check["status"] else now),
                             **{k: check[k] for k in ("status", "reason", "message")})
            conds = [c for c in old_conds if c.type != "NoticeTooShort"] + [cond]
            new_fields = {
                "observedGeneration": obj["metadata"].get("generation"),
                "spotNodes": len(spot_nodes),
                "onDemandNodes": len(od_nodes),
                "interruptionsSeen": int(old.get("interruptionsSeen") or 0) + new,
                "podsDrained": int(old.get("podsDrained") or 0) + outcome.drained,
                "requestsCut": int(old.get("requestsCut") or 0) + outcome.cut,
                "interruptedNodes": entries,
                "interruptedNodeCount": len(view.scan.notices),
                "conditions": [c.to_wire() for c in conds],
            }
            changed = {k: v for k, v in new_fields.items() if old.get(k) != v}
            return new_fields, changed

        _, changed = fields(pool_obj)
        if not changed:
            return None
        async with lock:
            fresh = await self.kube.get("SpotPool", None, name)  # counters add to the latest value
            if fresh is None:
                return None
            _, changed = fields(fresh)
            if not changed:
                return fresh
            if "interruptionsSeen" in changed and changed["interruptionsSeen"] > int(
                    (fresh.get("status") or {}).get("interruptionsSeen") or 0):
                for entry in changed.get("interruptedNodes") or []:
                    if not entry["advisory"] and entry["name"] not in {
                            e.get("name") for e in (fresh.get("status") or {}).get("interruptedNodes") or []}:
                        self.post_event(fresh, "Warning", "SpotInterrupted",
                                        f"node {entry['name']}: {entry['signal']}, deadline {entry['deadline']}")
            return await self.kube.patch("SpotPool", None, name, {"status": changed}, subresource="status")


def _first(names: list[str], shown: int = 20) -> str:
    """Names for a condition message, the first `shown` of them: a mass interruption must not
    outgrow the message's bound (32 KiB) or the status write."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def fallback_event(before: Mapping, after: Mapping) -> tuple[str, str] | None:
    """(reason, message) when the fallback moved replicas, else None."""
    b, a = int(before.get("fallbackReplicas") or 0), int(after.get("fallbackReplicas") or 0)
    if a > b:
        return "SpotFallback", f"{a} spot replica(s) run on on-demand nodes (was {b})"
    if a < b:
        return "SpotReturned", f"{b - a} replica(s) back to spot ({a} still on on-demand)"
    return None


__all__ = ["SpotRuntime", "SpotView", "engine_drain", "fallback_event", "format_rfc3339", "node_signature"]
