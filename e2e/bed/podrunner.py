"""The e2e pod runner: plays the kubelet for every pod bound to a kwok node.

kwok keeps the simulated nodes Ready but has no Pod stages, so it never touches a
pod; this process owns them all. For each pod it:

| step        | what it does                                                                 |
| ----------- | ---------------------------------------------------------------------------- |
| admit       | gives the pod a free loopback IP (127.10.x.y; kept if the pod already has one) |
| init        | runs init containers in order, each to exit 0, with kubelet-style backoff    |
| start       | runs each container's command+args as a local process group, env resolved,  |
|             | plus LLMFLEET_ENGINE_HOST=<pod IP> and OMP_NUM_THREADS=1                     |
| probe       | startup/readiness/liveness probes (httpGet, tcpSocket, exec) on the pod IP   |
| report      | phase, podIP(s), hostIP(s), conditions, container statuses via pods/status   |
| restart     | exited containers per restartPolicy, with backoff 10s doubling to 5 min     |
| terminate   | on deletion: preStop (exec/httpGet/sleep), SIGTERM, wait out the grace, SIGKILL, |
|             | report terminated states, then delete with grace 0 and the pod's UID         |

Not emulated (no containers here): images (the command must exist on this host),
volume mounts other than hostPath at the same path, network and mount namespaces,
resource limits, `kubectl logs/exec` (logs are in <pod-log-dir>/<ns>_<name>.log).

Invariants: every API call retries with backoff and never kills the runner; every
process is recorded in <state-dir>/state.json as (pid, start time) before anything
else happens, and a restarted runner stops the processes of its predecessor (their
pods' containers then restart, and restartCount says so).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from procs import is_same_process, proc_start_time, signal_group, stop_process

log = logging.getLogger("podrunner")

BACKOFF_BASE = float(os.environ.get("LLMFLEET_RUNNER_BACKOFF_SECONDS", "10"))
BACKOFF_MAX = 300.0
#: Conditions the runner owns; any other (PodScheduled, DisruptionTarget, gates) is kept as found.
OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
IP_PREFIX = "127.10."


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def listening_ips() -> set[str]:
    """IPv4 addresses with a listening TCP socket, from /proc/net/tcp."""
    ips = set()
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return ips
    for line in lines:
        parts = line.split()
        if len(parts) > 3 and parts[3] == "0A":  # LISTEN
            hexip = parts[1].split(":")[0]
            ips.add(socket.inet_ntoa(bytes.fromhex(hexip)[::-1]))
    return ips


class IPPool:
    """Hands out 127.10.x.y addresses, never one in use by a pod or a listening socket."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.used: set[str] = set()
        # A random start keeps two beds on one machine (two checkouts) apart.
        self.next = random.randint(1, 60000)

    def take(self, wanted: str | None = None) -> str:
        with self.lock:
            busy = listening_ips()
            if wanted and wanted.startswith(IP_PREFIX) and wanted not in self.used and wanted not in busy:
                self.used.add(wanted)
                return wanted
            for _ in range(65000):
                n = self.next
                self.next = self.next % 65000 + 1
                ip = f"{IP_PREFIX}{n // 254}.{n % 254 + 1}"  # .1 to .254, never .0 or .255
                if ip not in self.used and ip not in busy:
                    self.used.add(ip)
                    return ip
            raise RuntimeError("no free loopback address left")

    def give_back(self, ip: str | None) -> None:
        with self.lock:
            self.used.discard(ip)


class Runner:
    """Watches pods and keeps one PodWorker thread per pod on a kwok node."""

    def __init__(self, api: client.ApiClient, state_dir: Path, pod_log_dir: Path, node_annotation: str):
        self.api = api
        self.core = client.CoreV1Api(api)
        self.state_dir = state_dir
        self.pod_log_dir = pod_log_dir
        self.node_key, _, self.node_value = node_annotation.partition("=")
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.save_lock = threading.Lock()
        self.workers: dict[str, PodWorker] = {}
        self.finished: set[str] = set()
        self.nodes: dict[str, str] = {}  # kwok node name -> its InternalIP
        self.nodes_listed = 0.0
        self.ips = IPPool()
        self.processes: dict[tuple[str, str], dict] = {}  # (pod uid, container) -> record

    # --- bookkeeping ---------------------------------------------------------------

    def save_state(self) -> None:
        with self.save_lock:  # one writer at a time: workers record from their own threads
            with self.lock:
                data = {"processes": list(self.processes.values())}
            tmp = self.state_dir / "state.json.tmp"
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(self.state_dir / "state.json")

    def record(self, uid: str, container: str, rec: dict | None) -> None:
        with self.lock:
            if rec is None:
                self.processes.pop((uid, container), None)
            else:
                self.processes[(uid, container)] = rec
        self.save_state()

    def stop_orphans(self) -> None:
        """Stop the processes a previous runner left behind (it was killed, or crashed)."""
        try:
            old = json.loads((self.state_dir / "state.json").read_text()).get("processes", [])
        except (OSError, ValueError):
            old = []
        for p in old:
            if is_same_process(p["pid"], p.get("start_time")):
                log.info("stopping orphan %s (pid %s) of a previous runner", p.get("name"), p["pid"])
                stop_process(p.get("name", "?"), p["pid"], p.get("start_time"), grace=5.0)
        self.save_state()

    def call(self, what: str, fn, *args, **kwargs):
        """Call the API, retrying transient failures with backoff; None if the object is gone."""
        delay = 0.5
        for attempt in range(8):
            if self.stopping.is_set() and attempt:
                return None
            try:
                return fn(*args, _request_timeout=30, **kwargs)
            except ApiException as e:
                if e.status in (404, 409):
                    return None
                if e.status is not None and 400 <= e.status < 500 and e.status != 429:
                    log.warning("%s: %s %s", what, e.status, (e.body or "")[:300])
                    return None
                log.info("%s: %s (retrying)", what, e.status)
            except Exception as e:  # noqa: BLE001 - connection errors, timeouts
                log.info("%s: %s (retrying)", what, e)
            time.sleep(delay)
            delay = min(delay * 2, 10)
        log.warning("%s: gave up", what)
        return None

    # --- nodes and pods ------------------------------------------------------------

    def refresh_nodes(self, force: bool = False) -> None:
        if not force and time.monotonic() - self.nodes_listed < 5:
            return
        resp = self.call("list nodes", self.core.list_node, _preload_content=False)
        if resp is None:
            return
        nodes = {}
        for node in json.loads(resp.data)["items"]:
            if (node["metadata"].get("annotations") or {}).get(self.node_key) == self.node_value:
                addrs = (node.get("status") or {}).get("addresses") or []
                ip = next((a["address"] for a in addrs if a["type"] == "InternalIP"), "127.0.0.1")
                nodes[node["metadata"]["name"]] = ip
        self.nodes = nodes
        self.nodes_listed = time.monotonic()

    def dispatch(self, kind: str, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        node = (pod.get("spec") or {}).get("nodeName")
        with self.lock:
            worker = self.workers.get(uid)
        if worker is not None:  # ours already, even if its node has gone since
            if kind == "DELETED":
                worker.gone()
            else:
                worker.update(pod)
            return
        if not node:
            return
        if node not in self.nodes:
            self.refresh_nodes(force=time.monotonic() - self.nodes_listed > 1)
            if node not in self.nodes:
                return
        with self.lock:
            worker = self.workers.get(uid)
            if worker is None:
                if kind == "DELETED" or uid in self.finished:
                    return
                terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                if terminal and not pod["metadata"].get("deletionTimestamp"):
                    return
                worker = PodWorker(self, pod, self.nodes[node])
                self.workers[uid] = worker
                worker.start()
        if kind == "DELETED":
            worker.gone()
        else:
            worker.update(pod)

    def done(self, uid: str, failed: bool = False) -> None:
        with self.lock:
            self.workers.pop(uid, None)
            if not failed:  # a failed worker's pod is taken up again at the next event or relist
                self.finished.add(uid)

    def watch_pods(self) -> None:
        rv = None
        delay = 1.0
        last_list = 0.0
        while not self.stopping.is_set():
            try:
                if rv is None or time.monotonic() - last_list > 60:
                    self.refresh_nodes(force=True)
                    resp = self.core.list_pod_for_all_namespaces(_preload_content=False, _request_timeout=30)
                    data = json.loads(resp.data)
                    rv = data["metadata"]["resourceVersion"]
                    last_list = time.monotonic()
                    seen = set()
                    for pod in data["items"]:
                        seen.add(pod["metadata"]["uid"])
                        self.dispatch("ADDED", pod)
                    with self.lock:
                        vanished = [w for uid, w in self.workers.items() if uid not in seen]
                    for w in vanished:
                        w.gone()
                stream = watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces,
                    resource_version=rv,
                    timeout_seconds=30,
                    allow_watch_bookmarks=True,
                    _request_timeout=60,
                )
                for event in stream:
                    if self.stopping.is_set():
                        break
                    obj = event["raw_object"]
                    if event["type"] == "ERROR":
                        rv = None
                        break
                    rv = obj["metadata"].get("resourceVersion", rv)
                    if event["type"] != "BOOKMARK":
                        self.dispatch(event["type"], obj)
                delay = 1.0
            except ApiException as e:
                if e.status != 410:
                    log.info("pod watch: %s; retrying in %.0fs", e.status, delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 30)
                rv = None
            except Exception as e:  # noqa: BLE001 - the API went away; list again when it is back
                log.info("pod watch: %s; retrying in %.0fs", e, delay)
                rv = None
                time.sleep(delay)
                delay = min(delay * 2, 30)

    def heartbeat(self) -> None:
        beat = self.state_dir / "heartbeat"
        while not self.stopping.wait(2):
            beat.touch()

    def run(self) -> None:
        self.stop_orphans()
        (self.state_dir / "heartbeat").touch()
        threading.Thread(target=self.heartbeat, daemon=True, name="heartbeat").start()
        watcher = threading.Thread(target=self.watch_pods, daemon=True, name="watch")
        watcher.start()
        self.stopping.wait()
        log.info("stopping: terminating every pod process")
        with self.lock:
            workers = list(self.workers.values())
        for w in workers:
            w.wake.set()
        for w in workers:
            w.join(timeout=40)
        self.save_state()
        log.info("stopped")


# --- one pod -------------------------------------------------------------------------


@dataclass
class Probe:
    spec: dict
    ok: bool  # the current result (readiness starts False, liveness True)
    successes: int = 0
    failures: int = 0
    last: float = 0.0

    def due(self, started: float, t: float) -> bool:
        if t < started + self.spec.get("initialDelaySeconds", 0):
            return False
        return t - self.last >= self.spec.get("periodSeconds", 10)

    def observe(self, result: bool) -> None:
        self.last = time.monotonic()
        if result:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.spec.get("successThreshold", 1):
                self.ok = True
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= self.spec.get("failureThreshold", 3):
                self.ok = False


@dataclass
class Container:
    spec: dict
    init: bool = False
    proc: subprocess.Popen | None = None
    started_at: str | None = None
    started_mono: float = 0.0
    restart_count: int = 0
    exit_code: int | None = None
    exit_handled: bool = False
    finished_at: str | None = None
    last_terminated: dict | None = None
    backoff_until: float = 0.0
    backoff: float = 0.0
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    probes: dict[str, Probe] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminated_state(self) -> dict:
        code = self.exit_code if self.exit_code is not None else 0
        return {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "containerID": self.container_id(),
        }

    def container_id(self) -> str:
        pid = self.proc.pid if self.proc else 0
        return f"llmfleet-podrunner://{pid}"


class PodWorker(threading.Thread):
    """Drives one pod from admission to deletion; the only writer of its status."""

    def __init__(self, runner: Runner, pod: dict, host_ip: str):
        meta = pod["metadata"]
        super().__init__(daemon=True, name=f"pod {meta['namespace']}/{meta['name']}")
        self.runner = runner
        self.pod = pod
        self.uid = meta["uid"]
        self.ns, self.name = meta["namespace"], meta["name"]
        self.host_ip = host_ip
        self.wake = threading.Event()
        self.deleted = False
        self.ip: str | None = None
        self.start_time = (pod.get("status") or {}).get("startTime") or now_iso()
        spec = pod["spec"]
        self.init = [Container(c, init=True) for c in spec.get("initContainers") or []]
        self.main = [Container(c) for c in spec.get("containers") or []]
        self.init_done = not self.init
        self.adopt(pod.get("status") or {})
        self.init_failed = False
        self.sent: dict | None = None
        self.transitions: dict[str, tuple[str, str]] = {}
        self.pod_dir = runner.state_dir / "pods" / self.uid
        self.log_path = runner.pod_log_dir / f"{self.ns}_{self.name}.log"
        self.extra_env: dict[str, str] = {}

    def adopt(self, status: dict) -> None:
        """Carry on from a previous runner's report: counts go on, finished init is not rerun."""
        before = {
            s["name"]: s
            for s in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
        }
        for c in self.init + self.main:
            old = before.get(c.name)
            if not old:
                continue
            c.restart_count = old.get("restartCount", 0)
            state = old.get("state") or {}
            if "running" in state:  # its process was stopped with the previous runner
                c.last_terminated = {
                    "exitCode": 137,
                    "reason": "Error",
                    "message": "the pod runner restarted",
                    "startedAt": state["running"].get("startedAt"),
                    "finishedAt": now_iso(),
                }
            elif old.get("lastState", {}).get("terminated"):
                c.last_terminated = old["lastState"]["terminated"]
        inits = [before.get(c.name, {}).get("state", {}).get("terminated", {}) for c in self.init]
        if self.init and all(t.get("exitCode") == 0 for t in inits):
            for c, t in zip(self.init, inits, strict=True):
                c.exit_code, c.exit_handled, c.waiting = 0, True, None
                c.started_at, c.finished_at = t.get("startedAt"), t.get("finishedAt")
            self.init_done = True

    # called from the watch thread
    def update(self, pod: dict) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.wake.set()

    def gone(self) -> None:
        self.deleted = True
        self.wake.set()

    @property
    def spec(self) -> dict:
        return self.pod["spec"]

    @property
    def terminating(self) -> bool:
        return (
            self.deleted
            or bool(self.pod["metadata"].get("deletionTimestamp"))
            or self.runner.stopping.is_set()
        )

    def run(self) -> None:
        failed = False
        try:
            status = self.pod.get("status") or {}
            if status.get("phase") not in ("Succeeded", "Failed"):
                self.ip = self.runner.ips.take(status.get("podIP"))
                self.pod_dir.mkdir(parents=True, exist_ok=True)
                self.prepare_service_account()
                while not self.terminating:
                    self.step()
                    self.report()
                    self.wake.wait(0.25)
            self.terminate()
        except Exception:  # noqa: BLE001 - one pod's trouble must not take the runner down
            log.exception("%s: worker failed", self.name)
            failed = True
            for c in self.init + self.main:
                self.kill(c, grace=2)
                self.runner.record(self.uid, c.name, None)
        finally:
            self.runner.ips.give_back(self.ip)
            shutil.rmtree(self.pod_dir, ignore_errors=True)
            self.runner.done(self.uid, failed)

    # --- environment ---------------------------------------------------------------

    def prepare_service_account(self) -> None:
        """Stand-in for the projected token: a kubeconfig with a token bound to this pod."""
        spec = self.spec
        if spec.get("automountServiceAccountToken") is False:
            return
        sa = spec.get("serviceAccountName") or "default"
        body = {
            "spec": {
                "expirationSeconds": 86400,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": self.name, "uid": self.uid},
            }
        }
        resp = self.runner.call(
            f"token for {self.ns}/{sa}",
            self.runner.core.create_namespaced_service_account_token,
            sa,
            self.ns,
            body,
        )
        if resp is None:
            return
        cfg = self.runner.api.configuration
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "pod",
            "clusters": [
                {"name": "bed", "cluster": {"server": cfg.host, "certificate-authority": cfg.ssl_ca_cert}}
            ],
            "users": [{"name": sa, "user": {"token": resp.status.token}}],
            "contexts": [{"name": "pod", "context": {"cluster": "bed", "user": sa, "namespace": self.ns}}],
        }
        path = self.pod_dir / "kubeconfig"
        path.write_text(json.dumps(kubeconfig))
        path.chmod(0o600)
        self.extra_env["KUBECONFIG"] = str(path)
        (self.pod_dir / "namespace").write_text(self.ns)

    def field_value(self, path: str) -> str:
        meta = self.pod["metadata"]
        simple = {
            "metadata.name": self.name,
            "metadata.namespace": self.ns,
            "metadata.uid": self.uid,
            "spec.nodeName": self.spec.get("nodeName", ""),
            "spec.serviceAccountName": self.spec.get("serviceAccountName", ""),
            "status.podIP": self.ip or "",
            "status.podIPs": self.ip or "",
            "status.hostIP": self.host_ip,
            "status.hostIPs": self.host_ip,
        }
        if path in simple:
            return simple[path]
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return (meta.get(m.group(1)) or {}).get(m.group(2), "")
        raise ValueError(f"unsupported fieldRef {path}")

    def resource_value(self, c: dict, ref: dict) -> str:
        kind, _, res = ref["resource"].partition(".")
        value = ((c.get("resources") or {}).get(kind) or {}).get(res)
        if value is None:
            value = "48" if res == "cpu" else str(192 * 2**30)
        return str(value)

    def key_ref(self, kind: str, ref: dict) -> str | None:
        read = (
            self.runner.core.read_namespaced_secret
            if kind == "secret"
            else self.runner.core.read_namespaced_config_map
        )
        obj = self.runner.call(f"read {kind} {ref['name']}", read, ref["name"], self.ns)
        if obj is None:
            if ref.get("optional"):
                return None
            raise ValueError(f"{kind} {ref['name']} not found")
        if kind == "secret":
            import base64

            raw = (obj.data or {}).get(ref["key"])
            return None if raw is None else base64.b64decode(raw).decode()
        return (obj.data or {}).get(ref["key"])

    def environment(self, c: dict) -> dict[str, str]:
        """The host's environment, then the container's env/envFrom, $(VAR) expanded as kubelet does."""
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
        env.update(self.extra_env)
        env.update({"HOSTNAME": self.name, "LLMFLEET_ENGINE_HOST": self.ip or "", "OMP_NUM_THREADS": "1"})
        defined: dict[str, str] = {}
        for src in c.get("envFrom") or []:
            kind = "secret" if "secretRef" in src else "configmap"
            ref = src.get("secretRef") or src.get("configMapRef") or {}
            read = (
                self.runner.core.read_namespaced_secret
                if kind == "secret"
                else self.runner.core.read_namespaced_config_map
            )
            obj = self.runner.call(f"read {kind} {ref.get('name')}", read, ref.get("name"), self.ns)
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ValueError(f"{kind} {ref.get('name')} not found")
            import base64

            for k, v in (obj.data or {}).items():
                defined[src.get("prefix", "") + k] = base64.b64decode(v).decode() if kind == "secret" else v
        for e in c.get("env") or []:
            if "value" in e or "valueFrom" not in e:
                defined[e["name"]] = expand(e.get("value", ""), defined)
                continue
            vf = e["valueFrom"]
            if "fieldRef" in vf:
                value = self.field_value(vf["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in vf:
                value = self.resource_value(c, vf["resourceFieldRef"])
            elif "secretKeyRef" in vf:
                value = self.key_ref("secret", vf["secretKeyRef"])
            elif "configMapKeyRef" in vf:
                value = self.key_ref("configmap", vf["configMapKeyRef"])
            else:
                raise ValueError(f"unsupported valueFrom for {e['name']}")
            if value is not None:
                defined[e["name"]] = value
        env.update(defined)
        return env

    # --- processes -----------------------------------------------------------------

    def start_container(self, c: Container) -> None:
        try:
            env = self.environment(c.spec)
            argv = [expand(a, env) for a in (c.spec.get("command") or []) + (c.spec.get("args") or [])]
            if not c.spec.get("command"):
                raise ValueError("the bed runs no images: the container needs an explicit command")
            exe = shutil.which(argv[0], path=env.get("PATH"))
            if exe is None:
                raise ValueError(f"executable {argv[0]!r} not found on this host")
        except ValueError as e:
            c.waiting = ("CreateContainerConfigError", str(e))
            self.back_off(c)
            return
        cwd = c.spec.get("workingDir")
        if not cwd or not Path(cwd).is_dir():
            cwd = str(self.pod_dir)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            out.write(f"--- {now_iso()} container {c.name} start #{c.restart_count}: {argv}\n".encode())
            out.flush()
            c.proc = subprocess.Popen(
                [exe] + argv[1:],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.runner.record(
            self.uid,
            c.name,
            {
                "name": f"{self.ns}/{self.name}/{c.name}",
                "pid": c.proc.pid,
                "start_time": proc_start_time(c.proc.pid),
            },
        )
        if c.last_terminated is not None:
            c.restart_count += 1  # counted when the container really starts again, as kubelet does
        c.started_at, c.started_mono, c.exit_code, c.waiting = now_iso(), time.monotonic(), None, None
        c.exit_handled = False
        c.probes = {}
        for kind, initial in (("startupProbe", False), ("readinessProbe", False), ("livenessProbe", True)):
            if c.spec.get(kind) and not c.init:
                c.probes[kind] = Probe(c.spec[kind], ok=initial)
        log.info("%s/%s: started %s (pid %d) on %s", self.ns, self.name, c.name, c.proc.pid, self.ip)

    def reap(self, c: Container) -> bool:
        """True when c's process has just exited (its exit code is then recorded)."""
        if c.proc is None or c.exit_code is not None:
            return False
        code = c.proc.poll()
        if code is None:
            return False
        c.exit_code = 128 - code if code < 0 else code  # killed by signal N -> 128+N, as runtimes report
        c.finished_at = now_iso()
        self.runner.record(self.uid, c.name, None)
        log.info("%s/%s: %s exited with %d", self.ns, self.name, c.name, c.exit_code)
        return True

    def back_off(self, c: Container) -> None:
        """Delay the next start: at once after the first failure, then 10s, 20s, ... 5 min (kubelet's)."""
        if time.monotonic() - c.started_mono > 600:
            c.backoff = 0.0  # it ran fine for ten minutes: start over, as kubelet does
        c.backoff_until = time.monotonic() + c.backoff
        c.backoff = BACKOFF_BASE if c.backoff == 0 else min(c.backoff * 2, BACKOFF_MAX)

    def restart_wanted(self, c: Container) -> bool:
        policy = self.spec.get("restartPolicy", "Always")
        if c.init:
            return policy != "Never" and c.exit_code != 0
        return policy == "Always" or (policy == "OnFailure" and c.exit_code != 0)

    def kill(self, c: Container, grace: float, pre_stop: bool = False) -> None:
        """preStop (within the grace), SIGTERM, wait out the rest of the grace, SIGKILL."""
        if not c.running:
            self.reap(c)
            return
        deadline = time.monotonic() + grace
        hook = ((c.spec.get("lifecycle") or {}).get("preStop")) if pre_stop else None
        if hook:
            try:
                self.run_handler(c, hook, max(deadline - time.monotonic(), 0.1))
            except Exception as e:  # noqa: BLE001 - a failing hook does not stop the kill
                log.info("%s/%s: preStop of %s failed: %s", self.ns, self.name, c.name, e)
            if deadline - time.monotonic() < 2:
                deadline = time.monotonic() + 2  # kubelet's extra 2s for SIGTERM after a slow hook
        signal_group(c.proc.pid, signal.SIGTERM)
        while time.monotonic() < deadline and c.proc.poll() is None:
            time.sleep(0.05)
        if c.proc.poll() is None:
            log.info("%s/%s: %s ignored SIGTERM for %.0fs: SIGKILL", self.ns, self.name, c.name, grace)
            signal_group(c.proc.pid, signal.SIGKILL)
            try:
                c.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        # Whatever the group still holds goes too: a container's processes die with it.
        signal_group(c.proc.pid, signal.SIGKILL)
        self.reap(c)

    def run_handler(self, c: Container, handler: dict, timeout: float) -> bool:
        """Run a probe or lifecycle handler (exec, httpGet, tcpSocket, sleep); True on success."""
        if "exec" in handler:
            env = self.environment(c.spec)
            argv = [expand(a, env) for a in handler["exec"].get("command") or []]
            try:
                return (
                    subprocess.run(
                        argv,
                        env=env,
                        cwd=str(self.pod_dir),
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        timeout=timeout,
                    ).returncode
                    == 0
                )
            except (OSError, subprocess.TimeoutExpired):
                return False
        if "httpGet" in handler:
            h = handler["httpGet"]
            host = h.get("host") or self.ip
            conn_cls = (
                http.client.HTTPSConnection if h.get("scheme") == "HTTPS" else http.client.HTTPConnection
            )
            kwargs = {}
            if conn_cls is http.client.HTTPSConnection:
                import ssl

                kwargs["context"] = ssl._create_unverified_context()  # kubelet skips verification too
            conn = conn_cls(host, self.port(c, h["port"]), timeout=timeout, **kwargs)
            try:
                headers = {x["name"]: x["value"] for x in h.get("httpHeaders") or []}
                headers.setdefault("User-Agent", "kube-probe/llmfleet-podrunner")
                conn.request("GET", h.get("path") or "/", headers=headers)
                return 200 <= conn.getresponse().status < 400
            except (OSError, http.client.HTTPException):
                return False
            finally:
                conn.close()
        if "tcpSocket" in handler:
            t = handler["tcpSocket"]
            try:
                socket.create_connection(
                    (t.get("host") or self.ip, self.port(c, t["port"])), timeout=timeout
                ).close()
                return True
            except OSError:
                return False
        if "sleep" in handler:
            time.sleep(min(handler["sleep"]["seconds"], timeout))
            return True
        return True  # grpc probes are not emulated: count them as passing

    def port(self, c: Container, port) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for cont in self.spec.get("containers") or []:
            for p in cont.get("ports") or []:
                if p.get("name") == port:
                    return int(p["containerPort"])
        raise OSError(f"named port {port!r} not found in the pod")

    def probe(self, c: Container) -> None:
        t = time.monotonic()
        startup = c.probes.get("startupProbe")
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            p = c.probes.get(kind)
            if p is None or (kind != "startupProbe" and startup is not None and not startup.ok):
                continue
            if kind == "startupProbe" and p.ok:
                continue
            if p.due(c.started_mono, t):
                p.observe(self.run_handler(c, p.spec, p.spec.get("timeoutSeconds", 1)))
        failed = (
            startup is not None
            and not startup.ok
            and startup.failures >= startup.spec.get("failureThreshold", 3)
        ) or ("livenessProbe" in c.probes and not c.probes["livenessProbe"].ok)
        if failed:
            log.info("%s/%s: %s failed its liveness/startup probe: restarting", self.ns, self.name, c.name)
            self.kill(c, self.grace(), pre_stop=True)

    # --- the loop ------------------------------------------------------------------

    def exited(self, c: Container) -> bool:
        """True once per exit of c: the moment to decide on a restart."""
        self.reap(c)
        if c.proc is None or c.exit_code is None or c.exit_handled:
            return False
        c.exit_handled = True
        if self.restart_wanted(c):
            c.last_terminated = c.terminated_state()
            self.back_off(c)
            delay = c.backoff_until - time.monotonic()
            c.waiting = (
                "CrashLoopBackOff",
                f"back-off {max(delay, 0):.0f}s restarting failed container {c.name}",
            )
        return True

    def step(self) -> None:
        t = time.monotonic()
        if not self.init_done:
            for c in self.init:  # in order, each to a clean exit
                if c.exit_code == 0 and c.exit_handled:
                    continue
                if c.running:
                    return
                if self.exited(c):
                    if c.exit_code == 0:
                        continue
                    if not self.restart_wanted(c):
                        self.init_failed = True
                if not self.init_failed and c.waiting is not None and t >= c.backoff_until:
                    self.start_container(c)
                return
            self.init_done = True
        for c in self.main:
            if c.running:
                self.probe(c)
                continue
            self.exited(c)
            if c.waiting is not None and t >= c.backoff_until:
                self.start_container(c)

    def grace(self) -> float:
        meta = self.pod["metadata"]
        g = meta.get("deletionGracePeriodSeconds")
        if g is None:
            g = self.spec.get("terminationGracePeriodSeconds", 30)
        return max(float(g), 2.0)  # kubelet's minimum grace period

    def terminate(self) -> None:
        """Stop every container (preStop unless the runner itself is stopping), report, delete."""
        stopping = (
            self.runner.stopping.is_set()
            and not self.deleted
            and not self.pod["metadata"].get("deletionTimestamp")
        )
        grace = min(self.grace(), 10.0) if stopping else self.grace()
        threads = [
            threading.Thread(target=self.kill, args=(c, grace, not stopping))
            for c in self.init + self.main
            if c.proc is not None
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if stopping or self.deleted:
            return
        if any(c.proc is not None for c in self.init + self.main):  # else it ended before us: status stands
            for c in self.main:
                c.waiting = None
            self.report(final=True)
        body = client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=self.uid)
        )
        self.runner.call(
            f"delete pod {self.ns}/{self.name}",
            self.runner.core.delete_namespaced_pod,
            self.name,
            self.ns,
            body=body,
            grace_period_seconds=0,
        )
        log.info("%s/%s: terminated and deleted", self.ns, self.name)

    # --- status --------------------------------------------------------------------

    def container_status(self, c: Container, final: bool) -> dict:
        if c.init:
            ready = c.exit_code == 0
        else:
            ready = c.running and not final and all(p.ok for k, p in c.probes.items() if k != "livenessProbe")
        if c.running and not final:
            state = {"running": {"startedAt": c.started_at}}
        elif c.exit_code is not None and (c.waiting is None or final):
            state = {"terminated": c.terminated_state()}
        else:
            reason, message = c.waiting or ("ContainerCreating", "")
            if not c.init and not self.init_done:
                reason, message = "PodInitializing", ""
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        startup = c.probes.get("startupProbe")
        status = {
            "name": c.name,
            "image": c.spec.get("image", ""),
            "imageID": "",
            "ready": bool(ready),
            "restartCount": c.restart_count,
            "state": state,
            "started": bool(c.running and not final and (startup is None or startup.ok)),
            "lastState": {"terminated": c.last_terminated} if c.last_terminated else {},
        }
        if c.proc is not None:
            status["containerID"] = c.container_id()
        return status

    def phase(self, final: bool) -> str:
        if self.init_failed:
            return "Failed"
        if not self.init_done:
            return "Pending"
        if any(c.running for c in self.main) and not final:
            return "Running"
        if all(c.exit_code is not None for c in self.main):
            if final or not any(self.restart_wanted(c) for c in self.main):
                return "Succeeded" if all(c.exit_code == 0 for c in self.main) else "Failed"
            return "Running"
        return "Running" if any(c.proc is not None for c in self.main) else "Pending"

    def condition(self, kind: str, ok: bool, reason: str = "") -> dict:
        status = "True" if ok else "False"
        prev = self.transitions.get(kind)
        if prev is None or prev[0] != status:
            self.transitions[kind] = (status, now_iso())
        cond = {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self.transitions[kind][1],
        }
        if reason and not ok:
            cond["reason"] = reason
        return cond

    def report(self, final: bool = False) -> None:
        statuses = [self.container_status(c, final) for c in self.main]
        containers_ready = bool(statuses) and all(s["ready"] for s in statuses)
        current = {c["type"]: c for c in (self.pod.get("status") or {}).get("conditions") or []}
        gates = [g["conditionType"] for g in self.spec.get("readinessGates") or []]
        gates_ok = all(current.get(g, {}).get("status") == "True" for g in gates)
        ours = [
            self.condition("PodReadyToStartContainers", not final),
            self.condition("Initialized", self.init_done, "ContainersNotInitialized"),
            self.condition("ContainersReady", containers_ready, "ContainersNotReady"),
            self.condition("Ready", containers_ready and gates_ok, "ContainersNotReady"),
        ]
        kept = [c for t, c in current.items() if t not in OWN_CONDITIONS]
        status = {
            "phase": self.phase(final),
            "conditions": kept + ours,
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}] if self.ip else [],
            "startTime": self.start_time,
            "containerStatuses": statuses,
        }
        if self.init:
            status["initContainerStatuses"] = [self.container_status(c, final) for c in self.init]
        if status == self.sent:
            return
        done = self.runner.call(
            f"status of {self.ns}/{self.name}",
            self.runner.core.patch_namespaced_pod_status,
            self.name,
            self.ns,
            {"status": status},
            _content_type="application/merge-patch+json",
        )
        if done is not None:
            self.sent = status


_VAR = re.compile(r"\$(\$?)\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, $$(X) stays as $(X)."""

    def sub(m: re.Match) -> str:
        if m.group(1):
            return m.group(0)[1:]
        return env.get(m.group(2), m.group(0))

    return _VAR.sub(sub, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Plays the kubelet for pods on kwok nodes.")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--pod-log-dir", required=True, type=Path)
    parser.add_argument("--node-annotation", default="kwok.x-k8s.io/node=fake")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(threadName)s: %(message)s"
    )
    args.state_dir.mkdir(parents=True, exist_ok=True)
    args.pod_log_dir.mkdir(parents=True, exist_ok=True)
    api = config.new_client_from_config(args.kubeconfig)
    runner = Runner(api, args.state_dir, args.pod_log_dir, args.node_annotation)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: runner.stopping.set())
    runner.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
