"""Reads what one LLMService sync needs into an Observation (sync/observation.py).

| what                         | from                                                             |
| ---------------------------- | ---------------------------------------------------------------- |
| AutoscalePolicy, SpotPool    | kopf's indexes (handlers/store.py); without them the API, only when `refresh` (a watch event said they changed, an apply, the safety net), else the service's cache |
| Secrets (existence)          | only with the secret check on: a metadata-only GET (never the data; no index or watch), cached per service (`secret_exists`) |
| owned Deployments, pods      | kopf's indexes, with our writes they do not show yet; without them as for references |
| engine metrics               | the ready pods' /metrics, on a sync period only                   |
| nodes, notices               | the Node / Event watch caches (handlers/spot.py): no API read     |
| engine /drain states         | the pods that drain (sync.needs_engine), before planning          |
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from llmfleet.operator.adapters.kube import Kube
from llmfleet.operator.adapters.scrape import ScrapeTarget
from llmfleet.operator.api.llmservice import LLMService
from llmfleet.operator.api.spotpool import SpotPool, SpotPoolSpec
from llmfleet.operator.cost import TokenReading, token_rate
from llmfleet.operator.policy import AdmissionRules, check_service
from llmfleet.operator.render import selector_string
from llmfleet.operator.render.labels import SERVICE_LABEL
from llmfleet.operator.render.paths import HTTP_PORT
from llmfleet.operator.router_demand import RouterDemand
from llmfleet.operator.spot.drain_state import EngineDrain
from llmfleet.operator.spot.notice import Notice
from llmfleet.operator.status import pod_ready
from llmfleet.operator.sync import Observation, needs_engine
from llmfleet.operator.sync.children import owned_by
from pydantic import ValidationError

from .memory import ServiceMemory
from .spot import SpotRuntime
from .store import Store

log = logging.getLogger("llmfleet.operator")


@dataclass
class Observer:
    kube: Kube
    spot: SpotRuntime
    scrape: Callable[..., Awaitable[dict]]
    check_secrets: bool = True
    store: Store | None = None  # kopf's indexes (handlers/store.py); None: read the API, cache per service
    router_demand: RouterDemand | None = None  # requests llmfleet-router holds (scale from zero)
    admission: AdmissionRules = field(default_factory=AdmissionRules)  # the admin's allow-lists
    secret_recheck_seconds: float = 60.0  # a Secret found is asked about again this often at most

    async def observe(self, body: dict, mem: ServiceMemory, *, refresh: bool, periodic: bool, now: datetime,
                      mono: float = 0.0) -> Observation:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        old_status = {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}
        # The watched body may predate our own last write (the timer and the change handlers
        # race the watch stream): what we wrote last is the truth for the fields we own.
        old_status.update(copy.deepcopy(mem.last_status))
        obs = Observation(body=body, old_status=old_status, last_scaling=mem.scaling, periodic=periodic,
                          was_blocked=mem.blocked)
        try:
            spec = LLMService.model_validate(body).spec
        except ValidationError:
            return obs  # plan_sync says why
        violations = check_service(spec, self.admission)
        if violations:  # outside the admin's allow-lists: read no reference, render nothing (plan_sync)
            obs.refused = "; ".join(map(str, violations))[:1000]
            return obs

        async def reference(kind: str, ns: str | None, ref: str) -> dict | None:
            mem.refs.add((kind, ref))
            if self.store is not None:
                return self.store.get(kind, ns, ref)
            if refresh or (kind, ref) not in mem.ref_cache:
                mem.ref_cache[(kind, ref)] = await self.kube.get(kind, ns, ref)
            return copy.deepcopy(mem.ref_cache[(kind, ref)])

        mem.refs = set()
        if spec.autoscale_policy_ref is not None:
            obs.policy_obj = await reference("AutoscalePolicy", namespace, spec.autoscale_policy_ref.name)
        if spec.spot_pool_ref is not None:
            obs.pool_obj = await reference("SpotPool", None, spec.spot_pool_ref.name)
        for secret in [r.name for r in (spec.api_key_secret_ref, spec.model.token_secret_ref) if r is not None]:
            mem.refs.add(("Secret", secret))
            if self.check_secrets and not await self.secret_exists(mem, namespace, secret, refresh, mono):
                obs.missing_secrets.append(secret)

        if self.store is not None:  # kopf's indexes, with our own writes the watch has not delivered yet
            mem.overlay.expire(mono)
            deployments = mem.overlay.deployments(
                [d for d in self.store.deployments(namespace, name) if owned_by(d, meta.get("uid"))])
            mem.observed = (deployments, mem.overlay.apply(self.store.pods(namespace, name)))
        elif refresh or mem.observed is None:
            deployments = [d for d in await self.kube.list("Deployment", namespace, f"{SERVICE_LABEL}={name}")
                           if owned_by(d, meta.get("uid"))]
            pods = await self.kube.list("Pod", namespace, selector_string(name))
            mem.observed = (deployments, pods)
        obs.deployments, obs.pods = copy.deepcopy(mem.observed)
        if periodic:
            await self.scrape_engines(mem, obs.pods, now)
        obs.scrapes, obs.tokens_per_second = dict(mem.scrapes), mem.tokens_per_second
        obs.last_active = mem.last_active
        if periodic and obs.policy_obj is not None and self.router_demand is not None:
            obs.held = await self.router_demand.held(namespace, name)  # one read serves every service for a second

        notices: Mapping[str, Notice] | None
        pool = _valid_pool(obs.pool_obj)  # an invalid pool is the plan's InvalidSpec problem (sync/plan.py)
        if pool is not None and obs.pool_obj is not None:
            nodes = await self.spot.all_nodes(now)  # kept by the Node watch: no list per sync
            obs.spot = self.spot.observe(obs.pool_obj, pool, nodes, obs.pods, now)
            notices = obs.spot.notices
        elif spec.spot_pool_ref is None:
            obs.notices = notices = self.spot.observe_unpooled(obs.pods, now)  # from the Node watch: no API call
        else:
            notices = None
        if notices is not None:
            supports_drain = spec.engine.kind == "embedded"
            engines: dict[str, EngineDrain | None] = {}
            for pod in obs.pods:
                if needs_engine(pod, notices, supports_drain):
                    answer = await self.spot.engine(pod["status"]["podIP"], False, None)
                    engines[pod["metadata"]["name"]] = EngineDrain.from_json(answer) if answer is not None else None
            obs.engines = engines
        return obs

    async def secret_exists(self, mem: ServiceMemory, namespace: str, secret: str, refresh: bool,
                            mono: float) -> bool:
        """Whether the Secret exists, by a metadata-only GET (kube.exists): Secrets are neither
        indexed nor watched, so their data never reaches the operator and it needs only `get`
        on them. The answer is kept per service: asked again on a re-read once
        `secret_recheck_seconds` have passed, or at every re-read while it is missing (the
        service waits on it), so a steady state costs one GET per Secret per period."""
        key = ("Secret", secret)
        checked = mem.secrets_checked.get(secret)
        if key not in mem.ref_cache or checked is None or (refresh and (
                mem.ref_cache[key] is None or mono - checked >= self.secret_recheck_seconds)):
            mem.ref_cache[key] = {} if await self.kube.exists("Secret", namespace, secret) else None
            mem.secrets_checked[secret] = mono
        return mem.ref_cache[key] is not None

    async def scrape_engines(self, mem: ServiceMemory, pods: list[dict], now: datetime) -> None:
        """The ready engines' /metrics: the last good scrape per pod, and the fleet's token rate."""
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
        mem.tokens_per_second = token_rate(mem.tokens, readings)
        mem.tokens = readings


def _valid_pool(obj: Mapping | None) -> SpotPoolSpec | None:
    if obj is None:
        return None
    try:
        return SpotPool.model_validate(obj).spec
    except ValidationError:
        return None
