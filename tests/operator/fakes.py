"""Fakes the operator's tests share: an in-memory API server, a world with clocks and a scraper
the test moves, and its spot variant (Nodes, the Eviction API, the engines' /drain).

Test files import from here, never from each other.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta

from llmfleet.operator.adapters.kube import KubeError
from llmfleet.operator.adapters.scrape import EngineScrape
from llmfleet.operator.handlers.reconciler import Reconciler
from llmfleet.operator.handlers.spot import SpotRuntime
from llmfleet.operator.policy import AdmissionRules

NS = "team-a"
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
MODELS_ALLOWED = AdmissionRules(host_path_prefixes=("/models",))  # the admin lets file:///models/... through


def _merge(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class FakeKube:
    """An in-memory API server: SSA replaces what we own, merge patches merge, generation follows spec."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], dict] = {}
        self.log: list[tuple[str, str, str]] = []  # (verb, kind, name) of writes
        self.reads = 0
        self.rv = 0

    def put(self, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("generation", 1)
        meta.setdefault("uid", f"uid-{meta['name']}")
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        self.objects[(obj["kind"], meta.get("namespace"), meta["name"])] = obj
        return obj

    async def get(self, kind, namespace, name):
        self.reads += 1
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj else None

    async def list(self, kind, namespace, label_selector=""):
        self.reads += 1
        want = dict(kv.split("=", 1) for kv in label_selector.split(",") if kv)
        return [copy.deepcopy(o) for (k, ns, _), o in sorted(self.objects.items())
                if k == kind and ns == namespace
                and all((o["metadata"].get("labels") or {}).get(a) == b for a, b in want.items())]

    async def exists(self, kind, namespace, name):
        self.reads += 1
        return (kind, namespace, name) in self.objects

    async def apply(self, obj, force=True):
        key = (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
        self.log.append(("apply", obj["kind"], obj["metadata"]["name"]))
        old = self.objects.get(key)
        new = copy.deepcopy(obj)
        ours = {r.get("uid") for r in obj["metadata"].get("ownerReferences") or []}
        if not force and old is not None and not ours & {r.get("uid") for r in old["metadata"].get("ownerReferences")
                                                          or []}:
            raise KubeError(409, "Apply failed with 1 conflict: conflict with \"kubectl\": .data")  # another manager's
        if old is None:
            return copy.deepcopy(self.put(new))
        new["metadata"] = {**old["metadata"], **new["metadata"]}
        new["status"] = old.get("status", {})
        if new.get("spec") == old.get("spec") and new["metadata"] == old["metadata"]:
            return copy.deepcopy(old)
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = old["metadata"]["generation"] + 1
        return copy.deepcopy(self.put(new))

    async def patch(self, kind, namespace, name, patch, subresource=None):
        self.log.append(("patch" + (f"/{subresource}" if subresource else ""), kind, name))
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            raise KubeError(404, f"{kind} {name} not found")
        _merge(obj, patch)
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(obj)

    async def delete(self, kind, namespace, name):
        self.log.append(("delete", kind, name))
        self.objects.pop((kind, namespace, name), None)

    def writes(self, verb_prefix: str = "") -> list[tuple[str, str, str]]:
        return [w for w in self.log if w[0].startswith(verb_prefix)]


class Index:
    """kopf's indexes as the watch keeps them (handlers/store.py's Store): the fake API server's
    objects, read without a request. With `lagging`, it serves the copy taken at `deliver()`."""

    def __init__(self, kube: FakeKube, lagging: bool = False) -> None:
        self.kube, self.lagging = kube, lagging
        self.snapshot = copy.deepcopy(kube.objects)

    def deliver(self) -> None:
        self.snapshot = copy.deepcopy(self.kube.objects)

    def _objects(self) -> dict:
        return self.snapshot if self.lagging else self.kube.objects

    def _children(self, kind: str, namespace: str, service: str) -> list[dict]:
        return [copy.deepcopy(o) for (k, ns, _), o in sorted(self._objects().items())
                if k == kind and ns == namespace
                and (o["metadata"].get("labels") or {}).get("llmfleet.dev/service") == service]

    def pods(self, namespace, service):
        return self._children("Pod", namespace, service)

    def deployments(self, namespace, service):
        return self._children("Deployment", namespace, service)

    def get(self, kind, namespace, name):
        obj = self._objects().get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None


class World:
    indexed = False  # the reconcilers read through kopf's indexes (Index), as in production
    """The fake API server plus a scraper and clocks the test moves."""

    def __init__(self) -> None:
        self.kube = FakeKube()
        self.events: list[tuple[str, str, str]] = []
        self.now = T0
        self.mono = 1000.0
        self.queue: dict[str, float] = {}  # pod -> requests waiting (scraped)
        self.watchers: list[Reconciler] = []  # told of child changes, as kopf's pod/Deployment events do
        self.running: dict[str, float] = {}

    async def scrape(self, targets, now):
        return {t.pod: EngineScrape(t.pod, now, waiting=self.queue.get(t.pod, 0.0),
                                    running=self.running.get(t.pod, 0.0), generation_tokens=0.0)
                for t in targets}

    def reconciler(self) -> Reconciler:
        rec = Reconciler(kube=self.kube, post_event=lambda body, t, r, m: self.events.append((t, r, m)),
                         scrape=self.scrape, clock=lambda: self.now, monotonic=lambda: self.mono,
                         admission=MODELS_ALLOWED)
        if self.indexed:
            rec.use_store(Index(self.kube))
        self.watchers.append(rec)
        return rec

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds

    def service(self, name="chat", **spec) -> dict:
        body = {"apiVersion": "llmfleet.dev/v1alpha1", "kind": "LLMService",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"model": {"uri": "file:///models/tiny"}, **spec}}
        return self.kube.put(body)

    def body(self, name="chat") -> dict:
        return copy.deepcopy(self.kube.objects[("LLMService", NS, name)])

    def policy(self, name="chat-policy", **spec) -> dict:
        return self.kube.put({"apiVersion": "llmfleet.dev/v1alpha1", "kind": "AutoscalePolicy",
                              "metadata": {"name": name, "namespace": NS},
                              "spec": {"maxReplicas": 8, "metric": {"type": "QueueDepth", "targetAverageValue": 2},
                                       "syncPeriodSeconds": 5, **spec}})

    def deployment(self, name="chat") -> dict:
        return self.kube.objects[("Deployment", NS, name)]

    def run_pods(self, dep="chat", ready=True) -> list[str]:
        """Play the ReplicaSet controller and kubelet: pods to match the Deployment, all (not) ready."""
        d = self.deployment(dep)
        want = d["spec"]["replicas"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        have = [k for k in self.kube.objects if k[0] == "Pod" and k[2].startswith(dep + "-")]
        for key in have[want:]:
            del self.kube.objects[key]
        for i in range(len(have), want):
            self.kube.put({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": f"{dep}-{i}", "namespace": NS, "labels": dict(labels)},
                           "status": {"phase": "Running", "podIP": f"10.0.0.{i}", "startTime": "2026-01-01T12:00:00Z",
                                      "conditions": [{"type": "PodScheduled", "status": "True"},
                                                     {"type": "Ready", "status": "True" if ready else "False"}]}})
        d["status"] = {"observedGeneration": d["metadata"]["generation"], "replicas": want,
                       "updatedReplicas": want, "readyReplicas": want if ready else 0,
                       "availableReplicas": want if ready else 0}
        for rec in self.watchers:
            rec.mark_status(NS, d["metadata"]["labels"]["llmfleet.dev/service"])
        return [f"{dep}-{i}" for i in range(want)]


def sync(world: World, rec: Reconciler, name="chat", **kw) -> None:
    asyncio.run(rec.sync(world.body(name), **kw))


def tick(world: World, rec: Reconciler, name="chat") -> None:
    asyncio.run(rec.tick(world.body(name)))


def status(world: World, name="chat") -> dict:
    return world.body(name).get("status", {})


def cond(world: World, type_: str, name="chat") -> tuple[str, str]:
    c = next(c for c in status(world, name)["conditions"] if c["type"] == type_)
    return c["status"], c["reason"]


# --- spot: Nodes, the Eviction API and the engines' /drain ------------------------------------

NTH = "aws-node-termination-handler/spot-itn"


class SpotKube(FakeKube):
    """FakeKube plus the Eviction API (scripted answers per pod) and deletes with a grace period."""

    def __init__(self) -> None:
        super().__init__()
        self.evictions: dict[str, list[str]] = {}  # pod -> answers to come ("Evicted" when empty)
        self.listed: list[str] = []  # kinds listed, in order

    async def list(self, kind, namespace, label_selector=""):
        self.listed.append(kind)
        return await super().list(kind, namespace, label_selector)

    async def evict(self, namespace, name, grace_seconds):
        self.log.append(("evict", "Pod", name))
        self.graces = getattr(self, "graces", []) + [(name, grace_seconds)]
        answers = self.evictions.get(name) or []
        result = answers.pop(0) if answers else "Evicted"
        if result == "Evicted":
            self.objects[("Pod", namespace, name)]["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:00Z"
        return result

    async def delete(self, kind, namespace, name, grace_seconds=None):
        if kind == "Pod":
            self.log.append(("delete", "Pod", name))
            self.objects[(kind, namespace, name)]["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:00Z"
            return
        await super().delete(kind, namespace, name)


class SpotWorld(World):
    def __init__(self) -> None:
        super().__init__()
        self.kube = SpotKube()
        self.engines: dict[str, dict] = {}  # pod IP -> {"draining", "in_flight"}
        for name, kind in (("gpu-od-a", "on-demand"), ("gpu-od-b", "on-demand"),
                           ("gpu-spot-a", "spot"), ("gpu-spot-b", "spot")):
            self.kube.put({"apiVersion": "v1", "kind": "Node", "metadata": {
                "name": name, "labels": {"karpenter.sh/capacity-type": kind}},
                "spec": {"providerID": f"aws:///us-east-1a/i-{name}"},
                "status": {"conditions": [{"type": "Ready", "status": "True",
                                           "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})

    async def engine(self, ip, post, token=None):
        self.kube.log.append(("POST /drain" if post else "GET /drain", "Pod", ip))
        self.drain_tokens = getattr(self, "drain_tokens", []) + ([token] if post else [])
        state = self.engines.setdefault(ip, {"draining": False, "in_flight": 0})
        if post:
            state["draining"] = True
        return dict(state)

    def reconciler(self, watch_nodes: bool = True) -> Reconciler:
        """A new operator process; with `watch_nodes`, the Node watch's initial list has arrived."""
        post = lambda body, t, r, m: self.events.append((t, r, m))  # noqa: E731
        rec = Reconciler(kube=self.kube, post_event=post, scrape=self.scrape, clock=lambda: self.now,
                         monotonic=lambda: self.mono, admission=MODELS_ALLOWED,
                         spot=SpotRuntime(kube=self.kube, post_event=post, engine=self.engine))
        if self.indexed:
            rec.use_store(Index(self.kube))
        if watch_nodes:
            for (kind, _, _), obj in sorted(self.kube.objects.items()):
                if kind == "Node":
                    rec.spot.node_seen(copy.deepcopy(obj))
        self.watchers.append(rec)
        return rec

    def pool(self, **spec) -> dict:
        return self.kube.put({"apiVersion": "llmfleet.dev/v1alpha1", "kind": "SpotPool",
                              "metadata": {"name": "gpu-spot"},
                              "spec": {"spot": {"nodeSelector": {"karpenter.sh/capacity-type": "spot"}},
                                       "onDemand": {"nodeSelector": {"karpenter.sh/capacity-type": "on-demand"}},
                                       "onDemandBase": 1, **spec}})

    def node(self, name) -> dict:
        return self.kube.objects[("Node", None, name)]

    def pods(self) -> dict[str, dict]:
        return {k[2]: o for k, o in self.kube.objects.items() if k[0] == "Pod"}

    def place(self) -> None:
        """ReplicaSets + scheduler + kubelet: pods to match each Deployment (the terminating ones
        do not count), spread over the schedulable nodes of their capacity, all ready."""
        n = len(self.pods())
        unpooled = ("Deployment", NS, "chat") in self.kube.objects  # one Deployment, capacity "any"
        for cap in ("any",) if unpooled else ("ondemand", "spot"):
            dep = self.deployment("chat" if unpooled else f"chat-{cap}")
            mine = [p for p in self.pods().values() if p["metadata"]["labels"]["llmfleet.dev/capacity"] == cap
                    and "deletionTimestamp" not in p["metadata"]]
            kind = "spot" if cap == "spot" else "on-demand"
            nodes = [name for (k, _, name), o in sorted(self.kube.objects.items()) if k == "Node"
                     and (unpooled or o["metadata"]["labels"]["karpenter.sh/capacity-type"] == kind)
                     and not o["spec"].get("unschedulable")
                     and not any(t["effect"] == "NoSchedule" for t in o["spec"].get("taints") or [])]
            for _ in range(len(mine), dep["spec"]["replicas"]):
                n += 1
                name = f"chat-{n}" if unpooled else f"chat-{cap}-{n}"
                on = [p["spec"].get("nodeName") for p in self.pods().values()]
                node = min(nodes, key=on.count) if nodes else None
                self.kube.put({"apiVersion": "v1", "kind": "Pod", "metadata": {
                    "name": name, "namespace": NS, "labels": dict(dep["spec"]["template"]["metadata"]["labels"])},
                    "spec": {"nodeName": node, "terminationGracePeriodSeconds":
                             dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]},
                    "status": {"phase": "Running", "podIP": f"10.0.0.{n}", "startTime": "2026-01-01T12:00:00Z",
                               "conditions": [{"type": "PodScheduled", "status": "True"},
                                              {"type": "Ready", "status": "True"}]}})
            dep["status"] = {"observedGeneration": dep["metadata"]["generation"], "replicas": dep["spec"]["replicas"],
                             "updatedReplicas": dep["spec"]["replicas"], "readyReplicas": dep["spec"]["replicas"],
                             "availableReplicas": dep["spec"]["replicas"]}
        for rec in self.watchers:
            rec.mark_status(NS, "chat")

    def changed(self) -> None:
        """A pod watch event (kopf's on_child_event)."""
        for rec in self.watchers:
            rec.mark_status(NS, "chat")

    def gone(self) -> None:
        """The kubelet finished the terminating pods."""
        for key in [k for k, o in self.kube.objects.items() if k[0] == "Pod" and "deletionTimestamp" in o["metadata"]]:
            del self.kube.objects[key]
        for rec in self.watchers:
            rec.mark_status(NS, "chat")

    def taint(self, node: str, key: str = NTH, **extra) -> None:
        n = self.node(node)
        n["spec"].setdefault("taints", []).append({"key": key, "effect": "NoSchedule", **extra})
        for rec in self.watchers:
            rec.spot.node_seen(n)
            rec.spot_changed()

    def untaint(self, node: str, key: str = NTH) -> None:
        n = self.node(node)
        n["spec"]["taints"] = [t for t in n["spec"].get("taints") or [] if t["key"] != key]
        for rec in self.watchers:
            rec.spot.node_seen(n)
            rec.spot_changed()

    def replicas(self) -> tuple[int, int]:
        return (self.deployment("chat-ondemand")["spec"]["replicas"], self.deployment("chat-spot")["spec"]["replicas"])


def pooled_world(**service) -> tuple[SpotWorld, Reconciler]:
    world = SpotWorld()
    world.pool()
    world.service(replicas=3, spotPoolRef={"name": "gpu-spot"}, drainGraceSeconds=2, drainTimeoutSeconds=30,
                  **service)
    rec = world.reconciler()
    sync(world, rec, force_apply=True)
    world.place()
    sync(world, rec)
    return world, rec


def spot_pod_on(world: SpotWorld, node: str) -> dict:
    return next(p for p in world.pods().values() if p["spec"]["nodeName"] == node)
