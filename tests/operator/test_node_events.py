"""Node Events (Karpenter's) reach the spot handlers whichever namespaces the operator serves.

Pure parts: which namespace needs a watch of its own, which Events count. The watch loop with
a scripted API server (list, watch, bookmarks, 410, a failure). The wiring: `run -n team-a`
starts the watch on `default` at startup and feeds the Reconciler on kopf's loop; and a
SpotInterrupted Event fed that way drains the pod on its node (the in-memory API server of
test_handlers.py; e2e/test_spot_events.py does the same on the real control plane).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import kopf
import pytest
from fakes import pooled_world, spot_pod_on, tick
from llmfleet.operator.adapters.kube import KubeClient, KubeError
from llmfleet.operator.api.spotpool import DEFAULT_SIGNALS
from llmfleet.operator.cli import build_parser
from llmfleet.operator.handlers import kopf_handlers
from llmfleet.operator.handlers.node_events import (
    FIELD_SELECTOR,
    NODE_EVENT_REASONS,
    EventReasons,
    NodeEventWatch,
    is_node_spot_event,
    pool_event_reasons,
    watched_events_namespace,
)
from llmfleet.operator.spot.drain_state import DRAIN_STARTED
from llmfleet.operator.spot.notice import format_rfc3339


def event(name: str, reason: str = "SpotInterrupted", kind: str = "Node", node: str = "gpu-spot-a",
          rv: str = "1", when: str = "2026-01-01T12:00:00Z") -> dict:
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "resourceVersion": rv},
            "involvedObject": {"kind": kind, "name": node, "uid": f"uid-{node}", "apiVersion": "v1"},
            "reason": reason, "type": "Warning", "lastTimestamp": when, "message": "spot interruption"}


# --- which namespace, which Events ---------------------------------------------------------


@pytest.mark.parametrize(("events_ns", "watch"), [
    ("default", "default"),  # where the API server stores Events about Nodes
    ("kube-events", "kube-events"),  # a distribution that stores them elsewhere
    ("", None),  # turned off
    (None, None),
])
def test_node_events_are_watched_in_one_namespace_only(events_ns, watch):
    assert watched_events_namespace(events_ns) == watch


def test_the_reasons_are_the_default_node_event_signals():
    assert NODE_EVENT_REASONS == {s.key for s in DEFAULT_SIGNALS if s.source == "NodeEvent"}
    assert NODE_EVENT_REASONS == {"SpotInterrupted", "SpotRebalanceRecommendation"}


@pytest.mark.parametrize(("body", "counts"), [
    (event("a"), True),
    (event("a", reason="SpotRebalanceRecommendation"), True),
    (event("a", reason="NodeNotReady"), False),  # the kubelet's, also about a Node, also in default
    (event("a", kind="Pod"), False),
    ({"reason": "SpotInterrupted", "regarding": {"kind": "Node", "name": "n"}}, True),  # events.k8s.io/v1
    ({"reason": "SpotInterrupted"}, False),
])
def test_only_spot_events_about_nodes_count(body, counts):
    assert is_node_spot_event(body) is counts


# --- the watch loop ------------------------------------------------------------------------


class ScriptedEvents:
    """An API server that answers lists and watches from scripts; a watch script may be an
    exception to raise. When the watch scripts run out, the loop is stopped."""

    def __init__(self, lists: list[list[dict]], watches: list) -> None:
        self.lists = lists
        self.watches = watches
        self.calls: list[tuple] = []
        self.loop: NodeEventWatch | None = None

    def list_blocking(self, kind, namespace, field_selector=""):
        self.calls.append(("list", kind, namespace, field_selector))
        return self.lists.pop(0), f"list-{len(self.calls)}"

    def watch_blocking(self, kind, namespace, *, field_selector="", resource_version="", timeout_seconds=300):
        self.calls.append(("watch", kind, namespace, field_selector, resource_version))
        if not self.watches:
            assert self.loop is not None
            self.loop.stop()
            return
        script = self.watches.pop(0)
        if isinstance(script, Exception):
            raise script
        yield from script


def test_the_loop_lists_watches_resumes_and_relists_after_gone_or_failure():
    a, b = event("a"), event("b", reason="SpotRebalanceRecommendation", node="gpu-spot-b")
    a2 = {**a, "metadata": {**a["metadata"], "resourceVersion": "7"}, "count": 2}
    kubelet = event("k", reason="NodeReady")
    source = ScriptedEvents(
        lists=[[a, kubelet], [b], [b]],
        watches=[
            [{"type": "BOOKMARK", "object": {"kind": "Event", "metadata": {"resourceVersion": "5"}}},
             {"type": "ADDED", "object": b},
             {"type": "MODIFIED", "object": {**kubelet, "metadata": {**kubelet["metadata"], "resourceVersion": "6"}}},
             {"type": "MODIFIED", "object": a2}],
            [],  # the server ended the watch (timeout): resume from the last version
            [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}],
            ConnectionError("API server away"),
        ],
    )
    fed: list[tuple[str, str]] = []
    loop = NodeEventWatch(source, "default", lambda t, body: fed.append((t, body["metadata"]["name"])), retry=(0,))
    source.loop = loop
    loop.follow()

    assert fed == [
        ("ADDED", "a"),  # the first list (the kubelet's NodeReady is not a signal)
        ("ADDED", "b"), ("MODIFIED", "a"),  # the first watch
        ("DELETED", "a"),  # after the 410, the list no longer has a: it went while we were away
        # after the failure the list is the same again: nothing fed twice
    ]
    assert [c[0] for c in source.calls] == ["list", "watch", "watch", "watch", "list", "watch", "list", "watch"]
    assert all(c[2] == "default" and c[3] == FIELD_SELECTOR for c in source.calls)
    versions = [c[4] for c in source.calls if c[0] == "watch"]
    assert versions == ["list-1", "7", "7", "list-5", "list-7"]
    assert set(loop.known) == {"uid-b"}


def test_the_loop_backs_off_while_the_list_fails():
    class Failing(ScriptedEvents):
        def list_blocking(self, kind, namespace, field_selector=""):
            self.calls.append(("list",))
            if len(self.calls) >= 3:
                assert self.loop is not None
                self.loop.stop()
            raise ConnectionError("refused")

    source = Failing([], [])
    loop = NodeEventWatch(source, "default", lambda t, b: None, retry=(0, 0.01))
    source.loop = loop
    loop.follow()
    assert len(source.calls) == 3


# --- the adapter's blocking watch: a streamed body, one JSON event per line --------------------


class StreamedResponse:
    def __init__(self, status: int, chunks: list[bytes]) -> None:
        self.status, self.reason = status, "Gone" if status >= 400 else "OK"
        self.response = self
        self.chunks = chunks
        self.released = False

    def stream(self, amt=None, decode_content=True):
        yield from self.chunks

    def read(self):
        return b"".join(self.chunks)

    def release_conn(self):
        self.released = True


class StreamingApi:
    def __init__(self, resp: StreamedResponse) -> None:
        self.resp = resp
        self.query: list = []

    def param_serialize(self, method, path, query_params, header_params, auth_settings, body=None):
        self.query = query_params
        return method, path, header_params, body, None

    def call_api(self, method, url, header_params, body, post_params, _request_timeout):
        self.timeout = _request_timeout
        return self.resp


def test_the_adapter_streams_watch_events_split_anywhere_in_the_body():
    resp = StreamedResponse(200, [b'{"type": "ADDED", "object": {"reason": "Spot', b'Interrupted"}}\n{"type": "BOO',
                                  b'KMARK", "object": {}}\n', b'\n{"type": "DELETED", "object": {}}'])
    api = StreamingApi(resp)
    got = list(KubeClient(api).watch_blocking("Event", "default", field_selector=FIELD_SELECTOR,
                                              resource_version="42", timeout_seconds=300))
    assert [e["type"] for e in got] == ["ADDED", "BOOKMARK", "DELETED"]
    assert got[0]["object"]["reason"] == "SpotInterrupted"
    assert ("fieldSelector", FIELD_SELECTOR) in api.query and ("resourceVersion", "42") in api.query
    assert ("watch", "true") in api.query and ("timeoutSeconds", "300") in api.query
    assert api.timeout[1] > 300  # the read timeout outlasts the server's own end of the watch
    assert resp.released


def test_the_adapter_reports_a_refused_watch():
    resp = StreamedResponse(403, [b'{"kind": "Status", "message": "events is forbidden"}'])
    with pytest.raises(KubeError, match="events is forbidden"):
        list(KubeClient(StreamingApi(resp)).watch_blocking("Event", "default"))
    assert resp.released


# --- the wiring: CLI -> startup -> the Reconciler ---------------------------------------------


@pytest.fixture
def runtime(monkeypatch):
    """kopf_handlers.Runtime as `run` leaves it, restored afterwards."""
    for attr in ("reconciler", "node_events_namespace", "node_event_watch", "check_secrets", "metrics_address",
                 "metrics_port", "namespaces", "scanning_disabled", "cluster_events_namespace"):
        monkeypatch.setattr(kopf_handlers.Runtime, attr, getattr(kopf_handlers.Runtime, attr))
    monkeypatch.setattr(kopf_handlers.metrics, "serve", lambda address, port: None)
    return kopf_handlers.Runtime


def configure_from(argv: list[str]) -> None:
    args = build_parser().parse_args(["run", *argv])
    kopf_handlers.configure_runtime(engine_image=None, check_secrets=False, metrics_address=None,
                                    metrics_port=8080, namespaces=args.namespace,
                                    node_events_namespace=args.node_events_namespace)


@pytest.mark.parametrize(("argv", "watched"), [
    (["-n", "team-a"], "default"),
    (["-n", "team-a", "-n", "default"], "default"),
    (["-A"], "default"),  # all namespaces: still only default's Events, not every tenant's
    ([], "default"),
    (["-n", "team-a", "--node-events-namespace", "kube-events"], "kube-events"),
    (["-n", "team-a", "--node-events-namespace", ""], None),
])
def test_run_watches_node_events_in_their_namespace_only(runtime, argv, watched):
    configure_from(argv)
    assert runtime.node_events_namespace == watched


class BlockingEvents(ScriptedEvents):
    """One SpotInterrupted Event listed; then a watch that blocks until the loop is stopped."""

    def __init__(self, body: dict) -> None:
        super().__init__([[body]], [])
        self.released = threading.Event()

    def watch_blocking(self, kind, namespace, **kw):
        self.calls.append(("watch", kind, namespace))
        self.released.wait(5)
        return iter(())


def test_startup_starts_the_watch_and_feeds_the_reconciler_on_the_loop(runtime, monkeypatch):
    source = BlockingEvents(event("karpenter-1"))
    monkeypatch.setattr(kopf_handlers.KubeClient, "from_environment", classmethod(lambda cls: source))
    configure_from(["-n", "team-a"])
    loop_thread: list[int] = []

    async def scenario() -> None:
        await kopf_handlers.configure(settings=kopf.OperatorSettings(), logger=logging.getLogger("test"))
        rec = runtime.reconciler
        seen = rec.spot.event_seen

        def on_loop(body, deleted=False):
            loop_thread.append(threading.get_ident())
            return seen(body, deleted)

        rec.spot.event_seen = on_loop
        deadline = time.monotonic() + 5
        while "uid-karpenter-1" not in rec.spot.node_events and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        watch = runtime.node_event_watch
        await kopf_handlers.stop_node_event_watch()
        assert watch is not None and watch.stopping.is_set() and runtime.node_event_watch is None
        source.released.set()
        watch.thread.join(5)
        assert not watch.thread.is_alive()

    asyncio.run(scenario())
    assert "uid-karpenter-1" in runtime.reconciler.spot.node_events
    assert loop_thread and set(loop_thread) == {threading.get_ident()}  # fed on the loop, not the watch thread
    assert source.calls[0] == ("list", "Event", "default", FIELD_SELECTOR)


def test_serving_every_namespace_watches_the_events_of_default_only(runtime, monkeypatch):
    """No kopf watch of Events at all: one would carry every tenant's Events cluster-wide."""
    source = BlockingEvents(event("karpenter-1"))
    monkeypatch.setattr(kopf_handlers.KubeClient, "from_environment", classmethod(lambda cls: source))
    configure_from(["-A"])

    async def scenario() -> None:
        await kopf_handlers.configure(settings=kopf.OperatorSettings(), logger=logging.getLogger("test"))
        for _ in range(100):
            if source.calls:
                break
            await asyncio.sleep(0.01)
        runtime.node_event_watch.stop()
        source.released.set()

    asyncio.run(scenario())
    assert source.calls[0][:3] == ("list", "Event", "default")
    watched = {h.selector.any_name for h in kopf.get_default_registry()._watching.get_all_handlers()}
    assert "events" not in watched


def test_a_karpenter_event_from_the_default_namespace_drains_the_pod_on_its_node(runtime):
    """The feed both watches use: SpotRuntime.event_seen, then Reconciler.spot_changed."""
    world, rec = pooled_world()
    runtime.reconciler = rec
    pod = spot_pod_on(world, "gpu-spot-a")["metadata"]["name"]
    tick(world, rec)
    assert DRAIN_STARTED not in (world.pods()[pod]["metadata"].get("annotations") or {})

    source = ScriptedEvents(lists=[[]], watches=[[{"type": "ADDED", "object": event(
        "gpu-spot-a.karpenter", when=format_rfc3339(world.now))}]])
    loop = NodeEventWatch(source, "default", kopf_handlers.feed_node_event)
    source.loop = loop
    loop.follow()
    tick(world, rec)

    assert world.pods()[pod]["metadata"]["annotations"][DRAIN_STARTED] == format_rfc3339(world.now)
    assert ("Normal", "DrainStarted") in [(t, r) for t, r, _ in world.events]
    pool = world.kube.objects[("SpotPool", None, "gpu-spot")]["status"]
    assert [n["name"] for n in pool["interruptedNodes"]] == ["gpu-spot-a"]

    # The Event fed again (kopf's watch too, with default served by glob): counted once.
    kopf_handlers.feed_node_event("MODIFIED", event("gpu-spot-a.karpenter", when=format_rfc3339(world.now)))
    tick(world, rec)
    assert len(rec.spot.node_events) == 1
    assert world.kube.objects[("SpotPool", None, "gpu-spot")]["status"]["interruptionsSeen"] == 1


def test_a_pools_own_event_reason_is_kept_while_the_pool_names_it():
    """A SpotPool whose NodeEvent signal names another reason (say a cluster's own notifier's
    `SpotTerminationNotice`): Events with that reason count from the moment the pool is seen,
    for as long as a pool names it; the defaults always count (services without a pool)."""
    reasons = EventReasons()
    custom = {"spec": {"interruption": {"signals": [
        {"source": "NodeEvent", "key": "SpotTerminationNotice", "noticeSeconds": 90},
        {"source": "NodeTaint", "key": "example.com/going"}]}}}
    notice = event("n1", reason="SpotTerminationNotice")
    assert not is_node_spot_event(notice, reasons)
    assert reasons.pool_seen("custom", custom) is True
    assert is_node_spot_event(notice, reasons)
    assert is_node_spot_event(event("n2", reason="SpotInterrupted"), reasons)  # the defaults stay
    assert is_node_spot_event(event("n3", reason="SpotTerminationNotice", kind="Pod"), reasons) is False
    assert reasons.pool_seen("custom", custom) is False  # nothing new
    assert reasons.pool_seen("plain", {"spec": {}}) is False  # no signals listed: the defaults
    assert reasons.pool_seen("custom", custom, deleted=True) is True
    assert not is_node_spot_event(notice, reasons)


def test_pool_event_reasons_reads_the_stored_spec():
    assert pool_event_reasons({"spec": {}}) == NODE_EVENT_REASONS
    assert pool_event_reasons({"spec": {"interruption": {"signals": []}}}) == frozenset()
    assert pool_event_reasons({"spec": {"interruption": {"signals": [
        {"source": "NodeEvent", "key": "A"}, {"source": "NodeAnnotation", "key": "B"}, "junk"]}}}) == {"A"}


def test_the_spotpool_watch_feeds_the_reasons_the_event_watch_reads():
    body = {"metadata": {"name": "custom-reason-pool", "generation": 1},
            "spec": {"interruption": {"signals": [{"source": "NodeEvent", "key": "SpotTerminationNotice"}]}}}
    notice = event("n1", reason="SpotTerminationNotice")
    try:
        kopf_handlers.on_pool_event(type=None, name="custom-reason-pool", body=body)
        assert is_node_spot_event(notice)
    finally:
        kopf_handlers.on_pool_event(type="DELETED", name="custom-reason-pool", body=body)
    assert not is_node_spot_event(notice)
