"""`make bench-operator`: what the operator costs and how fast it reacts, on the real control plane.

Two parts, on a bed of its own (default dir /tmp/llmfleet-bench-operator; stopped at the end
unless --keep, and only if this command started it): the real nodes, running the chart with the
images `make images` built (so the operator and engine under test are the working tree's as of
that build), plus `--kwok-nodes` kwok nodes for the stand-ins (e2e/bed/kwoknodes.py).

1. Reaction, on the real nodes (one LLMService: the tiny model, the engine image, `maxNumSeqs: 1`,
   an AutoscalePolicy `QueueDepth` target 1, min 1 max 2, no scale-down window): for each
   sync period asked (default 5 and 15 s), `--reps` bursts of 4 clients. Timestamps:
   the engine's `llmfleet_engine_requests_waiting` first non-zero (its /metrics polled every
   ~0.1 s), the Deployment's `spec.replicas` raised by the operator, the new pod Ready.
2. Scale, on the kwok nodes: stand-in LLMServices (`engine.kind: vllm`, placed on the kwok
   nodes by spec.scheduling; kwok marks their pods Ready with the node's address, where the bed
   runs e2e/standin_engine, an idle fake that answers /health and a fixed vLLM /metrics, one per
   node; see its README) — first 1 (the baseline), then `--services` in all, `--with-policy` of them under
   10 shared AutoscalePolicies (default sync period 15 s), added in two steps (those without a policy first).
   After each step, once all are Ready and settled, over a
   steady window: the operator's API requests per minute, from its own
   `llmfleet_operator_api_requests_total` (the reconciler's calls) and from the API server's
   `apiserver_flowcontrol_dispatched_requests_total` of a FlowSchema that matches only the
   operator's service account (every request it makes, kopf's watches and patches included);
   and its CPU from its container's cgroup (cpuacct.usage, or cpu.stat's usage_usec on cgroup v2:
   every process of the container), found through the container's pid (`ctr tasks ls` on its node).

Pure helpers (parsing, rates, summaries) sit at the top and are unit-tested in
tests/operator/test_bench_operator.py; the bed is only touched from main().
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
E2E = ROOT / "e2e"
DEFAULT_DIR = "/tmp/llmfleet-bench-operator"
FLOW_SCHEMA = "llmfleet-bench-operator"
# One FlowSchema per (resource, verb) the operator may use, ahead of FLOW_SCHEMA (which then
# counts the rest): the API server's dispatched-requests counter per schema is the breakdown.
BREAKDOWN_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")
BREAKDOWN_RESOURCES = ("pods", "pods/eviction", "deployments", "services", "poddisruptionbudgets", "events",
                       "nodes", "secrets", "llmservices", "llmservices/status", "autoscalepolicies",
                       "autoscalepolicies/status", "spotpools", "spotpools/status", "inferencepools")
MODEL_PATH = Path("/var/lib/llmfleet/models/tiny-chat")

# --- pure helpers -------------------------------------------------------------------

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text exposition → (name, labels, value); comments and bad lines skipped."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        out.append((m.group(1), dict(_LABEL.findall(m.group(3) or "")), value))
    return out


def metric_sum(text: str, name: str, **labels: str) -> float | None:
    """Sum of the samples of `name` whose labels include `labels`; None when there is none."""
    found = [v for n, ls, v in parse_samples(text) if n == name and all(ls.get(k) == w for k, w in labels.items())]
    return sum(found) if found else None


def metric_by(text: str, name: str, label: str) -> dict[str, float]:
    """The samples of `name`, summed by one label's value."""
    out: dict[str, float] = {}
    for n, ls, v in parse_samples(text):
        if n == name:
            out[ls.get(label, "")] = out.get(ls.get(label, ""), 0.0) + v
    return out


def breakdown_schemas(sa: str, namespace: str) -> list[dict]:
    """FlowSchemas matching one (resource, verb) each for the service account `sa`, named
    FLOW_SCHEMA-<resource>-<verb>; they take precedence over FLOW_SCHEMA's catch-all."""
    out = []
    for resource in BREAKDOWN_RESOURCES:
        for verb in BREAKDOWN_VERBS:
            out.append({
                "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
                "metadata": {"name": f"{FLOW_SCHEMA}-{resource.replace('/', '-')}-{verb}"},
                "spec": {"priorityLevelConfiguration": {"name": "workload-low"}, "matchingPrecedence": 900,
                         "distinguisherMethod": {"type": "ByUser"},
                         "rules": [{"subjects": [{"kind": "ServiceAccount",
                                                  "serviceAccount": {"name": sa, "namespace": namespace}}],
                                    "resourceRules": [{"verbs": [verb], "apiGroups": ["*"], "resources": [resource],
                                                       "clusterScope": True, "namespaces": ["*"]}]}]}})
    return out


def schema_counts(text: str) -> dict[str, float]:
    """{"<resource>-<verb>" or "other": dispatched requests} of the bench's FlowSchemas."""
    out: dict[str, float] = {}
    for schema, value in metric_by(text, "apiserver_flowcontrol_dispatched_requests_total", "flow_schema").items():
        if schema == FLOW_SCHEMA:
            out["other"] = out.get("other", 0.0) + value
        elif schema.startswith(FLOW_SCHEMA + "-"):
            key = schema[len(FLOW_SCHEMA) + 1:]
            out[key] = out.get(key, 0.0) + value
    return out


def proc_cpu_seconds(stat: str, clock_ticks: int) -> float:
    """utime + stime of a /proc/<pid>/stat line (all threads), in seconds.

    The command name (field 2) may hold spaces and parentheses: fields are counted after the last ')'.
    """
    rest = stat.rsplit(")", 1)[1].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(rest[11]) + int(rest[12])) / clock_ticks


def cgroup_cpu_seconds(proc_cgroup: str, read: Any) -> float:
    """CPU seconds of the cgroup a process is in, from its /proc/<pid>/cgroup text; `read(path)`
    returns a file's text under /sys/fs/cgroup. cgroup v1's cpuacct controller (in ns) when the
    process has one, else the v2 unified hierarchy's cpu.stat usage_usec."""
    unified = None
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            return int(read(f"{controllers}/{path.lstrip('/')}/cpuacct.usage").strip()) / 1e9
        if controllers == "":
            unified = path
    if unified is None:
        raise ValueError("the process is in no cpuacct or unified cgroup")
    for line in read(f"{unified.lstrip('/')}/cpu.stat").splitlines():
        key, value = line.split()
        if key == "usage_usec":
            return int(value) / 1e6
    raise ValueError("cpu.stat has no usage_usec")


def per_minute(before: float, after: float, seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("the window must last")
    return (after - before) * 60.0 / seconds


def counter_deltas(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """after - before per key (a key new in `after` counts from 0)."""
    return {k: after[k] - before.get(k, 0.0) for k in sorted(after)}


def cpu_ms_per_minute(cpu_percent: float) -> float:
    """Percent of one core → milliseconds of CPU per minute (1 % = 600 ms/min)."""
    return cpu_percent * 600.0


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(min, median, max)."""
    if not values:
        raise ValueError("no values")
    return min(values), statistics.median(values), max(values)


def fmt_spread(values: Sequence[float], unit: str = "s") -> str:
    lo, mid, hi = spread(values)
    return f"{lo:.1f} / {mid:.1f} / {hi:.1f} {unit}"


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as r:
            return r.status == 200
    except OSError:
        return False


# --- the bed ------------------------------------------------------------------------


@dataclass
class Snapshot:
    t: float
    cpu: float
    reconciler: dict[str, float]
    apiserver: float | None
    reconciles: float
    others_cpu: dict[str, float] = field(default_factory=dict)
    schemas: dict[str, float] = field(default_factory=dict)  # schema_counts


@dataclass
class Window:
    label: str
    services: int
    seconds: float
    cpu_percent: float
    reconciler_per_min: dict[str, float]
    apiserver_per_min: float | None
    reconciles_per_min: float
    others_cpu_percent: dict[str, float]
    apiserver_by: dict[str, float] = field(default_factory=dict)  # per minute, by "<resource>-<verb>"

    @property
    def reconciler_total_per_min(self) -> float:
        return sum(self.reconciler_per_min.values())

    def line(self) -> str:
        verbs = ", ".join(f"{k} {v:.1f}" for k, v in self.reconciler_per_min.items() if v)
        api = f"{self.apiserver_per_min:.1f}" if self.apiserver_per_min is not None else "n/a"
        per = self.services or 1
        return (
            f"{self.label}: {self.services} services, {self.seconds:.0f} s window: operator CPU "
            f"{self.cpu_percent:.2f} % of a core ({cpu_ms_per_minute(self.cpu_percent) / per:.1f} ms CPU/min "
            f"per service); "
            f"API requests/min: apiserver (operator's SA) {api}, reconciler {self.reconciler_total_per_min:.1f} "
            f"({verbs or 'none'}); per service {self.reconciler_total_per_min / per:.2f} reconciler, "
            + (f"{self.apiserver_per_min / per:.2f} apiserver" if self.apiserver_per_min is not None else "")
            + f"; syncs/min {self.reconciles_per_min:.1f}; bed: "
            + ", ".join(f"{k} {v:.1f} %" for k, v in self.others_cpu_percent.items())
            + ("; apiserver by resource-verb: " + ", ".join(
                f"{k} {v:.1f}" for k, v in sorted(self.apiserver_by.items(), key=lambda kv: -kv[1]) if v >= 0.05)
               if self.apiserver_by else "")
        )


def window_of(label: str, services: int, a: Snapshot, b: Snapshot) -> Window:
    s = b.t - a.t
    return Window(
        label,
        services,
        s,
        100.0 * (b.cpu - a.cpu) / s,
        {k: v * 60.0 / s for k, v in counter_deltas(a.reconciler, b.reconciler).items()},
        per_minute(a.apiserver, b.apiserver, s) if a.apiserver is not None and b.apiserver is not None else None,
        per_minute(a.reconciles, b.reconciles, s),
        {k: 100.0 * (b.others_cpu[k] - a.others_cpu.get(k, 0.0)) / s for k in b.others_cpu},
        {k: v * 60.0 / s for k, v in counter_deltas(a.schemas, b.schemas).items()},
    )


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # The bed reads its directory at import.
        os.environ.setdefault("LLMFLEET_CLUSTER_DIR", args.cluster_dir)
        sys.path.insert(0, str(E2E))
        sys.path.insert(0, str(E2E / "bed"))
        import cluster as bed  # noqa: PLC0415
        import kwoknodes  # noqa: PLC0415
        import nodeimages  # noqa: PLC0415
        import realnodes  # noqa: PLC0415

        self.bed, self.kwok, self.realnodes = bed, kwoknodes, realnodes
        operator_image = realnodes.app_image_refs()[0]
        self.tree = f"the images `make images` built ({operator_image}: {nodeimages.image_id(operator_image)})"
        print(f"operator and engine code: {self.tree}", flush=True)
        self.owner = f"bench-operator-{os.getpid()}"
        self.clk = os.sysconf("SC_CLK_TCK")

    # -- setup
    def up(self) -> None:
        from bedkit import E2ECluster  # noqa: PLC0415
        from kubernetes import client, config  # noqa: PLC0415

        t0 = time.monotonic()
        problems = self.realnodes.preflight()
        if problems:
            raise SystemExit("the bench needs the bed's real nodes:\n  " + "\n  ".join(problems))
        try:
            found = self.bed.up(owner=self.owner, kwok_nodes=self.args.kwok_nodes)
        except self.bed.BedError as e:
            raise SystemExit(f"the bed did not come up: {e}") from None
        state = self.bed.load_state()
        self.pids = {k: v["pid"] for k, v in state["processes"].items() if k in ("kube-apiserver", "etcd", "kwok")}
        os.environ["PATH"] = self.bed.tools_path()
        api = config.new_client_from_config(str(found.kubeconfig))
        self.c = E2ECluster(found.kubeconfig, found.server, api, client.CoreV1Api(api), client.AppsV1Api(api),
                            client.DiscoveryV1Api(api), found.dir)
        self.custom = client.CustomObjectsApi(api)
        print(f"bed: {found.dir} ({found.server}) in {time.monotonic() - t0:.0f} s", flush=True)

    def install(self) -> None:
        import operator_support as ops  # noqa: PLC0415
        from bedkit import wait_until  # noqa: PLC0415

        self.ops = ops
        ops.helm(self.c, "upgrade", "--install", ops.RELEASE, str(ops.CHART), "--namespace", ops.OPERATOR_NS,
                 "--create-namespace", *ops.allowed_host_paths(), "--set", "grafanaDashboard.enabled=false",
                 "--wait", "--timeout", "180s")
        wait_until("the operator pod Ready", lambda: ops.operator_ready(self.c), timeout=120, interval=1)
        pod = ops.operator_pods(self.c)[0]
        self.op_pid = self.container_pid(pod.spec.node_name, pod.status.container_statuses[0].container_id)
        self.op_cgroup = Path(f"/proc/{self.op_pid}/cgroup").read_text()
        self.op_ip = pod.status.pod_ip
        sa = pod.spec.service_account_name
        print(f"operator container: pid {self.op_pid} on {pod.spec.node_name}", flush=True)
        fs = {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema", "metadata": {"name": FLOW_SCHEMA},
            "spec": {"priorityLevelConfiguration": {"name": "workload-low"}, "matchingPrecedence": 1000,
                     "distinguisherMethod": {"type": "ByUser"},
                     "rules": [{"subjects": [{"kind": "ServiceAccount",
                                              "serviceAccount": {"name": sa, "namespace": ops.OPERATOR_NS}}],
                                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                                   "clusterScope": True, "namespaces": ["*"]}],
                                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}]}}
        self._apply({"apiVersion": "v1", "kind": "List", "items": [fs, *breakdown_schemas(sa, ops.OPERATOR_NS)]})
        print(f"operator: metrics http://{self.op_ip}:8080/metrics, "
              f"service account {ops.OPERATOR_NS}/{sa} counted by FlowSchema {FLOW_SCHEMA}", flush=True)

    def container_pid(self, node_name: str, container_id: str) -> int:
        """The host pid of a container's task, from its node's containerd (`ctr tasks ls`)."""
        node = next(n for n in self.realnodes.REAL_NODES if n.name == node_name)
        cid = container_id.removeprefix("containerd://")
        out = self.realnodes.ctr(self.c.dir, node, "tasks", "ls", timeout=30).stdout
        for line in out.splitlines()[1:]:
            task, pid, *_ = line.split()
            if task == cid:
                return int(pid)
        raise SystemExit(f"container {cid} has no task on {node_name}")

    def operator_cpu(self) -> float:
        return cgroup_cpu_seconds(self.op_cgroup, lambda rel: Path("/sys/fs/cgroup", rel).read_text())

    def _apply(self, obj: dict) -> None:
        import subprocess  # noqa: PLC0415

        subprocess.run(["kubectl", f"--kubeconfig={self.c.kubeconfig}", "apply", "--server-side", "-f", "-"],
                       input=json.dumps(obj), text=True, check=True, capture_output=True, timeout=60)

    def down(self) -> None:
        if self.args.keep:
            print(f"--keep: the bed stays up (LLMFLEET_CLUSTER_DIR={self.bed.STATE_DIR}; "
                  "python3 e2e/bed/cluster.py down to stop it)")
            return
        self.bed.down(owner=self.owner)

    # -- measuring
    def snapshot(self) -> Snapshot:
        op = urllib.request.urlopen(f"http://{self.op_ip}:8080/metrics", timeout=10).read().decode()
        apis = self.c.kubectl("get", "--raw", "/metrics", timeout=60)
        others = {}
        for name, pid in self.pids.items():
            try:
                others[name] = proc_cpu_seconds(Path(f"/proc/{pid}/stat").read_text(), self.clk)
            except OSError:
                pass
        return Snapshot(
            time.monotonic(),
            self.operator_cpu(),
            metric_by(op, "llmfleet_operator_api_requests_total", "verb"),
            sum(schema_counts(apis).values()) or None,
            metric_sum(op, "llmfleet_operator_reconciles_total", kind="LLMService") or 0.0,
            others,
            schema_counts(apis),
        )

    def measure(self, label: str, services: int, seconds: float) -> Window:
        a = self.snapshot()
        time.sleep(seconds)
        b = self.snapshot()
        w = window_of(label, services, a, b)
        rss = next((ln.split()[1] for ln in Path(f"/proc/{self.op_pid}/status").read_text().splitlines()
                    if ln.startswith("VmRSS")), "?")
        print(w.line() + f"; operator RSS {int(rss) // 1024 if rss != '?' else '?'} MiB", flush=True)
        return w

    # -- objects
    def namespace(self, name: str) -> None:
        self.c.core.create_namespace({"metadata": {"name": name}})

    def policy(self, ns: str, name: str, spec: dict) -> None:
        self.custom.create_namespaced_custom_object("llmfleet.dev", "v1alpha1", ns, "autoscalepolicies", {
            "apiVersion": "llmfleet.dev/v1alpha1", "kind": "AutoscalePolicy", "metadata": {"name": name}, "spec": spec})

    def service(self, ns: str, name: str, spec: dict) -> None:
        self.custom.create_namespaced_custom_object("llmfleet.dev", "v1alpha1", ns, "llmservices", {
            "apiVersion": "llmfleet.dev/v1alpha1", "kind": "LLMService", "metadata": {"name": name}, "spec": spec})

    def phases(self, ns: str) -> dict[str, str]:
        items = self.custom.list_namespaced_custom_object("llmfleet.dev", "v1alpha1", ns, "llmservices")["items"]
        return {o["metadata"]["name"]: (o.get("status") or {}).get("phase", "") for o in items}

    # -- part 1
    def reaction(self) -> dict[int, list[dict]]:
        self.ops.ensure_model(MODEL_PATH)
        from bedkit import readable_by_pods  # noqa: PLC0415

        readable_by_pods(MODEL_PATH)  # the engine image's uid 10001 reads it through a hostPath mount
        ns = "bench-reaction"
        self.namespace(ns)
        return {period: self._reaction_runs(ns, period) for period in self.args.sync}

    def _reaction_runs(self, ns: str, period: int) -> list[dict]:
        from bedkit import wait_until  # noqa: PLC0415

        ops = self.ops
        results: list[dict] = []
        name = f"react-{period}"
        self.policy(ns, name, {"minReplicas": 1, "maxReplicas": 2,
                               "metric": {"type": "QueueDepth", "targetAverageValue": 1},
                               "syncPeriodSeconds": period,
                               "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}})
        # One torch thread: the engine shares this machine's few cores with the bed and the load.
        self.service(ns, name, {"model": {"uri": f"file://{MODEL_PATH}"},
                                "engine": {"maxNumSeqs": 1, "maxModelLen": 256, "extraArgs": ["--threads", "1"]},
                                "autoscalePolicyRef": {"name": name},
                                "drainGraceSeconds": 2, "drainTimeoutSeconds": 30})
        sel = f"llmfleet.dev/service={name}"

        def pods() -> list:
            return [p for p in self.c.core.list_namespaced_pod(ns, label_selector=sel).items
                    if p.metadata.deletion_timestamp is None]

        def ready(p: Any) -> bool:
            return any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])

        def replicas() -> int:
            return self.c.apps.read_namespaced_deployment(name, ns).spec.replicas

        def settled() -> Any:
            ps = self.c.core.list_namespaced_pod(ns, label_selector=sel).items  # terminating ones too
            return replicas() == 1 and len(ps) == 1 and ready(ps[0]) and ps[0]

        for rep in range(self.args.reps):
            pod = wait_until(f"{name} at one ready pod", settled, timeout=180, interval=0.5)
            # The scale-down that ended the last burst happened at a sync: without a random wait the next
            # burst would start at the same phase of the operator's sync cycle every time.
            time.sleep(2 + random.uniform(0, period))
            url = f"http://{pod.status.pod_ip}:8000/metrics"
            load = ops.Load(self.c, ns, name, name, clients=4, max_tokens=200).start()
            t_load = time.monotonic()
            t_queue = t_scale = t_pod = t_up = t_ready = None
            try:
                deadline = t_load + 3 * period + 120
                while t_ready is None and time.monotonic() < deadline:
                    now = time.monotonic()
                    if t_queue is None:
                        try:
                            text = urllib.request.urlopen(url, timeout=2).read().decode()
                            if (metric_sum(text, "llmfleet_engine_requests_waiting") or 0) > 0:
                                t_queue = now
                        except OSError:
                            pass
                    elif t_scale is None:
                        if replicas() > 1:
                            t_scale = now
                    else:
                        ps = pods()
                        if t_pod is None and len(ps) >= 2:
                            t_pod = now
                        if sum(1 for p in ps if ready(p)) >= 2:
                            t_ready = now
                            t_pod = t_pod or now
                            t_up = t_up or now
                        elif t_up is None:  # the new engine answering /health, before any probe sees it
                            new = [p.status.pod_ip for p in ps if p.status.pod_ip and p.status.pod_ip != pod.status.pod_ip]
                            if new and answers(f"http://{new[0]}:8000/health"):
                                t_up = now
                    time.sleep(0.05)
            finally:
                load.stop()
            if t_queue is None or t_scale is None or t_ready is None:
                print(f"  sync {period} s, rep {rep + 1}: incomplete (queue {t_queue}, scale {t_scale}, "
                      f"ready {t_ready}); {load.ok} ok, {len(load.failures)} failed", flush=True)
                continue
            r = {"load_to_queue": t_queue - t_load, "queue_to_scale": t_scale - t_queue,
                 "scale_to_ready": t_ready - t_scale, "queue_to_ready": t_ready - t_queue,
                 "scale_to_pod": t_pod - t_scale, "pod_to_ready": t_ready - t_pod,
                 "pod_to_engine_up": t_up - t_pod, "engine_up_to_ready": t_ready - t_up,
                 "ok": load.ok, "failed": len(load.failures)}
            results.append(r)
            print(f"  sync {period} s, rep {rep + 1}: queue formed {r['load_to_queue']:.2f} s after the burst; "
                  f"replicas raised {r['queue_to_scale']:.1f} s later; new pod Ready {r['scale_to_ready']:.1f} s "
                  f"after that (pod seen {r['scale_to_pod']:.1f} s after the raise, engine answering /health "
                  f"{r['pod_to_engine_up']:.1f} s later, Ready {r['engine_up_to_ready']:.1f} s after that; queue → Ready "
                  f"{r['queue_to_ready']:.1f} s); {load.ok} ok, "
                  f"{len(load.failures)} failed", flush=True)
        self.custom.delete_namespaced_custom_object("llmfleet.dev", "v1alpha1", ns, "llmservices", name)
        wait_until(f"{name} gone", lambda: name not in self.phases(ns), timeout=120, interval=1)
        return results

    # -- part 2
    def scale(self) -> list[Window]:
        from bedkit import wait_until  # noqa: PLC0415

        a = self.args
        ns = "bench-fleet"
        self.namespace(ns)
        for i in range(10):
            self.policy(ns, f"p{i}", {"minReplicas": 1, "maxReplicas": 2,
                                      "metric": {"type": "QueueDepth", "targetAverageValue": 5}})

        def spec(i: int) -> dict:
            s: dict = {"model": {"uri": f"file://{MODEL_PATH}"}, "engine": {"kind": "vllm"},
                       "scheduling": self.kwok.placement(), "drainGraceSeconds": 1, "drainTimeoutSeconds": 5}
            if i < a.with_policy:
                s["autoscalePolicyRef"] = {"name": f"p{i % 10}"}
            return s

        windows = []
        self.service(ns, "s000", spec(0))
        wait_until("s000 Ready", lambda: self.phases(ns).get("s000") == "Ready", timeout=120, interval=1)
        time.sleep(a.settle)
        windows.append(self.measure("baseline (1 service, with a policy)", 1, a.baseline_window))

        # Then the services without a policy, then the rest with one: the marginal cost of each kind.
        steps = [(f"+{a.services - a.with_policy} without a policy", range(a.with_policy, a.services)),
                 (f"fleet (+{a.with_policy - 1} with a policy)", range(1, a.with_policy))]
        for label, batch in steps:
            if not batch:
                continue
            t0 = time.monotonic()
            for i in batch:
                self.service(ns, f"s{i:03d}", spec(i))
            total = len(self.phases(ns))
            print(f"created {len(batch)} more LLMServices in {time.monotonic() - t0:.0f} s ({total} in all)", flush=True)
            last = [time.monotonic()]

            def all_ready(total: int = total, t0: float = t0, last: list = last) -> bool:
                n = sum(1 for v in self.phases(ns).values() if v == "Ready")
                if time.monotonic() - last[0] > 30:
                    last[0] = time.monotonic()
                    print(f"  {n}/{total} Ready after {time.monotonic() - t0:.0f} s", flush=True)
                return n == total

            wait_until(f"{total} LLMServices Ready", all_ready, timeout=a.ready_timeout, interval=3)
            print(f"all {total} Ready {time.monotonic() - t0:.0f} s after the first create", flush=True)
            time.sleep(a.settle)
            windows.append(self.measure(label, total, a.window))
        return windows


def report(tree: str, reaction: dict[int, list[dict]], windows: list[Window]) -> None:
    print(f"\n== summary ({tree}) ==")
    for period, runs in reaction.items():
        if not runs:
            print(f"reaction, sync {period} s: no complete run")
            continue
        print(f"reaction, sync {period} s, {len(runs)} runs (min / median / max): "
              f"queue → replicas raised {fmt_spread([r['queue_to_scale'] for r in runs])}; "
              f"raised → new pod Ready {fmt_spread([r['scale_to_ready'] for r in runs])} (of which "
              f"pod seen → Ready {fmt_spread([r['pod_to_ready'] for r in runs])}, engine answering → Ready "
              f"{fmt_spread([r.get('engine_up_to_ready', float('nan')) for r in runs])}); "
              f"queue → Ready {fmt_spread([r['queue_to_ready'] for r in runs])}")
    for w in windows:
        print(w.line())
    for b, f in zip(windows, windows[1:], strict=False):
        extra = f.services - b.services
        print(f"{f.label} vs {b.label}: CPU {b.cpu_percent:.2f} % → {f.cpu_percent:.2f} % of a core "
              f"(+{cpu_ms_per_minute(f.cpu_percent - b.cpu_percent) / extra:.1f} ms CPU/min per added service); "
              f"reconciler API {b.reconciler_total_per_min:.1f} → {f.reconciler_total_per_min:.1f} req/min "
              f"(+{(f.reconciler_total_per_min - b.reconciler_total_per_min) / extra:.2f} per added service)"
              + (f"; apiserver (operator's SA) {b.apiserver_per_min:.1f} → {f.apiserver_per_min:.1f} req/min"
                 if b.apiserver_per_min is not None and f.apiserver_per_min is not None else ""))


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--cluster-dir", default=DEFAULT_DIR, help="the bed's own directory (LLMFLEET_CLUSTER_DIR wins)")
    p.add_argument("--part", choices=["all", "reaction", "scale"], default="all")
    p.add_argument("--kwok-nodes", type=int, default=4, help="kwok nodes for the stand-ins (110 pods each)")
    p.add_argument("--sync", type=int, nargs="+", default=[5, 15], help="sync periods for the reaction part")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--services", type=int, default=200)
    p.add_argument("--with-policy", type=int, default=100)
    p.add_argument("--baseline-window", type=float, default=120)
    # 300 s: a revision with the 5-minute re-apply (before the drift check) has it in the window once; since
    # then the safety resync is every 30 minutes (RESYNC_SECONDS), 0.1 applies/min per service, mostly outside.
    p.add_argument("--window", type=float, default=300)
    p.add_argument("--settle", type=float, default=30, help="seconds after Ready before a window starts")
    p.add_argument("--ready-timeout", type=float, default=900)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--keep", action="store_true", help="leave the bed running")
    args = p.parse_args(list(argv) if argv is not None else None)
    args.with_policy = min(args.with_policy, args.services)

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)  # so the bed is still torn down

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # a background job inherits SIGINT ignored
    bench = Bench(args)
    reaction: dict[int, list[dict]] = {}
    windows: list[Window] = []
    try:
        bench.up()
        bench.install()
        if args.part in ("all", "reaction"):
            reaction = bench.reaction()
        if args.part in ("all", "scale"):
            windows = bench.scale()
    finally:
        report(bench.tree, reaction, windows)
        if args.json:
            args.json.write_text(json.dumps({"tree": bench.tree, "reaction": reaction, "windows": [
                {**w.__dict__, "reconciler_total_per_min": w.reconciler_total_per_min} for w in windows]}, indent=1))
        bench.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
