"""plan_sync(observation, now) -> SyncPlan: every decision of one LLMService sync, as data.

| step        | decides                                                                      |
| ----------- | ---------------------------------------------------------------------------- |
| references  | the policy / pool in force, or the Problem that blocks applying (missing, invalid) |
| replicas    | fixed (spec.replicas) / kept (waiting on a policy) / minReplicas (first) / the autoscaler's |
| autoscale   | on a sync period: recommend_replicas, pod-deletion-costs before a scale-down, the event |
| drains      | per pod on a noticed node or already marked: its ordered actions (sync.drains) |
| split       | with a pool: on-demand + spot counts (fallback included); without: one Deployment |
| children    | the counts each Deployment holds (the surge of drains included), stale Deployments |

Nothing here does I/O or keeps state: the handlers observe, the executor writes what the
plan says, and sync.status_fields turns the plan and what the writes returned into status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from llmfleet.operator.api.autoscalepolicy import AutoscalePolicy, AutoscalePolicySpec
from llmfleet.operator.api.base import describe_invalid
from llmfleet.operator.api.common import Condition
from llmfleet.operator.api.llmservice import LLMService
from llmfleet.operator.api.scaling_status import ScalingStatus
from llmfleet.operator.api.spotpool import SpotPool, SpotPoolSpec
from llmfleet.operator.render import Images, RenderContext, render_deployment, render_pdb, render_service
from llmfleet.operator.render.context import Capacity
from llmfleet.operator.scaling import bounds_in_force
from llmfleet.operator.scaling.zero import Demand, recommend_with_zero
from llmfleet.operator.spot.fleet_pods import (
    deployment_replicas,
    replicas_without_surge,
    serving_pods,
    surge_by_capacity,
)
from llmfleet.operator.spot.split import FallbackState, Split, split_replicas
from llmfleet.operator.status import Problem
from pydantic import ValidationError

from . import children
from .drains import DrainStep, plan_drains, with_marks
from .observation import Observation
from .spot_status import fallback_event
from .spot_view import UNPOOLED

DEFAULT_SYNC_SECONDS = 15  # status refresh and scrape without a policy; a policy's syncPeriodSeconds otherwise

Event = tuple[str, str, str]  # (type "Normal"|"Warning", reason, message) on the LLMService


@dataclass
class Autoscale:
    """One autoscaler decision: the count, what to write before it, and how to explain it."""

    replicas: int
    scaling: ScalingStatus
    conditions: list[Condition]
    direction: str | None = None  # "up" | "down" when the count changes
    deletion_costs: dict[str, str] = field(default_factory=dict)  # pod -> cost, before a scale-down
    event: Event | None = None
    status: dict = field(default_factory=dict)
    last_active: datetime | None = None  # minReplicas 0: the idle clock after this decision


@dataclass(frozen=True)
class ReplicaTarget:
    """What the Deployments hold: the pooled split, or one count; plus one replica per pod still
    draining (its surge), so `counts` takes the pods as they are when the Deployments are applied."""

    split: tuple[int, int] | None = None
    replicas: int = 0

    def counts(self, pods: Sequence[Mapping]) -> dict[Capacity, int]:
        if self.split is not None:
            return dict(deployment_replicas(self.split, pods))
        return {"any": self.replicas + surge_by_capacity(pods)["any"]}


@dataclass
class SyncPlan:
    service: LLMService | None
    invalid: Problem | None = None  # the spec does not validate: a Failed status, nothing else
    problem: Problem | None = None  # a reference is missing or invalid: nothing is applied
    policy: AutoscalePolicySpec | None = None
    pool: SpotPoolSpec | None = None
    policy_status: dict | None = None  # status fields for the referenced AutoscalePolicy
    desired: int | None = None
    current: int | None = None  # the Deployments' count without the drains' surge
    autoscale: Autoscale | None = None
    drains: list[DrainStep] = field(default_factory=list)
    split: Split | None = None
    target: ReplicaTarget | None = None  # None: apply nothing
    apply: bool = False  # apply even when the counts held are right (first sync, spec change, repair)
    counts: dict | None = None  # the counts once the drains' marks are written
    events: list[Event] = field(default_factory=list)  # after the drains' marks, before applying
    spot_status: dict | None = None  # the fallback state for status.spot
    status: dict = field(default_factory=dict)  # status fields decided here (lastScaleReason, scaling)
    conditions: list[Condition] = field(default_factory=list)  # the autoscaler's
    period: int = DEFAULT_SYNC_SECONDS

    @property
    def pooled(self) -> bool:
        return self.service is not None and self.service.spec.spot_pool_ref is not None

    @property
    def scaling(self) -> ScalingStatus | None:
        return self.autoscale.scaling if self.autoscale is not None else None

    def render(self, counts: Mapping[Capacity, int], images: Images) -> list[dict]:
        """The objects to apply for these Deployment counts: Deployments, Service, PDB."""
        assert self.service is not None
        return [*(render_deployment(self.service, RenderContext(replicas=n, capacity=c, pool=self.pool, images=images))
                  for c, n in counts.items()),
                render_service(self.service), render_pdb(self.service)]

    def stale(self, deployments: Sequence[dict]) -> list[str]:
        assert self.service is not None
        return children.stale_deployments(deployments, self.service.metadata.name, self.pooled)


def policy_status(obj: Mapping, policy: AutoscalePolicySpec, users: set[str], now: datetime) -> dict:
    """AutoscalePolicy status: observedGeneration, the services using it, the bounds in force
    (and no InvalidSpec condition left from an earlier, broken generation)."""
    return {"observedGeneration": obj["metadata"].get("generation"), "services": sorted(users),
            "bounds": bounds_in_force(policy, now).to_wire(), "conditions": None}


def invalid_policy_status(obj: Mapping, message: str, users: set[str], now: datetime) -> dict:
    """A policy the API server accepted but the operator cannot use (a rule its schema cannot
    express, such as an unknown time zone): Ready False, InvalidSpec, naming the field."""
    gen = obj["metadata"].get("generation")
    old: dict = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})
    since = old.get("lastTransitionTime") if old.get("reason") == "InvalidSpec" else None
    ready = Condition(type="Ready", status="False", reason="InvalidSpec", message=message, observed_generation=gen,
                      last_transition_time=since or now).to_wire()
    return {"observedGeneration": gen, "services": sorted(users), "bounds": None, "conditions": [ready]}


def resolve_references(obs: Observation, service: LLMService, now: datetime, plan: SyncPlan) -> None:
    """The policy and pool in force; the first missing or invalid reference as the Problem."""
    spec, namespace, name = service.spec, obs.namespace, obs.name
    if spec.autoscale_policy_ref is not None:
        ref = spec.autoscale_policy_ref.name
        if obs.policy_obj is None:
            plan.problem = Problem("AutoscalePolicyNotFound", f"AutoscalePolicy {ref} not found in namespace {namespace}")
        else:
            try:
                plan.policy = AutoscalePolicy.model_validate(obs.policy_obj).spec
            except ValidationError as exc:
                plan.problem = Problem("InvalidSpec", f"AutoscalePolicy {ref}: {describe_invalid(exc, 400)}")
            else:
                plan.policy_status = policy_status(obs.policy_obj, plan.policy, {*obs.policy_users, name}, now)
    if spec.spot_pool_ref is not None:
        if obs.pool_obj is None:
            plan.problem = plan.problem or Problem("SpotPoolNotFound", f"SpotPool {spec.spot_pool_ref.name} not found")
        else:
            try:
                plan.pool = SpotPool.model_validate(obs.pool_obj).spec
            except ValidationError as exc:  # a pool the operator cannot use: said here, not a traceback per sync
                plan.problem = plan.problem or Problem(
                    "InvalidSpec", f"SpotPool {spec.spot_pool_ref.name}: {describe_invalid(exc, 400)}")
    for secret in obs.missing_secrets:
        plan.problem = plan.problem or Problem("SecretNotFound", f"Secret {secret} not found in namespace {namespace}")


def plan_autoscale(obs: Observation, policy: AutoscalePolicySpec, current: int, now: datetime) -> Autoscale:
    """The HPA's sync: recommend, and before a scale-down the deletion costs (least busy go first)."""
    previous = ScalingStatus.from_status((obs.body.get("status") or {}).get("scaling"))
    mine = obs.last_scaling
    if mine is not None and (previous.last_sync_time is None or (
            mine.last_sync_time and mine.last_sync_time > previous.last_sync_time)):
        previous = mine  # our own last write, not yet seen in the watched body
    pods = [dict(p) for p in serving_pods(obs.pods)]
    views = children.pod_metrics(pods, obs.scrapes, policy.metric.type, now, policy.sync_period_seconds)
    in_flight = sum(s.in_flight for s in obs.scrapes.values())  # waiting + running, last good scrapes
    decision, last_active = recommend_with_zero(policy, current, views, previous, now,
                                                Demand(obs.held, in_flight), obs.last_active)
    scaling = decision.status.model_copy(update={"policy": (obs.body["spec"].get("autoscalePolicyRef") or {}).get("name")})
    out = Autoscale(decision.replicas, scaling, list(decision.conditions), status={"scaling": scaling.to_wire()},
                    last_active=last_active)
    if decision.rescale:
        if decision.replicas < current:
            out.deletion_costs = children.scale_down_costs(pods, obs.scrapes)
        out.direction = "up" if decision.replicas > current else "down"
        out.status["lastScaleReason"] = f"{current} -> {decision.replicas}: {decision.reason}"
        out.event = ("Normal", "SuccessfulRescale",
                     f"New size: {decision.replicas}; reason: {decision.reason} (was {current})")
    return out


def plan_sync(obs: Observation, now: datetime) -> SyncPlan:
    try:
        service = LLMService.model_validate(obs.body)
    except ValidationError as exc:
        # The CRD's schema and CEL rules refuse these first; this covers a CRD older than the operator.
        return SyncPlan(None, invalid=Problem("InvalidSpec", describe_invalid(exc)))
    if obs.refused is not None:  # nothing is rendered for a spec the admin does not allow
        return SyncPlan(None, invalid=Problem("NotAllowed", obs.refused))
    spec, name = service.spec, obs.name
    plan = SyncPlan(service)
    resolve_references(obs, service, now, plan)
    plan.apply = obs.apply or (plan.problem is None and obs.was_blocked)
    policy, pool, pooled = plan.policy, plan.pool, plan.pooled
    if policy is not None:
        plan.period = policy.sync_period_seconds

    # Draining pods are leaving, not capacity: the count without their surge replicas.
    held = children.current_replicas(obs.deployments, name, pooled)
    plan.current = current = replicas_without_surge(held, obs.pods) if held is not None else None
    if spec.autoscale_policy_ref is None:
        plan.desired = spec.fixed_replicas()
    elif policy is None:
        plan.desired = None  # wait for the policy; keep what runs
    elif current is None:
        plan.desired = bounds_in_force(policy, now).min_replicas
    else:
        plan.desired = current
        if obs.periodic and plan.problem is None:
            plan.autoscale = plan_autoscale(obs, policy, current, now)
            plan.desired = plan.autoscale.replicas
            plan.status.update(plan.autoscale.status)
            plan.conditions = plan.autoscale.conditions
    if plan.desired is None or plan.problem is not None:
        return plan

    supports_drain = spec.engine.kind == "embedded"
    if pooled and pool is not None and obs.spot is not None:
        previous = children.split_without_surge(obs.deployments, name, obs.pods)  # before new drain marks
        plan.drains = plan_drains(obs.pods, obs.spot.notices, obs.engines, now, supports_drain=supports_drain,
                                  margin=pool.drain_deadline_margin_seconds, drain_grace=spec.drain_grace_seconds)
        fallback = FallbackState.from_status(obs.old_status.get("spot"))
        plan.split = split = split_replicas(plan.desired, pool, obs.spot.capacity, fallback, now, previous)
        plan.target = ReplicaTarget(split=(split.ondemand, split.spot))
        plan.spot_status = split.fallback.to_status()
        moved = fallback_event(obs.old_status.get("spot") or {}, plan.spot_status)
        if moved is not None:
            plan.events.append(("Normal", moved[0], f"{moved[1]}: {split.reason}"))
            plan.status["lastScaleReason"] = f"{moved[1]}: {split.reason}"
    elif not pooled:
        if obs.notices is not None:
            plan.drains = plan_drains(obs.pods, obs.notices, obs.engines, now, supports_drain=supports_drain,
                                      margin=UNPOOLED.drain_deadline_margin_seconds,
                                      drain_grace=spec.drain_grace_seconds)
        plan.target = ReplicaTarget(replicas=plan.desired)
    if plan.target is not None:
        plan.counts = plan.target.counts(with_marks(obs.pods, plan.drains))
    return plan
