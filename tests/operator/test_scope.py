"""Served namespaces → kopf's settings: what an operator run with `--namespace` may not do, it
does not try.

On the bed, an operator run with `--namespace team-a` and the chart's RBAC (no right to
list Namespaces) logged 18 ERROR lines (the 403s of kopf's Namespace list, then watch, each
retried 9 times) and resumed its LLMService 54 s after start. Exact names turn kopf's
scanning off; globs and cluster-wide installs keep kopf's default. And kopf posted the
Events of SpotPools (cluster-scoped) to `default`, where that operator may not create
Events (9 ERROR lines, the Event lost): with `--namespace` they go to `$POD_NAMESPACE`.
"""

from __future__ import annotations

import asyncio
import logging

import kopf
import pytest
from kopf._cogs.structs import references
from kopf._core.reactor import observation
from llmfleet.operator.cli import build_parser
from llmfleet.operator.handlers import kopf_handlers
from llmfleet.operator.handlers.scope import cluster_events_namespace, is_exact_namespace, scanning_disabled

DEFAULT = kopf.OperatorSettings().scanning.disabled  # kopf's default: scanning on


@pytest.mark.parametrize(("namespaces", "disabled"), [
    ([], False),                              # cluster-wide: kopf's default, CRD watch kept
    (["team-a"], True),
    (["team-a", "team-b", "default"], True),
    (["team-*"], False),                      # a glob: kopf must list Namespaces to expand it
    (["team-a", "team-?"], False),            # one glob among names is enough
    (["team-a", "!kube-system"], False),      # a negation
    (["team-a,team-b"], False),               # kopf's comma list
    ([""], False),                            # not a name
])
def test_scanning_is_off_exactly_when_every_served_namespace_is_a_name(namespaces, disabled):
    assert scanning_disabled(namespaces) is disabled


@pytest.mark.parametrize("pattern", ["team-a", "default", "team-*", "!kube-system", "a,b", "team-?", "*"])
def test_a_name_is_what_kopf_serves_without_listing_namespaces(pattern):
    """The same split as kopf's own fallback (select_specific_namespaces)."""
    assert is_exact_namespace(pattern) is (pattern in references.select_specific_namespaces([pattern]))


@pytest.fixture
def runtime(monkeypatch):
    for attr in ("reconciler", "node_events_namespace", "node_event_watch", "check_secrets", "metrics_address",
                 "metrics_port", "namespaces", "scanning_disabled", "cluster_events_namespace"):
        monkeypatch.setattr(kopf_handlers.Runtime, attr, getattr(kopf_handlers.Runtime, attr))
    monkeypatch.setattr(kopf_handlers.KubeClient, "from_environment", classmethod(lambda cls: object()))
    monkeypatch.setattr(kopf_handlers.metrics, "serve", lambda address, port: None)
    monkeypatch.setattr(kopf_handlers, "NodeEventWatch", NoWatch)
    return kopf_handlers.Runtime


class NoWatch:
    def __init__(self, *args):
        pass

    def start(self, loop):
        return self


def started_with(argv: list[str]) -> kopf.OperatorSettings:
    """`llmfleet-operator run <argv>` up to kopf's startup handler; the settings it leaves."""
    args = build_parser().parse_args(["run", *argv])
    kopf_handlers.configure_runtime(engine_image=None, check_secrets=False, metrics_address=None,
                                    metrics_port=8080, namespaces=args.namespace,
                                    node_events_namespace=args.node_events_namespace)
    settings = kopf.OperatorSettings()
    asyncio.run(kopf_handlers.configure(settings=settings, logger=logging.getLogger("test")))
    return settings


@pytest.mark.parametrize(("argv", "disabled"), [
    ([], DEFAULT),
    (["-A"], DEFAULT),
    (["-n", "team-a"], True),
    (["--namespace", "team-a", "--namespace", "team-b"], True),
    (["-n", "team-*"], DEFAULT),
])
def test_run_sets_kopf_scanning_from_its_namespaces(runtime, argv, disabled):
    assert started_with(argv).scanning.disabled is disabled


def test_the_choice_is_logged_once_at_startup(runtime, caplog):
    with caplog.at_level(logging.INFO, logger="test"):
        started_with(["-n", "team-a", "-n", "team-b"])
    lines = [r.getMessage() for r in caplog.records if "by name" in r.getMessage()]
    assert lines == ["serving namespaces team-a, team-b by name: kopf lists and watches neither Namespaces nor "
                     "CRDs (a CRD created from now on is seen after a restart)"]


def test_kopf_then_serves_the_names_without_asking_the_api_server():
    """kopf's own namespace observer with those settings: the names at once, no request (there
    is no API server here: a list or watch would fail or hang instead)."""
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = scanning_disabled(["team-a", "team-b"])

    async def scenario() -> set:
        insights = references.Insights()
        await insights.backbone.fill(resources=[
            references.Resource("", "v1", "namespaces", namespaced=False, verbs=["list", "watch"])])
        task = asyncio.create_task(observation.namespace_observer(
            clusterwide=False, namespaces=["team-a", "team-b"], insights=insights, settings=settings))
        try:
            await asyncio.wait_for(insights.ready_namespaces.wait(), timeout=2)
            return set(insights.namespaces)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert asyncio.run(scenario()) == {"team-a", "team-b"}


# --- Events about cluster-scoped objects ----------------------------------------------------


@pytest.mark.parametrize(("namespaces", "pod_namespace", "expected"), [
    ([], "llmfleet-system", None),               # cluster-wide: kopf's choice (default), as before
    (["team-a"], "llmfleet-system", "llmfleet-system"),
    (["team-*"], "llmfleet-system", "llmfleet-system"),  # the chart's Role there does not care how ns are named
    (["team-a"], None, None),                    # run outside a pod: nothing to go by
    (["team-a"], "", None),
])
def test_events_on_cluster_scoped_objects_go_to_the_operator_namespace_when_namespaced(
        namespaces, pod_namespace, expected):
    assert cluster_events_namespace(namespaces, pod_namespace) == expected


def kopf_login(monkeypatch, default_namespace=None) -> kopf.ConnectionInfo | None:
    monkeypatch.setattr(kopf, "login_via_client", lambda **kw: kopf.ConnectionInfo(
        server="https://api.example:6443", token="t", default_namespace=default_namespace))
    return kopf_handlers.login(logger=logging.getLogger("test"), settings=kopf.OperatorSettings())


@pytest.mark.parametrize(("argv", "namespace"), [
    (["-n", "team-a"], "llmfleet-system"),
    (["-A"], None),
    ([], None),
])
def test_login_carries_the_namespace_kopf_posts_spotpool_events_to(runtime, monkeypatch, argv, namespace):
    monkeypatch.setenv("POD_NAMESPACE", "llmfleet-system")
    started_with(argv)
    info = kopf_login(monkeypatch)
    assert info is not None and info.default_namespace == namespace
    assert info.server == "https://api.example:6443" and info.token == "t"  # the rest is kopf's own login


def test_login_keeps_a_namespace_the_kubeconfig_already_names(runtime, monkeypatch):
    monkeypatch.setenv("POD_NAMESPACE", "llmfleet-system")
    started_with(["-n", "team-a"])
    assert kopf_login(monkeypatch, default_namespace="mine").default_namespace == "mine"


def test_our_login_replaces_kopfs_fallback_login():
    from kopf._core.intents import causes

    handlers = kopf.get_default_registry()._activities.get_handlers(activity=causes.Activity.AUTHENTICATION)
    assert [h.fn for h in handlers] == [kopf_handlers.login]
