"""One LLMService sync: read the world, call the pure modules, write the result.

    read      the LLMService, its AutoscalePolicy / SpotPool / Secrets, owned Deployments, pods
    scrape    ready pods' /metrics (periodic syncs only)
    decide    replicas (fixed | kept | autoscaler) -> split -> render; status; cost
    write     server-side apply of the drain-token Secret, Deployments, Service, PDB;
              pod-deletion-cost; status; events

Invariants:
- Idempotent: a sync after a sync changes nothing (SSA of the same objects, a status
  patch only when the status differs), so a restarted operator converges without duplicates.
- The user's spec and metadata are never written; the replica count the autoscaler owns
  lives on the Deployments and in status.scaling (read back after a restart).
- One sync per service at a time (a lock per service): kopf runs change handlers,
  timers and event handlers concurrently.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from llmfleet.operator import metrics
from llmfleet.operator.adapters.drain_key import DrainKey
from llmfleet.operator.adapters.kube import Kube, KubeError
from llmfleet.operator.adapters.scrape import EngineScrape, ScrapeTarget, scrape_engines
from llmfleet.operator.api.autoscalepolicy import AutoscalePolicy, AutoscalePolicySpec, ScalingStatus
from llmfleet.operator.api.common import Condition
from llmfleet.operator.api.llmservice import LLMService
from llmfleet.operator.api.spotpool import SpotPool, SpotPoolSpec
from llmfleet.operator.cost import TokenReading, fleet_cost, token_rate
from llmfleet.operator.inference_pool import sync_inference_pool
from llmfleet.operator.policy import AdmissionRules, check_service
from llmfleet.operator.render import (
    Images,
    RenderContext,
    endpoint_url,
    render_deployment,
    render_drain_secret,
    render_pdb,
    render_service,
    selector_string,
    served_model_name,
    uses_drain_token,
)
from llmfleet.operator.render.labels import SERVICE_LABEL
from llmfleet.operator.render.ownership import NameConflict, conflict_message, existing_by_name, foreign_names
from llmfleet.operator.render.paths import HTTP_PORT
from llmfleet.operator.router_demand import RouterDemand, total_in_flight
from llmfleet.operator.router_endpoint import router_status, router_url_from_environment
from llmfleet.operator.scaling import (
    POD_DELETION_COST_ANNOTATION,
    bounds_in_force,
    merge_conditions,
)
from llmfleet.operator.scaling.zero import Demand, recommend_with_zero
from llmfleet.operator.spot import (
    FallbackState,
    deployment_replicas,
    replicas_without_surge,
    serving_pods,
    split_replicas,
    surge_by_capacity,
)
from llmfleet.operator.status import (
    Problem,
    compute_status,
    model_startup_seconds,
    pod_ready,
    pod_terminating,
)
from pydantic import ValidationError

from . import plan
from .spot import UNPOOLED, Outcome, SpotRuntime, SpotView, fallback_event

log = logging.getLogger("llmfleet.operator")

DEFAULT_SYNC_SECONDS = 15  # status refresh and scrape without a policy; a policy's syncPeriodSeconds otherwise
APPLY_RETRY_SECONDS = 10  # after the API server refused an apply
REAPPLY_SECONDS = 300
RELIST_SECONDS = 60  # a safety net under the watch events: re-read children and references this often  # re-apply rendered objects this often even without a change (repairs drift)
AUTOSCALER_CONDITIONS = ("MetricsAvailable", "AbleToScale", "ScalingLimited")

# post_event(body, type "Normal"|"Warning", reason, message)
EventPoster = Callable[[dict, str, str, str], None]


def utcnow() -> datetime:
    """Now, to the second: Kubernetes times are RFC 3339 seconds, and status should not churn on microseconds."""
    return datetime.now(UTC).replace(microsecond=0)


def merge_patch(old: dict, new: dict) -> dict:
    """The JSON merge patch (RFC 7386) turning `old` into `new` for the keys `new` names.

    A None in `new` removes the key; keys `new` does not name are left alone (another
    writer's, such as status.kopf or the spot handler's fields).
    """
    patch: dict = {}
    for key, value in new.items():
        before = old.get(key)
        if value is None:
            if before is not None:
                patch[key] = None
        elif isinstance(value, dict) and isinstance(before, dict):
            inner = merge_patch(before, value)
            inner.update({k: None for k in before if k not in value})
            if inner:
                patch[key] = inner
        elif value != before:
            patch[key] = value
    return patch


@dataclass
class ServiceMemory:
    """What the operator remembers of one service between syncs; all of it can be lost on restart."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    apply_wanted: bool = True  # the first sync after (re)start applies
    status_dirty: bool = True  # a child changed: re-read Deployments and pods
    refs_dirty: bool = False  # a referenced object changed: re-read references
    blocked: bool = False  # the last sync could not apply for a missing reference
    last_read: float = 0.0  # monotonic time of the last full read
    observed: tuple[list[dict], list[dict]] | None = None  # (Deployments, pods) as last read or applied
    ref_cache: dict[tuple[str, str], dict | None] = field(default_factory=dict)
    next_sync: float = 0.0  # monotonic time of the next periodic sync
    last_apply: float = 0.0
    retry_at: float = 0.0  # after a refused apply, no tick-driven sync before this (monotonic)
    period: int = DEFAULT_SYNC_SECONDS
    refs: set[tuple[str, str]] = field(default_factory=set)  # (kind, name) of the referenced objects
    scrapes: dict[str, EngineScrape] = field(default_factory=dict)  # last good scrape per pod
    tokens: dict[str, TokenReading] = field(default_factory=dict)
    tokens_per_second: float | None = None
    scaling: ScalingStatus | None = None  # the last status.scaling written
    last_status: dict = field(default_factory=dict)  # the fields of our last status write, as written
    spot_due: float = float("inf")  # monotonic time a drain wants its next step (a Wait, a backoff)
    last_active: datetime | None = None  # minReplicas 0: when a request was last in flight or held


@dataclass
class Reconciler:
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
    drain_key: DrainKey = field(default_factory=DrainKey)  # each service's drain token derives from it
    router_demand: RouterDemand | None = None  # requests held by llmfleet-router (scale from zero)
    router_url: str | None = field(default_factory=router_url_from_environment)  # status.router

    def __post_init__(self) -> None:
        if self.spot is None:
            self.spot = SpotRuntime(kube=self.kube, post_event=self.post_event)
        if self.spot.drain_token is None:
            self.spot.drain_token = self.drain_key.token

    # --- bookkeeping -------------------------------------------------------------------

    def memory(self, namespace: str, name: str) -> ServiceMemory:
        key = (namespace, name)
        if key not in self.services:
            self.services[key] = ServiceMemory()
            metrics.MANAGED_SERVICES.set(len(self.services))
        return self.services[key]

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
                    spec = AutoscalePolicy.model_validate(obj).spec
                    await self._policy_status(obj, spec, self.clock(), user=None)
            except (KubeError, ValidationError) as exc:
                log.info("could not update AutoscalePolicy %s/%s status: %s", namespace, ref, exc)

    def mark_status(self, namespace: str, name: str) -> None:
        """A child changed: refresh this service's status at the next tick."""
        mem = self.services.get((namespace, name))
        if mem is not None:
            mem.status_dirty = True

    def reference_changed(self, kind: str, namespace: str | None, name: str) -> None:
        """An AutoscalePolicy, SpotPool or Secret appeared, changed or went: its users re-read it.

        A SpotPool also shapes the rendered pods (placement), so its users re-apply too.
        """
        for (ns, _), mem in self.services.items():
            if (kind, name) in mem.refs and (namespace is None or ns == namespace):
                mem.refs_dirty = True
                if kind == "SpotPool":
                    mem.apply_wanted = True

    def spot_changed(self) -> None:
        """A Node's taints/labels/annotations/readiness or a Karpenter Event changed: every
        service with a SpotPool re-reads nodes and pods at the next tick; a service without
        one only when one of its pods (as last read) is on a node whose default signals changed
        (a full re-read of every service on every node change would cost 3 requests each)."""
        changed = self.spot.take_changed_nodes() if self.spot is not None else set()
        for mem in self.services.values():
            if any(kind == "SpotPool" for kind, _ in mem.refs):
                mem.status_dirty = True
            elif changed and mem.observed is not None and any(
                    (p.get("spec") or {}).get("nodeName") in changed for p in mem.observed[1]):
                mem.status_dirty = True

    def policy_users(self, namespace: str, policy: str) -> list[str]:
        return sorted(n for (ns, n), m in self.services.items() if ns == namespace and ("AutoscalePolicy", policy) in m.refs)

    async def tick(self, body: dict) -> None:
        """The short timer: sync when something is due, else return at once."""
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
        now = self.clock()
        mono = self.monotonic()
        periodic = mono >= mem.next_sync
        apply_now = mem.apply_wanted or mono - mem.last_apply >= REAPPLY_SECONDS
        # A quiet periodic sync reads nothing: Deployments, pods and references are re-read
        # only when their watch events said they changed, on apply, and every RELIST_SECONDS.
        refresh = (mem.status_dirty or mem.refs_dirty or apply_now or mem.observed is None
                   or mono - mem.last_read >= RELIST_SECONDS)
        mem.status_dirty = mem.refs_dirty = False
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        old_status = {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}
        # The watched body may predate our own last write (the timer and the change handlers
        # race the watch stream): what we wrote last is the truth for the fields we own.
        old_status.update(copy.deepcopy(mem.last_status))

        try:
            service = LLMService.model_validate(body)
        except ValidationError as exc:
            # The CRD's schema and CEL rules refuse these first; this covers a CRD older than the operator.
            invalid = Problem("InvalidSpec", str(exc).splitlines()[0][:500])
            mem.apply_wanted = False
            await self._write_status(body, old_status, {"phase": "Failed", "observedGeneration": meta.get("generation"),
                                                        "conditions": self._failed_conditions(body, invalid, now)}, now)
            return
        spec = service.spec
        violations = check_service(spec, self.admission)
        if violations:  # outside the admin's allow-lists: render nothing (policy/admission.py)
            refused = Problem("NotAllowed", "; ".join(map(str, violations))[:1000])
            mem.apply_wanted, mem.next_sync = False, mono + DEFAULT_SYNC_SECONDS
            old_ready: dict[str, object] = next((c for c in old_status.get("conditions") or [] if c.get("type") == "Ready"), {})
            if old_ready.get("reason") != refused.reason or old_ready.get("message") != refused.message:
                self.post_event(body, "Warning", refused.reason, refused.message)
            await self._write_status(body, old_status, {"phase": "Failed", "observedGeneration": meta.get("generation"),
                                                        "conditions": self._failed_conditions(body, refused, now)}, now)
            return

        async def reference(kind: str, ns: str | None, ref: str) -> dict | None:
            if refresh or (kind, ref) not in mem.ref_cache:
                mem.ref_cache[(kind, ref)] = await self.kube.get(kind, ns, ref)
            return copy.deepcopy(mem.ref_cache[(kind, ref)])

        # References: each missing one is a condition with its name; nothing is applied meanwhile.
        mem.refs = set()
        problem: Problem | None = None
        policy: AutoscalePolicySpec | None = None
        pool: SpotPoolSpec | None = None
        pool_obj: dict | None = None
        if spec.autoscale_policy_ref is not None:
            ref = spec.autoscale_policy_ref.name
            mem.refs.add(("AutoscalePolicy", ref))
            obj = await reference("AutoscalePolicy", namespace, ref)
            if obj is None:
                problem = Problem("AutoscalePolicyNotFound", f"AutoscalePolicy {ref} not found in namespace {namespace}")
            else:
                try:
                    policy = AutoscalePolicy.model_validate(obj).spec
                except ValidationError as exc:
                    problem = Problem("InvalidSpec", f"AutoscalePolicy {ref}: {str(exc).splitlines()[0][:300]}")
                else:
                    await self._policy_status(obj, policy, now, user=name)
        if spec.spot_pool_ref is not None:
            ref = spec.spot_pool_ref.name
            mem.refs.add(("SpotPool", ref))
            obj = await reference("SpotPool", None, ref)
            if obj is None:
                problem = problem or Problem("SpotPoolNotFound", f"SpotPool {ref} not found")
            else:
                pool, pool_obj = SpotPool.model_validate(obj).spec, obj
        secrets = [r.name for r in (spec.api_key_secret_ref, spec.model.token_secret_ref) if r is not None]
        for secret in secrets:
            mem.refs.add(("Secret", secret))
            # Existence only, by metadata: the operator never holds a Secret's data.
            if refresh or ("Secret", secret) not in mem.ref_cache:
                mem.ref_cache[("Secret", secret)] = {} if not self.check_secrets or await self.kube.exists(
                    "Secret", namespace, secret) else None
            if mem.ref_cache[("Secret", secret)] is None:
                problem = problem or Problem("SecretNotFound", f"Secret {secret} not found in namespace {namespace}")

        if problem is not None:
            # The reference's own watch event wakes us (reference_changed): no polling meanwhile.
            mem.apply_wanted, mem.blocked = False, True
        elif mem.blocked:
            apply_now, mem.blocked = True, False
        pooled = spec.spot_pool_ref is not None
        if refresh:
            deployments = [d for d in await self.kube.list("Deployment", namespace, f"{SERVICE_LABEL}={name}")
                           if plan.owned_by(d, meta.get("uid"))]
            pods = await self.kube.list("Pod", namespace, selector_string(name))
            mem.observed, mem.last_read = (deployments, pods), mono
        else:
            assert mem.observed is not None
            deployments, pods = copy.deepcopy(mem.observed)

        mem.period = policy.sync_period_seconds if policy is not None else DEFAULT_SYNC_SECONDS
        if periodic:
            await self._scrape(mem, pods, now)
            mem.next_sync = mono + mem.period

        spot = self.spot
        assert spot is not None  # set in __post_init__
        view: SpotView | None = None
        unpooled: dict | None = None  # a service without a pool: its nodes' notices, None if nothing to do
        if pool is not None and pool_obj is not None:
            nodes = await spot.all_nodes(now)  # kept by the Node watch: no list per sync
            view = spot.observe(pool_obj, pool, nodes, pods, now)
        elif not pooled:
            unpooled = spot.observe_unpooled(pods, now)  # from the Node watch: no API call

        # Draining pods are leaving, not capacity: the count without their surge replicas.
        held = plan.current_replicas(deployments, name, pooled)
        current = replicas_without_surge(held, pods) if held is not None else None
        status_extra: dict = {}
        conditions_extra: list[Condition] = []
        if spec.autoscale_policy_ref is None:
            desired = spec.fixed_replicas()
        elif policy is None:
            desired = None  # wait for the policy; keep what runs
        elif current is None:
            desired = bounds_in_force(policy, now).min_replicas
        else:
            desired = current
            if periodic and problem is None:
                desired, status_extra, conditions_extra = await self._autoscale(
                    body, mem, policy, current, [dict(p) for p in serving_pods(pods)], now)

        counts: dict | None = None
        drains: list = []
        spot_status: dict | None = None
        if desired is not None and problem is None:
            if view is not None and pool is not None:
                previous = plan.split_without_surge(deployments, name, pods)  # before new drain marks
                drains = await spot.begin(namespace, spec.drain_grace_seconds, pool.drain_deadline_margin_seconds,
                                          pods, view.notices, now, supports_drain=spec.engine.kind == "embedded",
                                          announce=spot.recorder(body, pool_obj))
                fallback = FallbackState.from_status(old_status.get("spot"))
                split = split_replicas(desired, pool, view.capacity, fallback, now, previous)
                counts = dict(deployment_replicas(split, pods))  # the split + one per pod still draining
                spot_status = split.fallback.to_status()
                moved = fallback_event(old_status.get("spot") or {}, spot_status)
                if moved is not None:
                    self.post_event(body, "Normal", moved[0], f"{moved[1]}: {split.reason}")
                    status_extra["lastScaleReason"] = f"{moved[1]}: {split.reason}"
                mem.observed = (copy.deepcopy(deployments), copy.deepcopy(pods))
            elif not pooled:
                if unpooled is not None:
                    drains = await spot.begin(namespace, spec.drain_grace_seconds,
                                              UNPOOLED.drain_deadline_margin_seconds, pods, unpooled, now,
                                              supports_drain=spec.engine.kind == "embedded",
                                              announce=spot.recorder(body, None))
                    mem.observed = (copy.deepcopy(deployments), copy.deepcopy(pods))
                counts = {"any": desired + surge_by_capacity(pods)["any"]}  # one more per pod still draining
        if counts is not None and (apply_now or counts != plan.deployment_counts(deployments, name, pooled)):
            try:
                deployments = await self._apply(body, service, pool, counts, deployments, pooled)
            except KubeError as exc:
                problem = Problem("ApplyFailed", f"server-side apply refused: {exc.message}"[:1000])
                mem.retry_at = mono + APPLY_RETRY_SECONDS
            except NameConflict as exc:
                problem = Problem("NameConflict", str(exc)[:1000])
                mem.retry_at = mono + APPLY_RETRY_SECONDS
            else:
                mem.apply_wanted = False
                mem.last_apply = mono
                mem.observed = (copy.deepcopy(deployments), pods)
                pool_cond = await sync_inference_pool(  # optional; never blocks the Deployments
                    self.kube, service, old_status.get("conditions") or [], lambda *e: self.post_event(body, *e))
                if pool_cond is not None:
                    conditions_extra = [*conditions_extra, pool_cond]

        outcome = await spot.finish(body, pool_obj, drains, now) if drains else Outcome()
        if outcome.killed:
            mem.observed, mem.status_dirty = (copy.deepcopy(deployments), copy.deepcopy(pods)), True
        if outcome.wake is not None:
            mem.spot_due = min(mem.spot_due, mono + max(0.0, (outcome.wake - now).total_seconds()))
        if view is not None and pool is not None and pool_obj is not None:
            written = await spot.pool_status(
                pool_obj, pool, view, (namespace, name),
                spec.drain_grace_seconds + spec.drain_timeout_seconds, outcome, now)
            if written is not None and spec.spot_pool_ref is not None:
                mem.ref_cache[("SpotPool", spec.spot_pool_ref.name)] = written

        shown_desired = desired if desired is not None else (current or 0)
        state = compute_status(generation=meta.get("generation"), desired=shown_desired,
                               deployments=deployments, pods=pods, now=now, reference_problem=problem)
        metrics.DESIRED_REPLICAS.labels(service=name, service_namespace=namespace).set(shown_desired)
        new = self._status_fields(service, mem, state, pods, old_status, now, policy is not None)
        conditions = merge_conditions(
            [Condition.model_validate(c) for c in old_status.get("conditions") or []
             if policy is not None or c.get("type") not in AUTOSCALER_CONDITIONS],
            [*state.conditions, *[c.model_copy(update={"observed_generation": meta.get("generation")})
                                  for c in conditions_extra]],
        )
        new["conditions"] = [c.to_wire() for c in conditions]
        new.update(status_extra)
        if pooled and view is not None:
            spot_cond = spot.interrupted_condition(pods, view).model_copy(
                update={"observed_generation": meta.get("generation")})
            merged = merge_conditions([Condition.model_validate(c) for c in new["conditions"]], [spot_cond])
            new["conditions"] = [c.to_wire() for c in merged]
            new["spot"] = {**(spot_status or (old_status.get("spot") or {})), **spot.draining_status(pods)}
        elif not pooled:
            # No pool: the SpotInterrupted condition once a drain has touched the service (kept,
            # False, afterwards), status.spot only while a pod carries drain marks.
            had = any(c.get("type") == "SpotInterrupted" for c in old_status.get("conditions") or [])
            if unpooled is not None or had:
                spot_cond = spot.interrupted_condition(pods, None).model_copy(
                    update={"observed_generation": meta.get("generation")})
                merged = merge_conditions([Condition.model_validate(c) for c in new["conditions"]], [spot_cond])
                new["conditions"] = [c.to_wire() for c in merged]
            draining = spot.draining_status(pods)
            new["spot"] = draining if draining["drainingPodCount"] else None
        if policy is None:
            new["scaling"] = None
        elif "scaling" not in new and mem.scaling is not None:
            new["scaling"] = mem.scaling.to_wire()
        self._announce(body, old_status, new, problem)
        await self._write_status(body, old_status, new, now)

    # --- steps -------------------------------------------------------------------------

    async def _scrape(self, mem: ServiceMemory, pods: list[dict], now: datetime) -> None:
        targets = [ScrapeTarget(p["metadata"]["name"], f"http://{p['status']['podIP']}:{HTTP_PORT}/metrics")
                   for p in pods if pod_ready(p) and (p.get("status") or {}).get("podIP")]
        results = await self.scrape(targets, now)
        live = {p["metadata"]["name"] for p in pods}
        mem.scrapes = {k: v for k, v in mem.scrapes.items() if k in live}
        for pod, result in results.items():
            if result.error is None:
                mem.scrapes[pod] = result
            else:
                log.debug("scrape of %s failed: %s", pod, result.error)
        readings = {pod: TokenReading(r.generation_tokens, r.timestamp)
                    for pod, r in results.items() if r.error is None and r.generation_tokens is not None}
        rate = token_rate(mem.tokens, readings)
        mem.tokens = readings
        mem.tokens_per_second = rate

    async def _autoscale(self, body: dict, mem: ServiceMemory, policy: AutoscalePolicySpec, current: int,
                         pods: list[dict], now: datetime) -> tuple[int, dict, list[Condition]]:
        """One autoscaler sync: decide, set deletion costs before a scale-down, remember, announce."""
        meta = body["metadata"]
        previous = ScalingStatus.from_status((body.get("status") or {}).get("scaling"))
        if mem.scaling is not None and (previous.last_sync_time is None or (
                mem.scaling.last_sync_time and mem.scaling.last_sync_time > previous.last_sync_time)):
            previous = mem.scaling  # our own last write, not yet seen in the watched body
        pod_views = plan.pod_metrics(pods, mem.scrapes, policy.metric.type, now, policy.sync_period_seconds)
        held = await self.router_demand.held(meta["namespace"], meta["name"]) if self.router_demand else 0
        decision, mem.last_active = recommend_with_zero(
            policy, current, pod_views, previous, now, Demand(held, total_in_flight(mem.scrapes)), mem.last_active)
        extra: dict = {}
        if decision.rescale:
            if decision.replicas < current:
                for pod, cost in plan.scale_down_costs(pods, mem.scrapes).items():
                    try:
                        await self.kube.patch("Pod", meta["namespace"], pod,
                                              {"metadata": {"annotations": {POD_DELETION_COST_ANNOTATION: cost}}})
                    except KubeError as exc:  # the pod may be gone; the count still changes
                        log.info("pod-deletion-cost on %s: %s", pod, exc)
            direction = "up" if decision.replicas > current else "down"
            metrics.SCALE_DECISIONS.labels(direction=direction).inc()
            reason = f"{current} -> {decision.replicas}: {decision.reason}"
            extra["lastScaleReason"] = reason
            self.post_event(body, "Normal", "SuccessfulRescale",
                            f"New size: {decision.replicas}; reason: {decision.reason} (was {current})")
        scaling = decision.status.model_copy(update={"policy": (body["spec"].get("autoscalePolicyRef") or {}).get("name")})
        mem.scaling = scaling
        extra["scaling"] = scaling.to_wire()
        return decision.replicas, extra, decision.conditions

    async def _apply(self, body: dict, service: LLMService, pool: SpotPoolSpec | None, counts: dict,
                     deployments: list[dict], pooled: bool) -> list[dict]:
        """SSA every rendered object; delete Deployments of a capacity no longer wanted; report changes."""
        name = service.metadata.name
        before = {d["metadata"]["name"]: d for d in deployments}
        rendered = [render_deployment(service, RenderContext(replicas=replicas, capacity=capacity, pool=pool,
                                                             images=self.images))
                    for capacity, replicas in counts.items()]
        others = [render_service(service), render_pdb(service)]
        # Look every name up first: apply nothing when another owner holds one (render/ownership.py).
        found: dict[tuple[str, str], dict | None] = {}
        for obj in rendered + others:
            kind, obj_name = obj["kind"], obj["metadata"]["name"]
            found[(kind, obj_name)] = before.get(obj_name) if kind == "Deployment" and obj_name in before else \
                await self.kube.get(kind, service.metadata.namespace, obj_name)
        foreign = foreign_names(existing_by_name(found), service.metadata.uid)
        if foreign:
            raise NameConflict(conflict_message(foreign))
        applied: list[dict] = []
        if uses_drain_token(service):  # before the pods that mount it
            token = self.drain_key.token(service.metadata.namespace or "", name)
            secret = render_drain_secret(service, token)
            try:  # not forced: the operator cannot read Secrets, so a conflict is how it learns the name is taken
                await self.kube.apply(secret, force=False)
            except KubeError as exc:
                if exc.status != 409:
                    raise
                raise NameConflict(conflict_message([f"Secret {secret['metadata']['name']} (fields owned by "
                                                     "another manager)"])) from None
        for desired in rendered:
            obj = await self.kube.apply(desired)
            self._report_change(body, obj, before.get(obj["metadata"]["name"]))
            applied.append(obj)
        for obj in others:
            existing = found[(obj["kind"], name)]
            result = await self.kube.apply(obj)
            if existing is None:
                self.post_event(body, "Normal", "Created", f"Created {obj['kind']} {name}")
            elif existing["metadata"].get("resourceVersion") != result["metadata"].get("resourceVersion"):
                self.post_event(body, "Normal", "Updated", f"Updated {obj['kind']} {name}")
        for stale in plan.stale_deployments(deployments, name, pooled):
            await self.kube.delete("Deployment", service.metadata.namespace, stale)
            self.post_event(body, "Normal", "Deleted", f"Deleted Deployment {stale}: capacity no longer used")
        return applied

    def _report_change(self, body: dict, after: dict, before: dict | None) -> None:
        kind, name = after.get("kind", "Deployment"), after["metadata"]["name"]
        if before is None:
            self.post_event(body, "Normal", "Created",
                            f"Created {kind} {name} with {after['spec'].get('replicas')} replicas")
        elif before["metadata"].get("generation") != after["metadata"].get("generation"):
            old, new = before["spec"].get("replicas"), after["spec"].get("replicas")
            change = f"replicas {old} -> {new}" if old != new else "pod template changed: rolling out"
            self.post_event(body, "Normal", "Updated", f"Updated {kind} {name}: {change}")

    def _status_fields(self, service: LLMService, mem: ServiceMemory, state, pods: list[dict], old: dict,
                       now: datetime, autoscaled: bool) -> dict:
        name, namespace = service.metadata.name, service.metadata.namespace or ""
        ready_pods = [p for p in pods if pod_ready(p)]
        fresh = [mem.scrapes[p["metadata"]["name"]] for p in ready_pods if p["metadata"]["name"] in mem.scrapes]
        avg_queue = round(sum(s.waiting or 0.0 for s in fresh) / len(fresh), 2) if fresh else None
        loads = [(p["status"].get("startTime") or "", mem.scrapes[p["metadata"]["name"]].model_load_seconds)
                 for p in ready_pods if p["metadata"]["name"] in mem.scrapes]
        loads = [x for x in loads if x[1] is not None]
        startup = max(loads)[1] if loads else model_startup_seconds(pods)
        ready_spot = len(plan.pods_by_capacity(ready_pods, "spot"))
        cost = fleet_cost(service.spec.pricing, len(ready_pods) - ready_spot, ready_spot, mem.tokens_per_second)
        if cost is not None and cost.per_hour is not None:
            metrics.COST_PER_HOUR.labels(service=name, service_namespace=namespace).set(cost.per_hour)
        live = [p for p in pods if not pod_terminating(p)]
        fields: dict = {
            "observedGeneration": service.metadata.generation,
            "phase": state.phase,
            "replicas": state.replicas,
            "readyReplicas": state.ready_replicas,
            "desiredReplicas": state.desired_replicas,
            "readyText": state.ready_text,
            "selector": selector_string(name),
            "endpoint": endpoint_url(name, namespace),
            "servedModelName": served_model_name(service),
            "router": router_status(self.router_url, service),
            "averageQueueDepth": avg_queue,
            "modelStartupSeconds": round(startup, 1) if startup is not None else None,
            "cost": cost.to_wire() if cost is not None else None,
            "lastScaleReason": old.get("lastScaleReason"),
        }
        if service.spec.spot_pool_ref is not None:
            fields["spotReplicas"] = len(plan.pods_by_capacity(live, "spot"))
            fields["onDemandReplicas"] = len(plan.pods_by_capacity(live, "ondemand"))
        return fields

    def _announce(self, body: dict, old: dict, new: dict, problem: Problem | None) -> None:
        """Events on transitions only (a timer must not repeat them every tick)."""
        old_phase, new_phase = old.get("phase"), new.get("phase")
        ready: dict = next((c for c in new["conditions"] if c["type"] == "Ready"), {})
        old_ready: dict = next((c for c in old.get("conditions") or [] if c.get("type") == "Ready"), {})
        if problem is not None and old_ready.get("reason") != problem.reason:
            self.post_event(body, "Warning", problem.reason, problem.message)
        if old_phase != new_phase:
            kind = "Warning" if new_phase in ("Failed", "Degraded") else "Normal"
            degraded: dict = next((c for c in new["conditions"] if c["type"] == "Degraded"), {})
            message = degraded.get("message") if kind == "Warning" else ready.get("message")
            self.post_event(body, kind, f"Phase{new_phase}", f"{old_phase or 'New'} -> {new_phase}: {message}")

    async def _write_status(self, body: dict, old: dict, new: dict, now: datetime) -> None:
        patch = merge_patch(old, new)
        if not patch:
            return
        meta = body["metadata"]
        await self.kube.patch("LLMService", meta["namespace"], meta["name"], {"status": patch}, subresource="status")
        mem = self.services.get((meta["namespace"], meta["name"]))
        if mem is not None:
            mem.last_status = {k: copy.deepcopy(v) for k, v in new.items() if v is not None}

    def _failed_conditions(self, body: dict, problem: Problem, now: datetime) -> list[dict]:
        gen = body["metadata"].get("generation")
        conds = [Condition(type=t, status=s, reason=problem.reason, message=problem.message,
                           observed_generation=gen, last_transition_time=now)
                 for t, s in (("Ready", "False"), ("Progressing", "False"), ("Degraded", "True"))]
        old = [Condition.model_validate(c) for c in (body.get("status") or {}).get("conditions") or []]
        return [c.to_wire() for c in merge_conditions(old, conds)]

    async def _policy_status(self, obj: dict, policy: AutoscalePolicySpec, now: datetime, user: str | None) -> None:
        """AutoscalePolicy status: observedGeneration, the services using it, bounds in force."""
        meta = obj["metadata"]
        users = set(self.policy_users(meta["namespace"], meta["name"]))
        if user:
            users.add(user)
        old = obj.get("status") or {}
        bounds = bounds_in_force(policy, now)
        new = {
            "observedGeneration": meta.get("generation"),
            "services": sorted(users),
            "bounds": bounds.to_wire(),
        }
        patch = merge_patch(old, new)
        if patch:
            await self.kube.patch("AutoscalePolicy", meta["namespace"], meta["name"], {"status": patch},
                                  subresource="status")

    async def sync_policy(self, obj: dict) -> None:
        """A policy was created, edited or seen at start-up: validate, write its status, wake its users."""
        meta = obj["metadata"]
        started = time.monotonic()
        try:
            policy = AutoscalePolicy.model_validate(obj).spec
            await self._policy_status(obj, policy, self.clock(), user=None)
            self.reference_changed("AutoscalePolicy", meta["namespace"], meta["name"])
        except Exception:
            metrics.RECONCILES.labels(kind="AutoscalePolicy", result="error").inc()
            raise
        else:
            metrics.RECONCILES.labels(kind="AutoscalePolicy", result="success").inc()
        finally:
            metrics.RECONCILE_DURATION.labels(kind="AutoscalePolicy").observe(time.monotonic() - started)

