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
volume mounts other than hostPath at the same path and Secrets (written per pod, their
mountPath rewritten in command, args and env: podenv.py), network and mount namespaces,
resource limits, `kubectl logs/exec` (logs are in <pod-log-dir>/<ns>_<name>.log).

This module watches pods and keeps one PodWorker (podworker.py) per pod; what the
processes see is podenv.py, what is reported is podstatus.py.

Invariants: every API call retries with backoff and never kills the runner; every
process is recorded in <state-dir>/state.json as (pid, start time) as soon as it
starts, and a restarted runner stops the processes of its predecessor (their pods'
containers then restart, and restartCount says so).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from podworker import PodWorker
from procs import is_same_process, stop_process

log = logging.getLogger("podrunner")

IP_PREFIX = "127.10."


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
