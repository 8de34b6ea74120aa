"""Karpenter's Events about Nodes: one narrow watch on the namespace they are stored in.

An Event about a cluster-scoped object (a Node) is stored in the `default` namespace: that
is where client-go's recorders put it (both core/v1 and events.k8s.io/v1), and the only
namespace where the API server accepts an Event whose involvedObject has no namespace. Any
other Event is a tenant's to write (spot/signals.py, `trusted_node_event`), so the operator
never watches Events cluster-wide: `NodeEventWatch` lists and watches the Events of that one
namespace, with the server-side field selector `involvedObject.kind=Node` (field selectors
have no OR, so the reasons are filtered here), whichever namespaces the operator serves:

| operator flag                          | Node Events come from                          |
| -------------------------------------- | ---------------------------------------------- |
| `--node-events-namespace default` (default) | `NodeEventWatch` on `default`             |
| `--node-events-namespace ''`           | nowhere (Event signals off; taints still work) |

It runs in a daemon thread of its own, keeps a summary of each trusted Spot Event
(`event_summary`), and hands it to the spot feed (`SpotRuntime.event_seen`, then
`Reconciler.spot_changed`) on the event loop. The chart's RBAC grants list/watch on Events
in that namespace only; Events elsewhere are only created and patched (the operator's own).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from llmfleet.operator.api.spotpool import DEFAULT_SIGNALS
from llmfleet.operator.spot.event_trust import event_summary

log = logging.getLogger(__name__)

DEFAULT_NODE_EVENTS_NAMESPACE = "default"  # where Events about cluster-scoped objects are stored
FIELD_SELECTOR = "involvedObject.kind=Node"
# Events on Nodes that a SpotPool's NodeEvent signals name by default (Karpenter's).
NODE_EVENT_REASONS = frozenset(s.key for s in DEFAULT_SIGNALS if s.source == "NodeEvent")
WATCH_TIMEOUT_SECONDS = 300  # the API server ends each watch after this; it is resumed from the last version
RETRY_SECONDS = (1, 2, 5, 10, 30)  # after a failed list or watch, then every 30 s


def pool_event_reasons(pool: Mapping) -> frozenset[str]:
    """The Event reasons a SpotPool's NodeEvent signals name (its spec as stored; without
    `spec.interruption.signals`, the defaults)."""
    signals = ((pool.get("spec") or {}).get("interruption") or {}).get("signals")
    if not isinstance(signals, list):
        return NODE_EVENT_REASONS
    return frozenset(str(s["key"]) for s in signals
                     if isinstance(s, Mapping) and s.get("source") == "NodeEvent" and s.get("key"))


class EventReasons:
    """The Event reasons worth keeping: the defaults (a service without a SpotPool drains on
    them) and every SpotPool's NodeEvent signals. The SpotPool watch feeds it; both Event
    filters (kopf's `when=` and NodeEventWatch) read it. An Event that came before a pool
    named its reason is not replayed."""

    def __init__(self) -> None:
        self._by_pool: dict[str, frozenset[str]] = {}
        self._current = NODE_EVENT_REASONS

    def pool_seen(self, name: str, pool: Mapping, deleted: bool = False) -> bool:
        """Record a SpotPool's reasons; True when the set worth keeping changed."""
        if deleted:
            self._by_pool.pop(name, None)
        else:
            self._by_pool[name] = pool_event_reasons(pool)
        before, self._current = self._current, NODE_EVENT_REASONS.union(*self._by_pool.values())
        return before != self._current

    def __contains__(self, reason: object) -> bool:
        return reason in self._current


REASONS = EventReasons()  # the operator process's; kopf's `when=` filters take no other state


def is_node_spot_event(body: Mapping, reasons: EventReasons | frozenset[str] = REASONS) -> bool:
    """An Event about a Node whose reason a NodeEvent signal names (the defaults or a SpotPool's)."""
    about = body.get("involvedObject") or body.get("regarding") or {}
    return about.get("kind") == "Node" and body.get("reason") in reasons


def watched_events_namespace(events_namespace: str | None) -> str | None:
    """The namespace to watch for Node Events (the flag's value), None when turned off ('')."""
    return events_namespace or None


class EventSource(Protocol):
    """Blocking list and watch of one kind (`KubeClient.list_blocking` / `watch_blocking`)."""

    def list_blocking(self, kind: str, namespace: str | None, field_selector: str = "") -> tuple[list[dict], str]: ...

    def watch_blocking(
        self, kind: str, namespace: str | None, *, field_selector: str = "", resource_version: str = "",
        timeout_seconds: int = WATCH_TIMEOUT_SECONDS,
    ) -> Iterator[dict]: ...


Feed = Callable[[str, dict], None]  # (ADDED | MODIFIED | DELETED, the Event)


def _uid(body: Mapping) -> str:
    meta = body.get("metadata") or {}
    return str(meta.get("uid") or meta.get("name"))


class NodeEventWatch:
    """List + watch Node Events in one namespace; each Spot Event goes to `feed`.

    `follow()` is the loop (blocking; the tests run it with a scripted source); `start()` runs
    it in a daemon thread and `feed` on `loop` (kopf's), so the Reconciler is only ever touched
    from the event loop. A daemon thread, not `asyncio.to_thread`: a watch blocks for up to
    WATCH_TIMEOUT_SECONDS and must not hold up the operator's exit.
    """

    def __init__(self, source: EventSource, namespace: str, feed: Feed,
                 timeout_seconds: int = WATCH_TIMEOUT_SECONDS, retry: Iterable[float] = RETRY_SECONDS):
        self.source = source
        self.namespace = namespace
        self.feed = feed
        self.timeout_seconds = timeout_seconds
        self.retry = tuple(retry)
        self.stopping = threading.Event()
        self.known: dict[str, dict] = {}  # uid -> summary of each Spot Event of this namespace fed so far
        self.thread: threading.Thread | None = None

    # --- one pass each ------------------------------------------------------------------

    def relist(self) -> str:
        """List, feed what is there (DELETED for what went meanwhile); the version to watch from."""
        items, version = self.source.list_blocking("Event", self.namespace, FIELD_SELECTOR)
        listed = {_uid(e): summary for e in items
                  if is_node_spot_event(e) and (summary := event_summary(e)) is not None}
        for uid in [u for u in self.known if u not in listed]:
            self.feed("DELETED", self.known.pop(uid))
        for uid, body in listed.items():
            if self.known.get(uid) != body:
                self.feed("ADDED" if uid not in self.known else "MODIFIED", body)
        self.known = listed
        return version

    def watch(self, version: str) -> str | None:
        """Watch from `version` until the server ends it; the version to resume from, or None
        when the server says it is too old (410 Gone: list again)."""
        for event in self.source.watch_blocking(
            "Event", self.namespace, field_selector=FIELD_SELECTOR, resource_version=version,
            timeout_seconds=self.timeout_seconds,
        ):
            if self.stopping.is_set():
                break
            type_, body = event.get("type"), event.get("object") or {}
            if type_ == "ERROR":
                log.info("Node Events in %s: watch ended by the server (%s): listing again",
                         self.namespace, body.get("message") or body.get("reason"))
                return None
            version = (body.get("metadata") or {}).get("resourceVersion") or version
            if type_ not in ("ADDED", "MODIFIED", "DELETED") or not is_node_spot_event(body):
                continue  # BOOKMARK, or a Node Event no signal names
            summary = event_summary(body)  # only what the scan reads; None: not trusted
            if summary is None:
                continue
            if type_ == "DELETED":
                self.known.pop(_uid(body), None)
            else:
                self.known[_uid(body)] = summary
            self.feed(type_, summary)
        return version

    def follow(self) -> None:
        """List, then watch and resume, until stop(); list again after a 410 or a failure."""
        version: str | None = None
        failures = 0
        while not self.stopping.is_set():
            try:
                if version is None:
                    version = self.relist()
                version = self.watch(version)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the API server may be away: retry, never give up
                delay = self.retry[min(failures, len(self.retry) - 1)] if self.retry else 1
                failures += 1
                version = None
                log.warning("Node Events in %s: %s; retrying in %s s", self.namespace, exc, delay)
                self.stopping.wait(delay)

    # --- as a background thread ---------------------------------------------------------

    def start(self, loop: Any) -> NodeEventWatch:
        """Run follow() in a daemon thread; feed on `loop` (an asyncio loop) from there."""
        on_thread = self.feed

        def feed_on_loop(type_: str, body: dict) -> None:
            try:
                loop.call_soon_threadsafe(on_thread, type_, body)
            except RuntimeError:  # the loop is closed: the operator is exiting
                self.stopping.set()

        self.feed = feed_on_loop
        self.thread = threading.Thread(target=self.follow, name=f"node-events-{self.namespace}", daemon=True)
        self.thread.start()
        log.info("watching Node Events in namespace %s (%s)", self.namespace, FIELD_SELECTOR)
        return self

    def stop(self) -> None:
        """Ask the loop to end; it does at the next event, or when the server ends the watch."""
        self.stopping.set()
