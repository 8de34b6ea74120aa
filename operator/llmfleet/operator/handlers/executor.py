"""Turns a SyncPlan into API calls, in the order the plan's invariants need:

    1. the AutoscalePolicy's status (the services using it, the bounds in force)
    2. before a scale-down, the pods' deletion costs (so the least busy go first)
    3. the drains' marks and surge (DrainExecutor.begin), then the plan's events
    4. server-side apply (field manager: adapters.kube) of the drain-token Secret, the Deployments with the counts the
       marked pods ask for, the Service and the PDB; Deployments of a dropped capacity are deleted. Every
       rendered name is looked up first: one another owner holds (render/ownership.py) is a NameConflict and
       nothing is applied; the Secret, which the operator cannot read, is applied unforced (409: NameConflict)
    5. the rest of the drains (POST /drain, Evict, Delete: DrainExecutor.finish)
    6. the SpotPool's status (counters add to the latest value: read afresh, under a lock)

The LLMService's own status is written by the reconciler once the plan's status is
computed from what these writes returned.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from llmfleet.operator import metrics
from llmfleet.operator.adapters.kube import Kube, KubeError
from llmfleet.operator.inference_pool import sync_inference_pool
from llmfleet.operator.render import Images, render_drain_secret, uses_drain_token
from llmfleet.operator.render.ownership import NameConflict, conflict_message, existing_by_name, foreign_names
from llmfleet.operator.scaling import POD_DELETION_COST_ANNOTATION
from llmfleet.operator.spot.drain_state import RecordEvent
from llmfleet.operator.status import Problem
from llmfleet.operator.sync import Observation, SyncPlan, merge_patch
from llmfleet.operator.sync.children import deployment_counts
from llmfleet.operator.sync.spot_status import pool_status_fields

from .drain_executor import DrainExecutor, EngineCall, Outcome

log = logging.getLogger("llmfleet.operator")

# post_event(body, type "Normal"|"Warning", reason, message)
EventPoster = Callable[[dict, str, str, str], None]
# Events also posted on the SpotPool: the milestones only (a 429 retry every few seconds stays on the LLMService).
POOL_EVENT_REASONS = {"DrainStarted", "DrainEvicted", "DrainDeleted", "RequestsAtRisk", "ReplacementStarted"}


@dataclass
class Executed:
    """What the writes left: the Deployments as applied, the pods as marked or evicted."""

    deployments: list[dict]
    pods: list[dict]
    problem: Problem | None = None  # the API server refused the apply
    applied: bool = False
    marked: bool = False  # drain steps ran: the pods differ from the observation's
    outcome: Outcome = field(default_factory=Outcome)
    pool_obj: dict | None = None  # the SpotPool as written (None: not written)
    deleted: list[str] = field(default_factory=list)  # Deployments of a capacity no longer used
    conditions: list = field(default_factory=list)  # from optional objects (the InferencePool's)
    generations: dict[str, int] = field(default_factory=dict)  # Deployment -> metadata.generation as applied

    def applied_now(self, deployments: list[dict]) -> None:
        self.deployments = deployments
        self.generations.update({d["metadata"]["name"]: int(d["metadata"].get("generation") or 0) for d in deployments})


@dataclass
class Executor:
    kube: Kube
    post_event: EventPoster
    engine: EngineCall
    images: Images = field(default_factory=Images)
    drain_token: Callable[[str, str], str] | None = None  # (namespace, service) -> its drain token
    # The longest drain (grace + timeout) of each pool's services, for its NoticeTooShort check.
    needed: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)
    pool_locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def recorder(self, body: dict, pool_obj: dict | None) -> Callable[[RecordEvent], None]:
        """Post a drain's event on the LLMService (and the milestones on its SpotPool)."""
        namespace = body["metadata"]["namespace"]

        def record(action: RecordEvent) -> None:
            self.post_event(body, action.type, action.reason, f"pod {action.pod}: {action.message}")
            if pool_obj is not None and action.reason in POOL_EVENT_REASONS:
                self.post_event(pool_obj, action.type, action.reason, f"pod {namespace}/{action.pod}: {action.message}")

        return record

    async def run(self, obs: Observation, plan: SyncPlan, now: datetime,
                  versions: dict[str, str] | None = None) -> Executed:
        """`versions`: the service's Service and PDB resourceVersions as last applied (updated here)."""
        body, namespace = obs.body, obs.namespace
        if plan.policy_status is not None and obs.policy_obj is not None:
            await self.policy_status(obs.policy_obj, plan.policy_status)
        scale = plan.autoscale
        if scale is not None and scale.direction is not None:
            for pod, cost in scale.deletion_costs.items():
                try:
                    await self.kube.patch("Pod", namespace, pod,
                                          {"metadata": {"annotations": {POD_DELETION_COST_ANNOTATION: cost}}})
                except KubeError as exc:  # the pod may be gone; the count still changes
                    log.info("pod-deletion-cost on %s: %s", pod, exc)
            metrics.SCALE_DECISIONS.labels(direction=scale.direction).inc()
            if scale.event is not None:
                self.post_event(body, *scale.event)
        done = Executed(obs.deployments, copy.deepcopy(obs.pods))
        pods = {p["metadata"]["name"]: p for p in done.pods}
        token = self.drain_token(namespace, obs.name) if self.drain_token is not None else None
        drains = DrainExecutor(self.kube, self.engine, token)
        record = self.recorder(body, obs.pool_obj if plan.pooled else None)
        started = await drains.begin(namespace, plan.drains, pods, record) if plan.drains else []
        done.marked = bool(plan.drains)
        for event in plan.events:
            self.post_event(body, *event)
        counts = plan.target.counts(done.pods) if plan.target is not None else None
        assert plan.service is not None
        if counts is not None and (plan.apply or counts != deployment_counts(obs.deployments, obs.name, plan.pooled)):
            try:
                done.applied_now(await self.apply(body, plan, counts, obs.deployments, versions=versions))
                done.applied = True
                done.deleted = plan.stale(obs.deployments)
                pool_cond = await sync_inference_pool(  # optional; never blocks the Deployments
                    self.kube, plan.service, obs.old_status.get("conditions") or [],
                    lambda *e: self.post_event(body, *e))
                if pool_cond is not None:
                    done.conditions.append(pool_cond)
            except NameConflict as exc:  # another owner holds a rendered name: nothing applied
                done.problem = Problem("NameConflict", str(exc)[:1000])
            except KubeError as exc:
                done.problem = Problem("ApplyFailed", f"server-side apply refused: {exc.message}"[:1000])
        if started:
            done.outcome = await drains.finish(namespace, started, pods, record, now)
            after = plan.target.counts(done.pods) if plan.target is not None else None
            if done.outcome.killed and counts is not None and after != counts and done.problem is None:
                # An evicted pod no longer counts in its ReplicaSet: drop its surge now, or the
                # ReplicaSet would start one pod too many until the next sync.
                assert after is not None
                try:
                    done.applied_now(await self.apply(body, plan, after, done.deployments, deployments_only=True))
                except NameConflict as exc:
                    done.problem = Problem("NameConflict", str(exc)[:1000])
                except KubeError as exc:
                    done.problem = Problem("ApplyFailed", f"server-side apply refused: {exc.message}"[:1000])
        if plan.pooled and plan.pool is not None and obs.pool_obj is not None and obs.spot is not None:
            spec = plan.service.spec
            done.pool_obj = await self.pool_status(obs, plan, spec.drain_grace_seconds + spec.drain_timeout_seconds,
                                                   done.outcome, now)
        return done

    async def apply(self, body: dict, plan: SyncPlan, counts: dict, deployments: list[dict], *,
                    deployments_only: bool = False, versions: dict[str, str] | None = None) -> list[dict]:
        """SSA every rendered object; delete Deployments of a capacity no longer wanted; report changes.
        Raises NameConflict, applying nothing, when another owner holds a rendered name."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        before = {d["metadata"]["name"]: d for d in deployments}
        applied: list[dict] = []
        assert plan.service is not None
        rendered = [obj for obj in plan.render(counts, self.images)
                    if obj["kind"] == "Deployment" or not deployments_only]
        # Look every name up first (render/ownership.py). Known without a read: the Deployments
        # observed as ours, and a Service / PDB this process applied (its resourceVersion kept).
        found: dict[tuple[str, str], dict | None] = {}
        for obj in rendered:
            kind, obj_name = obj["kind"], obj["metadata"]["name"]
            if kind == "Deployment" and obj_name in before:
                continue
            if kind != "Deployment" and versions is not None and versions.get(kind):
                continue
            found[(kind, obj_name)] = await self.kube.get(kind, namespace, obj_name)
        foreign = foreign_names(existing_by_name(found), plan.service.metadata.uid)
        if foreign:
            raise NameConflict(conflict_message(foreign))
        if not deployments_only and self.drain_token is not None and uses_drain_token(plan.service):
            # before the pods that mount it
            secret = render_drain_secret(plan.service, self.drain_token(namespace, name))
            try:  # not forced: the operator cannot read Secrets, so a conflict is how it learns the name is taken
                await self.kube.apply(secret, force=False)
            except KubeError as exc:
                if exc.status != 409:
                    raise
                raise NameConflict(conflict_message([f"Secret {secret['metadata']['name']} (fields owned by "
                                                     "another manager)"])) from None
        for obj in rendered:
            if obj["kind"] == "Deployment":
                result = await self.kube.apply(obj)
                self._report_change(body, result, before.get(result["metadata"]["name"]))
                applied.append(result)
                continue
            # Its resourceVersion as we last saw it tells Created from Updated from unchanged;
            # read once per process (a restart, by the name check above), not on every apply.
            seen = versions.get(obj["kind"]) if versions is not None else None
            if seen is None:
                existing = found.get((obj["kind"], obj["metadata"]["name"]))
                seen = existing["metadata"].get("resourceVersion") if existing is not None else ""
            result = await self.kube.apply(obj)
            if versions is not None:
                versions[obj["kind"]] = result["metadata"].get("resourceVersion") or ""
            if not seen:
                self.post_event(body, "Normal", "Created", f"Created {obj['kind']} {name}")
            elif seen != result["metadata"].get("resourceVersion"):
                self.post_event(body, "Normal", "Updated", f"Updated {obj['kind']} {name}")
        for stale in [] if deployments_only else plan.stale(deployments):
            await self.kube.delete("Deployment", namespace, stale)
            self.post_event(body, "Normal", "Deleted", f"Deleted Deployment {stale}: capacity no longer used")
        return applied

    def _report_change(self, body: dict, after: dict, before: dict | None) -> None:
        kind, name = after.get("kind", "Deployment"), after["metadata"]["name"]
        if before is None:
            self.post_event(body, "Normal", "Created", f"Created {kind} {name} with {after['spec'].get('replicas')} replicas")
        elif before["metadata"].get("generation") != after["metadata"].get("generation"):
            old, new = before["spec"].get("replicas"), after["spec"].get("replicas")
            change = f"replicas {old} -> {new}" if old != new else "pod template changed: rolling out"
            self.post_event(body, "Normal", "Updated", f"Updated {kind} {name}: {change}")

    async def policy_status(self, obj: dict, fields: dict) -> None:
        patch = merge_patch(obj.get("status") or {}, fields)
        if patch:
            meta = obj["metadata"]
            await self.kube.patch("AutoscalePolicy", meta["namespace"], meta["name"], {"status": patch},
                                  subresource="status")

    async def pool_status(self, obs: Observation, plan: SyncPlan, drain_seconds: int, outcome: Outcome,
                          now: datetime) -> dict | None:
        """Write the SpotPool's status when it changes; returns the pool object as written (or None)."""
        assert obs.pool_obj is not None and obs.spot is not None and plan.pool is not None
        name = obs.pool_obj["metadata"]["name"]
        needs = self.needed.setdefault(name, {})
        needs[(obs.namespace, obs.name)] = drain_seconds

        def changed(obj: dict) -> dict:
            assert obs.spot is not None and plan.pool is not None
            return pool_status_fields(obj, plan.pool, obs.spot, max(needs.values()), outcome.drained, outcome.cut, now)

        if not changed(obs.pool_obj):
            return None
        async with self.pool_locks.setdefault(name, asyncio.Lock()):
            fresh = await self.kube.get("SpotPool", None, name)  # counters add to the latest value
            if fresh is None:
                return None
            fields = changed(fresh)
            if not fields:
                return fresh
            old = fresh.get("status") or {}
            if "interruptionsSeen" in fields and fields["interruptionsSeen"] > int(old.get("interruptionsSeen") or 0):
                known = {e.get("name") for e in old.get("interruptedNodes") or []}
                for entry in fields.get("interruptedNodes") or []:
                    if not entry["advisory"] and entry["name"] not in known:
                        self.post_event(fresh, "Warning", "SpotInterrupted",
                                        f"node {entry['name']}: {entry['signal']}, deadline {entry['deadline']}")
            return await self.kube.patch("SpotPool", None, name, {"status": fields}, subresource="status")
