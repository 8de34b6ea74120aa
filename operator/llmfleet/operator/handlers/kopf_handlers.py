"""The kopf handlers: thin glue from kopf's causes to the Reconciler.

| kopf handler                                   | does                                                      |
| ---------------------------------------------- | --------------------------------------------------------- |
| startup                                        | settings (status storage, events, scanning), Reconciler, /metrics |
| indexes: Pods, Deployments, AutoscalePolicies, SpotPools, Nodes (briefs) | the world a sync reads (handlers/store.py): no API read in steady state; no Secret index (see observe.py) |
| LLMService create / update / resume            | sync with apply                                           |
| LLMService daemon (one worker per service)     | sync when due: periodic (scrape, autoscale), a drain's next step, or woken by a watch event below (a child changed, a reference appeared) |
| LLMService delete (optional: adds no finalizer) | forget the service's memory and metric series            |
| Deployment / Pod events (llmfleet labels)      | mark the owning service's status dirty and wake its worker |
| AutoscalePolicy create / update / resume       | policy status; wake its services                          |
| AutoscalePolicy / SpotPool events              | wake services waiting on (or using) that name (SpotPool: spec changes only, not our status writes); Secrets are not watched (existence is checked by metadata at each re-read) |
| Node events                                    | a taint/label/annotation/readiness change wakes pooled services (handlers/spot.py) |
| login                                          | kopf's client login; with `--namespace`, Events on cluster-scoped objects go to `$POD_NAMESPACE` |
| startup / cleanup: the routers' held requests  | a long poll per router pod (router_demand.py): held requests wake their service's worker at once (scale from zero) |
| startup / cleanup: the Node Event watch        | Events on Nodes in `default` (only there: no tenant can write them), with a reason a NodeEvent signal names: cached for the signal scan, wakes pooled services (handlers/node_events.py) |

kopf keeps its progress and diff-base in `status.kopf` (status storage), never in
annotations, so GitOps tools see no drift. The one piece of metadata kopf writes is its
finalizer: kopf requires one on objects that have daemons, so it can stop them before
the object goes (deleting an LLMService therefore needs the operator running).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

import kopf
from llmfleet.operator import metrics
from llmfleet.operator.adapters.drain_key import DrainKey
from llmfleet.operator.adapters.kube import KubeClient
from llmfleet.operator.api.resource import GROUP, VERSION
from llmfleet.operator.policy import AdmissionRules
from llmfleet.operator.render import Images
from llmfleet.operator.render.labels import MANAGED_BY_LABEL, MANAGER, SERVICE_LABEL
from llmfleet.operator.router_demand import RouterDemand

from .node_events import REASONS, NodeEventWatch, watched_events_namespace
from .reconciler import Reconciler
from .scope import cluster_events_namespace, scanning_disabled
from .spot import node_brief
from .store import INDEXES, IndexStore, brief

FINALIZER = "llmfleet.dev/operator"


class Runtime:
    """Process-wide state set at startup: the Reconciler and the options `run` was given."""

    reconciler: Reconciler | None = None
    images: Images = Images()
    check_secrets: bool = True
    admission: AdmissionRules = AdmissionRules()  # the admin's allow-lists (policy/admission.py)
    metrics_address: str = "0.0.0.0"
    metrics_port: int = metrics.METRICS_PORT
    node_events_namespace: str | None = None  # where Node Events are watched (handlers/node_events.py)
    node_event_watch: NodeEventWatch | None = None
    demand_watch: asyncio.Task | None = None  # the routers' held requests (router_demand.py)
    namespaces: tuple[str, ...] = ()  # served by name; empty: all
    scanning_disabled: bool = False  # kopf's settings.scanning.disabled (handlers/scope.py)
    cluster_events_namespace: str | None = None  # where Events on SpotPools go (None: kopf's, `default`)
    drain_key_file: str | None = None  # the key drain tokens derive from (adapters/drain_key.py)


def reconciler(handler_kwargs: dict | None = None) -> Reconciler:
    """The Reconciler, reading kopf's indexes (kopf passes them to every handler as kwargs)."""
    if Runtime.reconciler is None:
        raise kopf.TemporaryError("operator not started yet", delay=1)
    rec = Runtime.reconciler
    if rec.store is None and handler_kwargs is not None and all(i in handler_kwargs for i in INDEXES):
        rec.use_store(IndexStore({i: handler_kwargs[i] for i in INDEXES}))
    return rec


def post_event(body: dict, type_: str, reason: str, message: str) -> None:
    kopf.event(body, type=type_, reason=reason, message=message[:1024])


class _QuietSuccess(logging.Filter):
    """Drop kopf's 'Timer ... succeeded.' and per-event 'Handler ... succeeded.' lines: one per tick is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (msg.endswith("succeeded.") and ("Timer " in msg or "_event'" in msg))


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(field="status.kopf.last-handled-configuration")
    settings.persistence.finalizer = FINALIZER
    # Only the events we post on purpose (kopf.event); not one per handler log line.
    settings.posting.loggers = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Exact namespace names: no Namespace list/watch (the chart grants none: 54 s of 403
    # retries before kopf served anything) and no CRD watch; see handlers/scope.py.
    settings.scanning.disabled = Runtime.scanning_disabled
    if Runtime.scanning_disabled:
        logger.info("serving namespaces %s by name: kopf lists and watches neither Namespaces nor CRDs "
                    "(a CRD created from now on is seen after a restart)",
                    ", ".join(Runtime.namespaces))
    for name in ("kopf.objects", "kopf.activities"):
        logging.getLogger(name).addFilter(_QuietSuccess())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per scrape otherwise
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # one line per liveness probe otherwise
    kube = KubeClient.from_environment()
    Runtime.reconciler = Reconciler(
        kube=kube,
        post_event=post_event,
        images=Runtime.images,
        check_secrets=Runtime.check_secrets,
        drain_key=DrainKey(Runtime.drain_key_file),
        router_demand=RouterDemand.from_environment(kube),  # requests held by llmfleet-router: scale from zero
        admission=Runtime.admission,
    )
    demand = Runtime.reconciler.router_demand
    if demand is not None and demand.watching and Runtime.demand_watch is None:
        Runtime.demand_watch = asyncio.get_running_loop().create_task(demand.watch(Runtime.reconciler.demand_seen))
    if Runtime.node_events_namespace and Runtime.node_event_watch is None:
        Runtime.node_event_watch = NodeEventWatch(
            KubeClient.from_environment(), Runtime.node_events_namespace, feed_node_event
        ).start(asyncio.get_running_loop())
    try:
        metrics.serve(Runtime.metrics_address, Runtime.metrics_port)
    except OSError as exc:  # a second operator in the same network namespace (tests): no /metrics, still work
        logger.warning("cannot serve /metrics on %s:%d: %s", Runtime.metrics_address, Runtime.metrics_port, exc)


@kopf.on.login(errors=kopf.ErrorsMode.IGNORED)  # as kopf's own login handlers
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's login through the kubernetes client, with the namespace for Events about
    cluster-scoped objects when `run` chose one (handlers/scope.py); that login has none."""
    info = kopf.login_via_client(**kwargs)
    if info is not None and Runtime.cluster_events_namespace and not info.default_namespace:
        info = dataclasses.replace(info, default_namespace=Runtime.cluster_events_namespace)
    return info


@kopf.on.cleanup()
async def stop_node_event_watch(**_: Any) -> None:
    if Runtime.node_event_watch is not None:
        Runtime.node_event_watch.stop()
        Runtime.node_event_watch = None
    if Runtime.demand_watch is not None:
        Runtime.demand_watch.cancel()
        Runtime.demand_watch = None


# --- LLMService --------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, "llmservices", errors=kopf.ErrorsMode.TEMPORARY, backoff=5)
@kopf.on.create(GROUP, VERSION, "llmservices", errors=kopf.ErrorsMode.TEMPORARY, backoff=5)
@kopf.on.update(GROUP, VERSION, "llmservices", errors=kopf.ErrorsMode.TEMPORARY, backoff=5)
async def llmfleet_reconcile(body: kopf.Body, **kwargs: Any) -> None:
    await reconciler(kwargs).sync(dict(body), force_apply=True)


@kopf.daemon(GROUP, VERSION, "llmservices", cancellation_timeout=5.0, errors=kopf.ErrorsMode.TEMPORARY, backoff=5)
async def llmfleet_worker(stopped: kopf.DaemonStopped, body: kopf.Body, namespace: str | None, name: str,
                          **kwargs: Any) -> None:
    """The service's worker: sleeps until a watch event wakes it or its next sync is due (no
    polling); `body` is kopf's live view of the LLMService."""
    rec = reconciler(kwargs)
    stop = asyncio.ensure_future(stopped.wait())  # the service is going (or the operator): leave at once
    try:
        while not stopped:
            await rec.tick(dict(body))
            await rec.wait_for_work(namespace or "", name, stop=stop)
    finally:
        stop.cancel()


@kopf.on.delete(GROUP, VERSION, "llmservices", optional=True)
async def llmfleet_forget(namespace: str | None, name: str, **_: Any) -> None:
    if Runtime.reconciler is not None:
        await Runtime.reconciler.forget(namespace or "", name)


# --- indexes: what a sync reads (handlers/store.py) ---------------------------------------


@kopf.index("", "v1", "pods", labels={SERVICE_LABEL: kopf.PRESENT})
def llmfleet_pods_index(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict:
    return {(namespace, labels[SERVICE_LABEL]): brief(body)}


@kopf.index("apps", "v1", "deployments", labels={MANAGED_BY_LABEL: MANAGER, SERVICE_LABEL: kopf.PRESENT})
def llmfleet_deployments_index(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict:
    return {(namespace, labels[SERVICE_LABEL]): brief(body)}


@kopf.index(GROUP, VERSION, "autoscalepolicies")
def llmfleet_policies_index(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict:
    return {(namespace, name): brief(body)}


@kopf.index(GROUP, VERSION, "spotpools")
def llmfleet_pools_index(name: str, body: kopf.Body, **_: Any) -> dict:
    return {name: brief(body)}


@kopf.index("", "v1", "nodes")
def llmfleet_nodes_index(name: str, body: kopf.Body, **_: Any) -> dict:
    return {name: node_brief(body)}  # taints, labels, annotations, readiness: not the whole Node


# --- children: status follows readiness at once -------------------------------------------


@kopf.on.event("apps", "v1", "deployments", labels={MANAGED_BY_LABEL: MANAGER, SERVICE_LABEL: kopf.PRESENT})
@kopf.on.event("", "v1", "pods", labels={SERVICE_LABEL: kopf.PRESENT})
def on_child_event(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    if Runtime.reconciler is not None:
        Runtime.reconciler.mark_status(namespace or "", labels[SERVICE_LABEL])


# --- references ---------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, "autoscalepolicies", errors=kopf.ErrorsMode.TEMPORARY, backoff=5)
@kopf.on.create(GROUP, VERSION, "autoscalepolicies", errors=kopf.ErrorsMode.TEMPORARY, backoff=5)
@kopf.on.update(GROUP, VERSION, "autoscalepolicies", errors=kopf.ErrorsMode.TEMPORARY, backoff=5)
async def llmfleet_policy(body: kopf.Body, **_: Any) -> None:
    await reconciler().sync_policy(dict(body))


@kopf.on.event(GROUP, VERSION, "autoscalepolicies")
def on_policy_event(namespace: str | None, name: str, **_: Any) -> None:
    if Runtime.reconciler is not None:
        Runtime.reconciler.reference_changed("AutoscalePolicy", namespace, name)


_pool_generations: dict[str, Any] = {}


@kopf.on.event(GROUP, VERSION, "spotpools")
def on_pool_event(type: str, name: str, body: kopf.Body, **_: Any) -> None:
    generation = body.get("metadata", {}).get("generation")
    if type == "MODIFIED" and _pool_generations.get(name) == generation:
        return  # a status write (ours: interruptions, counters): nothing for the services to re-apply
    _pool_generations[name] = None if type == "DELETED" else generation
    REASONS.pool_seen(name, body, deleted=type == "DELETED")  # its NodeEvent signals' Event reasons
    if Runtime.reconciler is not None:
        Runtime.reconciler.reference_changed("SpotPool", None, name)


# --- spot signals: nodes and the Events about them (handlers/spot.py decides) ---------------


@kopf.on.event("", "v1", "nodes")
def on_node_event(type: str | None, body: kopf.Body, **_: Any) -> None:
    rec = Runtime.reconciler
    if rec is not None and rec.spot is not None:
        if type is None:  # kopf's (re-)list: deletions meanwhile are not reported
            rec.spot.nodes_relisted()
        if rec.spot.node_seen(body, deleted=type == "DELETED"):
            rec.spot_changed()


def feed_node_event(type: str, body: dict) -> None:
    """One Spot Event about a Node, from NodeEventWatch (on the loop). No kopf watch of Events:
    one cluster-wide would carry every tenant's Events (handlers/node_events.py)."""
    rec = Runtime.reconciler
    if rec is not None and rec.spot is not None and rec.spot.event_seen(body, deleted=type == "DELETED"):
        rec.spot_changed()


def configure_runtime(*, engine_image: str | None, check_secrets: bool, metrics_address: str | None,
                      metrics_port: int, namespaces: Sequence[str] = (),
                      node_events_namespace: str | None = None, drain_key_file: str | None = None,
                      admission: AdmissionRules | None = None) -> None:
    """Options from `llmfleet-operator run`, read by the startup handler. `namespaces`: the
    served ones (empty: all); `node_events_namespace`: where Events about Nodes are stored."""
    Runtime.node_events_namespace = watched_events_namespace(node_events_namespace)
    Runtime.namespaces = tuple(namespaces)
    Runtime.scanning_disabled = scanning_disabled(namespaces)
    Runtime.cluster_events_namespace = cluster_events_namespace(namespaces, os.environ.get("POD_NAMESPACE"))
    if engine_image:
        Runtime.images = Images(embedded=engine_image)
    # No Secret watch: it would stream every Secret's data into the operator. A service waiting
    # for its Secret re-checks its existence (metadata only) at each re-read, every RELIST_SECONDS.
    Runtime.check_secrets = check_secrets
    Runtime.drain_key_file = drain_key_file
    Runtime.admission = admission or AdmissionRules()
    Runtime.metrics_address = metrics_address or os.environ.get("POD_IP") or "0.0.0.0"
    Runtime.metrics_port = metrics_port
