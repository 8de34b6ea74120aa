"""A tiny simulated cluster for the spot stories: nodes with GPU slots, two ReplicaSets, a
scheduler, kubelets that honour grace periods, engines with requests in flight, a PDB with
maxUnavailable 1 evaluated as the API server does, and nodes that vanish at their deadline.

`Operator.step` is the thin handler: it reads the world as API objects, plans with the
operator's own pure functions (sync.plan_drains, split_replicas) and runs the plan with the
production DrainExecutor against `WorldAPI`, the world answering as the API server and the
engines would — nothing else decides, and no test-only executor stands in for the real one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from llmfleet.operator.api.spotpool import SpotPoolSpec
from llmfleet.operator.handlers.drain_executor import DrainExecutor
from llmfleet.operator.spot.drain_state import EngineDrain, RecordEvent
from llmfleet.operator.spot.fleet_pods import deployment_replicas, is_leaving, serving_pods
from llmfleet.operator.spot.notice import format_rfc3339
from llmfleet.operator.spot.signals import detect_interruptions
from llmfleet.operator.spot.split import FallbackState, observe_spot_capacity, split_replicas
from llmfleet.operator.sync.drains import needs_engine, plan_drains, set_annotations

T0 = datetime(2026, 11, 22, tzinfo=UTC)
GRACE_PERIOD = 135  # drainGraceSeconds 5 + drainTimeoutSeconds 120 + 10


def at(t: float) -> datetime:
    return T0 + timedelta(seconds=t)


@dataclass
class Node:
    name: str
    capacity: str  # "spot" | "ondemand"
    slots: int = 1
    ready_since: float = -3600.0
    taints: list[dict] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    dies_at: float | None = None
    gone: bool = False


@dataclass
class Pod:
    name: str
    capacity: str
    created: float
    node: str | None = None
    bound_at: float | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    requests: list[float] = field(default_factory=list)  # end times of requests in flight
    draining: bool = False
    kill_at: float | None = None  # set when terminating: SIGKILL time
    gone: bool = False


@dataclass
class World:
    startup: float = 30.0  # model load: from binding to ready
    t: float = 0.0
    nodes: dict[str, Node] = field(default_factory=dict)
    pods: list[Pod] = field(default_factory=list)
    replicas: dict[str, int] = field(default_factory=lambda: {"ondemand": 0, "spot": 0})
    cut: int = 0
    finished: int = 0
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (t, pod, reason)
    evictions: list[tuple[float, str, str]] = field(default_factory=list)  # (t, pod, result)
    seq: int = 0

    # --- what the API server would return -------------------------------------------------
    def ready(self, pod: Pod) -> bool:
        return (
            pod.bound_at is not None
            and self.t >= pod.bound_at + self.startup
            and not pod.draining
            and pod.kill_at is None
        )

    def node_objs(self) -> list[dict]:
        return [
            {
                "metadata": {
                    "name": n.name,
                    "labels": {"capacity": n.capacity},
                    "annotations": dict(n.annotations),
                },
                "spec": {"taints": list(n.taints), "providerID": f"kwok://{n.name}"},
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "lastTransitionTime": format_rfc3339(at(n.ready_since)),
                        }
                    ]
                },
            }
            for n in self.nodes.values()
            if not n.gone and n.ready_since <= self.t
        ]

    def pod_obj(self, pod: Pod) -> dict:
        meta = {
            "name": pod.name,
            "labels": {"llmfleet.dev/capacity": pod.capacity},
            "annotations": dict(pod.annotations),
        }
        if pod.kill_at is not None:
            meta["deletionTimestamp"] = format_rfc3339(at(self.t))
        status: dict = {"phase": "Running" if pod.node else "Pending", "conditions": [], "podIP": pod.name}
        if pod.node is None:
            status["conditions"].append(
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "lastTransitionTime": format_rfc3339(at(pod.created)),
                }
            )
        spec = {"terminationGracePeriodSeconds": GRACE_PERIOD}
        if pod.node:
            spec["nodeName"] = pod.node
        return {"metadata": meta, "spec": spec, "status": status}

    def pod_objs(self) -> list[dict]:
        return [self.pod_obj(p) for p in self.pods if not p.gone]

    def pod(self, name: str) -> Pod:
        return next(p for p in self.pods if p.name == name)

    def in_flight(self, pod: Pod) -> int:
        return sum(1 for end in pod.requests if end > self.t)

    # --- the API calls the handler makes -----------------------------------------------
    def evict(self, pod: Pod, grace: int) -> str:
        """The Eviction API with the PDB (maxUnavailable 1, unhealthyPodEvictionPolicy IfHealthyBudget)."""
        live = [p for p in self.pods if not p.gone and p.kill_at is None]
        expected = sum(self.replicas.values())
        healthy = sum(1 for p in live if self.ready(p))
        desired = expected - 1
        allowed = healthy - desired > 0 if self.ready(pod) else healthy >= desired
        result = "Evicted" if allowed else "TooManyRequests"
        self.evictions.append((self.t, pod.name, result))
        if allowed:
            self.terminate(pod, grace)
        return result

    def terminate(self, pod: Pod, grace: int) -> None:
        if pod.kill_at is None:
            pod.kill_at = self.t + grace
            pod.draining = True

    # --- controllers and kubelets, one tick -----------------------------------------------
    def tick(self, dt: float = 1.0) -> None:
        self.t += dt
        for node in self.nodes.values():
            if node.dies_at is not None and self.t >= node.dies_at and not node.gone:
                node.gone = True
                for pod in self.pods:
                    if pod.node == node.name and not pod.gone:
                        self.cut += self.in_flight(pod)
                        pod.gone = True
        for pod in self.pods:
            if pod.gone:
                continue
            self.finished += sum(1 for end in pod.requests if end <= self.t)
            pod.requests = [end for end in pod.requests if end > self.t]
            if pod.kill_at is not None and (not pod.requests or self.t >= pod.kill_at):
                self.cut += len(pod.requests)  # SIGKILL (or a clean exit with nothing left)
                pod.gone = True
        self._replicasets()
        self._schedule()

    def _replicasets(self) -> None:
        for cap, want in self.replicas.items():
            active = [p for p in self.pods if p.capacity == cap and not p.gone and p.kill_at is None]
            for _ in range(want - len(active)):
                self.seq += 1
                self.pods.append(Pod(f"{cap}-{self.seq}", cap, self.t))
            # Scale-down: unscheduled first, then not ready, then the newest (the ReplicaSet's ranking).
            ranked = sorted(active, key=lambda p: (p.node is not None, self.ready(p), -p.created))
            for pod in ranked[: max(0, len(active) - want)]:
                self.terminate(pod, GRACE_PERIOD)

    def _schedule(self) -> None:
        for pod in self.pods:
            if pod.gone or pod.node is not None or pod.kill_at is not None:
                continue
            for node in self.nodes.values():
                if node.gone or node.ready_since > self.t or node.capacity != pod.capacity or node.taints:
                    continue
                used = sum(1 for p in self.pods if p.node == node.name and not p.gone)
                if used < node.slots:
                    pod.node, pod.bound_at = node.name, self.t
                    break


class WorldAPI:
    """The calls the DrainExecutor makes (Kube's patch / evict / delete, and the engines'
    /drain), answered by the world; a pod's IP is its name."""

    def __init__(self, world: World) -> None:
        self.world = world

    async def patch(self, kind, namespace, name, body, subresource=None) -> dict:
        sim = self.world.pod(name)
        set_annotations({"metadata": {"annotations": sim.annotations}}, body["metadata"]["annotations"])
        return self.world.pod_obj(sim)

    async def evict(self, namespace, name, grace_seconds) -> str:
        return self.world.evict(self.world.pod(name), grace_seconds)

    async def delete(self, kind, namespace, name, grace_seconds=None) -> None:
        self.world.terminate(self.world.pod(name), grace_seconds)

    async def engine(self, ip: str, post: bool, token: str | None = None) -> dict:
        sim = self.world.pod(ip)
        if post:
            sim.draining = True
        return {"draining": sim.draining, "in_flight": self.world.in_flight(sim)}


@dataclass
class Operator:
    """The thin handler: state it keeps is only what status would hold (the fallback)."""

    pool: SpotPoolSpec
    total: int
    drain_grace: int = 5
    fallback: FallbackState = field(default_factory=FallbackState)
    current: tuple[int, int] | None = None
    at_risk: dict[str, int] = field(default_factory=dict)  # pod → requests reported at risk

    def step(self, world: World) -> None:
        asyncio.run(self._step(world))

    async def _step(self, world: World) -> None:
        now = at(world.t)
        api = WorldAPI(world)
        nodes, pods = world.node_objs(), world.pod_objs()
        notices = detect_interruptions(nodes, pods, [], self.pool, now)
        by_node = {n.node: n for n in notices if n.kind == "Interruption"}
        engines = {p["metadata"]["name"]: EngineDrain.from_json(await api.engine(p["status"]["podIP"], False, None))
                   for p in pods if needs_engine(p, by_node, True)}
        steps = plan_drains(pods, by_node, engines, now, margin=self.pool.drain_deadline_margin_seconds,
                            drain_grace=self.drain_grace, supports_drain=True)
        self.at_risk.update({s.pod: s.at_risk for s in steps if s.at_risk})

        def record(action: RecordEvent) -> None:
            world.events.append((world.t, action.pod, action.reason))

        executor = DrainExecutor(api, api.engine)
        by_name = {p["metadata"]["name"]: p for p in pods}
        started = await executor.begin("sim", steps, by_name, record)
        # The Deployments as the production executor applies them: the split plus the surge of
        # the marked pods, before the evictions; again after them (an evicted pod's surge drops).
        spot_pods = [p for p in pods if p["metadata"]["labels"]["llmfleet.dev/capacity"] == "spot"]
        capacity = observe_spot_capacity(nodes, [p for p in spot_pods if not is_leaving(p)], self.pool, notices, now)
        split = split_replicas(self.total, self.pool, capacity, self.fallback, now, current=self.current)
        self.fallback, self.current = split.fallback, (split.ondemand, split.spot)
        world.replicas = deployment_replicas(split, pods)
        await executor.finish("sim", started, by_name, record, now)
        world.replicas = deployment_replicas(split, pods)


def run(world: World, operator: Operator, until: float, on_tick=None) -> None:
    operator.step(world)
    world.tick(0)
    while world.t < until:
        if on_tick is not None:
            on_tick(world)
        world.tick()
        operator.step(world)


def serving(world: World) -> int:
    return len(serving_pods([world.pod_obj(p) for p in world.pods if not p.gone and world.ready(p)]))


# The world is the oracle of the stories; its own rules are checked here.


def test_pdb_model_matches_the_api_server_rules():
    world = World(startup=10)
    world.nodes = {n: Node(n, "spot", slots=2) for n in ("a", "b")}
    world.pods = [Pod(f"p{i}", "spot", -100, "a", -100) for i in range(3)]
    world.replicas = {"ondemand": 0, "spot": 3}
    # 3 expected, 3 healthy, maxUnavailable 1 → one disruption allowed for a healthy pod.
    assert world.evict(world.pods[0], 30) == "Evicted"
    # Now 2 healthy of 3 expected: a second healthy pod may not go.
    assert world.evict(world.pods[1], 30) == "TooManyRequests"
    # An unhealthy (drained) pod may go while currentHealthy >= desiredHealthy (IfHealthyBudget).
    world.pods[1].draining = True
    world.replicas = {"ondemand": 0, "spot": 2}
    assert world.evict(world.pods[1], 30) == "Evicted"


def test_kubelet_kills_at_the_grace_and_counts_the_cut():
    world = World()
    world.nodes = {"a": Node("a", "spot")}
    pod = Pod("p", "spot", -100, "a", -100, requests=[5, 50])
    world.pods = [pod]
    world.replicas = {"ondemand": 0, "spot": 0}
    world.terminate(pod, 10)
    for _ in range(10):
        world.tick()
    assert pod.gone and world.finished == 1 and world.cut == 1
