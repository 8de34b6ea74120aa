"""Each LLMService's sync: observe -> plan -> execute -> status (when one is due: handlers/workers.py).

    observe   handlers/observe.py: references, owned Deployments and pods, scrapes, notices
    plan      sync.plan_sync: every decision (replicas, drains, split, what to apply, events)
    execute   handlers/executor.py: the writes, in order (SSA with the named field manager)
    status    sync.plan_status over what the writes returned; one merge patch when it differs
              (sync/status_write.py: a patch of sync timestamps alone waits for their refresh)

Invariants:
- Idempotent: a sync after a sync changes nothing (SSA of the same objects, a status
  patch only when the status differs), so a restarted operator converges without duplicates.
- The user's spec and metadata are never written; the replica count the autoscaler owns
  lives on the Deployments and in status.scaling (read back after a restart).
- One sync per service at a time (a lock per service): kopf runs change handlers,
  the worker daemon and event handlers concurrently.
- No polling: the worker sleeps until a watch event sets a flag (mark_status,
  reference_changed, spot_changed), a router reports held requests (demand_seen), or a
  sync period or drain step is due (workers.py).
- No drift polling either: a Deployment is applied again when the index shows an edit
  (its generation past our apply's), everything every RESYNC_SECONDS as a safety net.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from llmfleet.operator import metrics
from llmfleet.operator.adapters.drain_key import DrainKey
from llmfleet.operator.adapters.kube import Kube, KubeError
from llmfleet.operator.adapters.scrape import scrape_engines
from llmfleet.operator.api.autoscalepolicy import AutoscalePolicy
from llmfleet.operator.api.base import describe_invalid
from llmfleet.operator.policy import AdmissionRules
from llmfleet.operator.render import Images
from llmfleet.operator.router_demand import RouterDemand
from llmfleet.operator.router_endpoint import router_url_from_environment
from llmfleet.operator.sync import failed_status, merge_patch, plan_status, plan_sync
from llmfleet.operator.sync.children import edited_since_applied
from llmfleet.operator.sync.plan import invalid_policy_status, policy_status
from llmfleet.operator.sync.status_write import status_patch
from pydantic import ValidationError

from .executor import EventPoster, Executor
from .memory import ServiceMemory
from .observe import Observer
from .spot import SpotRuntime
from .store import Store
from .workers import ServiceWorkers

log = logging.getLogger("llmfleet.operator")

APPLY_RETRY_SECONDS = 10  # after the API server refused an apply
# A hand edit of a Deployment's spec shows in the index (its generation moves past the one our
# apply returned) and is repaired at the next sync; a Service or PDB is not watched, and an
# edit that moves no generation (labels) shows nowhere: every object is applied again this
# often as a safety net.
RESYNC_SECONDS = 1800
RELIST_SECONDS = 60  # a safety net under the watch events: re-read children and references this often

__all__ = ["Reconciler", "ServiceMemory", "merge_patch"]


def utcnow() -> datetime:
    """Now, to the second: Kubernetes times are RFC 3339 seconds, and status should not churn on microseconds."""
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Reconciler(ServiceWorkers):
    kube: Kube
    post_event: EventPoster
    images: Images = field(default_factory=Images)
    scrape: Callable = scrape_engines
    check_secrets: bool = True
    admission: AdmissionRules = field(default_factory=AdmissionRules)  # the admin's allow-lists
    clock: Callable[[], datetime] = utcnow
    monotonic: Callable[[], float] = time.monotonic
    services: dict[tuple[str, str], ServiceMemory] = field(default_factory=dict)
    spot: SpotRuntime | None = None  # the spot handlers' state (node events); made from kube/post_event if None
    store: Store | None = None  # kopf's indexes (handlers/store.py); None: read the API
    drain_key: DrainKey = field(default_factory=DrainKey)  # each service's drain token derives from it
    router_demand: RouterDemand | None = None  # requests held by llmfleet-router (scale from zero)
    router_url: str | None = field(default_factory=router_url_from_environment)  # status.router

    def __post_init__(self) -> None:
        if self.spot is None:
            self.spot = SpotRuntime(kube=self.kube, post_event=self.post_event)
        if self.spot.drain_token is None:
            self.spot.drain_token = self.drain_key.token
        self.observer = Observer(self.kube, self.spot, self.scrape, self.check_secrets, self.store, self.router_demand,
                                 admission=self.admission)
        self.executor = Executor(self.kube, self.post_event, self.spot.engine, self.images, self.spot.drain_token)

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(name, value)
        if name == "kube" and "executor" in self.__dict__:  # a swapped adapter reaches the reads and writes
            self.observer.kube = self.executor.kube = value  # type: ignore[assignment]

    # --- bookkeeping -------------------------------------------------------------------

    def use_store(self, store: Store) -> None:
        """Read the world from `store` (kopf's indexes) from now on instead of the API."""
        self.store = self.observer.store = store
        nodes = getattr(store, "nodes", None)  # kopf's Node index (IndexStore); test stores may have none
        if self.spot is not None and callable(nodes):
            self.spot.node_index = nodes

    async def forget(self, namespace: str, name: str) -> None:
        """The service is gone: drop its memory and series, and take it off its policy's status."""
        mem = self.services.pop((namespace, name), None)
        metrics.MANAGED_SERVICES.set(len(self.services))
        metrics.forget_service(namespace, name)
        for kind, ref in sorted(mem.refs if mem is not None else ()):
            if kind != "AutoscalePolicy":
                continue
            # Best effort: a failure here must not hold up the deletion (kopf retries delete handlers).
            try:
                obj = await self.kube.get("AutoscalePolicy", namespace, ref)
                if obj is not None:
                    await self._policy_status(obj)
            except (KubeError, ValidationError) as exc:
                log.info("could not update AutoscalePolicy %s/%s status: %s", namespace, ref, exc)

    async def tick(self, body: dict) -> None:
        """One turn of the service's worker: sync when something is due, else return at once."""
        meta = body["metadata"]
        mem = self.memory(meta["namespace"], meta["name"])
        mono = self.monotonic()
        if mono < mem.retry_at:
            return
        if mono >= mem.spot_due:  # a drain's next step: re-read its pods first
            mem.status_dirty, mem.spot_due = True, float("inf")
        if mem.apply_wanted or mem.status_dirty or mem.refs_dirty or mono >= mem.next_sync:
            await self.sync(body)

    # --- the sync ----------------------------------------------------------------------

    async def sync(self, body: dict, *, force_apply: bool = False) -> None:
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):
            return  # going away: the garbage collector removes the children; apply nothing now
        mem = self.memory(meta["namespace"], meta["name"])
        if force_apply:
            mem.apply_wanted = True
        async with mem.lock:
            started = time.monotonic()
            try:
                await self._sync(body, mem)
            except Exception:
                metrics.RECONCILES.labels(kind="LLMService", result="error").inc()
                raise
            else:
                metrics.RECONCILES.labels(kind="LLMService", result="success").inc()
            finally:
                metrics.RECONCILE_DURATION.labels(kind="LLMService").observe(time.monotonic() - started)

    async def _sync(self, body: dict, mem: ServiceMemory) -> None:
        now, mono = self.clock(), self.monotonic()
        periodic = mono >= mem.next_sync
        # A quiet periodic sync reads nothing: Deployments, pods and references are re-read
        # only when their watch events said they changed, on apply, and every RELIST_SECONDS.
        apply_now = mem.apply_wanted or mono - mem.last_apply >= RESYNC_SECONDS
        refresh = (mem.status_dirty or mem.refs_dirty or apply_now or mem.observed is None
                   or mono - mem.last_read >= RELIST_SECONDS)
        mem.status_dirty = mem.refs_dirty = False
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        obs = await self.observer.observe(body, mem, refresh=refresh, periodic=periodic, now=now, mono=mono)
        if refresh:
            mem.last_read = mono
        drifted = edited_since_applied(obs.deployments, mem.applied_generations)
        if drifted:
            log.info("LLMService %s/%s: Deployment %s edited since our apply: applying again", namespace, name,
                     ", ".join(drifted))
        obs.apply, obs.router_url = apply_now or bool(drifted), self.router_url
        for kind, ref in mem.refs:
            if kind == "AutoscalePolicy":
                obs.policy_users = frozenset(self.policy_users(namespace, ref))
        plan = plan_sync(obs, now)
        mem.period = plan.period
        if periodic:
            mem.next_sync = mono + mem.period
        if plan.invalid is not None:
            mem.apply_wanted = False
            old_ready: dict = next((c for c in obs.old_status.get("conditions") or [] if c.get("type") == "Ready"), {})
            if plan.invalid.reason == "NotAllowed" and (old_ready.get("reason"), old_ready.get("message")) != (
                    plan.invalid.reason, plan.invalid.message):  # outside the admin's allow-lists: say so once
                self.post_event(body, "Warning", plan.invalid.reason, plan.invalid.message)
            await self._write_status(body, obs.old_status, failed_status(obs, plan.invalid, now), now)
            return
        # A missing reference: its own watch event wakes us (reference_changed), no polling meanwhile.
        mem.blocked = plan.problem is not None
        if plan.problem is not None:
            mem.apply_wanted = False
        if plan.autoscale is not None:
            mem.scaling, mem.last_active = plan.autoscale.scaling, plan.autoscale.last_active

        done = await self.executor.run(obs, plan, now, mem.versions)
        if done.applied:
            mem.apply_wanted, mem.last_apply = False, mono
        mem.applied_generations.update(done.generations)
        if done.problem is not None:
            mem.retry_at = mono + APPLY_RETRY_SECONDS
        if done.marked or done.applied or done.outcome.killed:
            mem.observed = (copy.deepcopy(done.deployments), copy.deepcopy(done.pods))
            mem.overlay.remember(obs.pods, done.pods, mono)
            if done.applied:
                mem.overlay.remember_applied(done.deployments, done.deleted, mono)
        mem.status_dirty = mem.status_dirty or done.outcome.killed  # re-read the evicted pods
        if done.outcome.wake is not None:
            mem.spot_due = min(mem.spot_due, mono + max(0.0, (done.outcome.wake - now).total_seconds()))
        if done.pool_obj is not None and plan.service is not None and plan.service.spec.spot_pool_ref is not None:
            mem.ref_cache[("SpotPool", plan.service.spec.spot_pool_ref.name)] = done.pool_obj

        status = plan_status(obs, plan, done.deployments, done.pods, done.problem or plan.problem, now,
                             done.conditions)
        metrics.DESIRED_REPLICAS.labels(service=name, service_namespace=namespace).set(status.desired)
        if status.cost is not None and status.cost.per_hour is not None:
            metrics.COST_PER_HOUR.labels(service=name, service_namespace=namespace).set(status.cost.per_hour)
        for event in status.events:
            self.post_event(body, *event)
        await self._write_status(body, obs.old_status, status.fields, now)

    async def _write_status(self, body: dict, old: dict, new: dict, now: datetime) -> None:
        patch = status_patch(old, new, now)
        if not patch:
            return
        meta = body["metadata"]
        await self.kube.patch("LLMService", meta["namespace"], meta["name"], {"status": patch}, subresource="status")
        mem = self.services.get((meta["namespace"], meta["name"]))
        if mem is not None:
            mem.last_status = {k: copy.deepcopy(v) for k, v in new.items() if v is not None}

    async def _policy_status(self, obj: dict) -> None:
        """The policy's status as the services known to use it see it (no sync of theirs needed)."""
        meta = obj["metadata"]
        users = set(self.policy_users(meta["namespace"], meta["name"]))
        try:
            spec = AutoscalePolicy.model_validate(obj).spec
        except ValidationError as exc:
            # The schema admitted it (a time zone, say, is checked only here): a condition and an
            # event naming the field, never a handler that fails and retries for ever
            message = describe_invalid(exc)
            old: dict = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})
            if (old.get("reason"), old.get("message")) != ("InvalidSpec", message):
                self.post_event(obj, "Warning", "InvalidSpec", message)
            await self.executor.policy_status(obj, invalid_policy_status(obj, message, users, self.clock()))
            return
        await self.executor.policy_status(obj, policy_status(obj, spec, users, self.clock()))

    async def sync_policy(self, obj: dict) -> None:
        """A policy was created, edited or seen at start-up: validate, write its status, wake its users."""
        meta = obj["metadata"]
        started = time.monotonic()
        try:
            await self._policy_status(obj)
            self.reference_changed("AutoscalePolicy", meta["namespace"], meta["name"])
        except Exception:
            metrics.RECONCILES.labels(kind="AutoscalePolicy", result="error").inc()
            raise
        else:
            metrics.RECONCILES.labels(kind="AutoscalePolicy", result="success").inc()
        finally:
            metrics.RECONCILE_DURATION.labels(kind="AutoscalePolicy").observe(time.monotonic() - started)
