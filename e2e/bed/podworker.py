"""One pod's life on this host, from admission to deletion, in a thread of its own.

| step        | what happens                                                                 |
| ----------- | ---------------------------------------------------------------------------- |
| admit       | a free loopback IP; a bound service-account token                            |
| init        | init containers in order, each to exit 0, with backoff                       |
| start       | each container's command+args as a process group of its own                  |
| probe       | startup, then readiness and liveness; a failed liveness restarts it          |
| restart     | per restartPolicy: at once, then 10 s doubling to 5 min                      |
| terminate   | preStop, SIGTERM, the grace period, SIGKILL; report; delete with UID         |

The worker is the only writer of its pod's status and the only one to signal its
processes; the watch thread only hands it newer copies of the pod.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kubernetes import client
from podenv import PodEnvironment, expand, on_host
from podstatus import PodStatusReport, now_iso
from procs import proc_start_time, signal_group

if TYPE_CHECKING:
    from podrunner import Runner

log = logging.getLogger("podrunner")

BACKOFF_BASE = float(os.environ.get("LLMFLEET_RUNNER_BACKOFF_SECONDS", "10"))
BACKOFF_MAX = 300.0


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


class PodWorker(threading.Thread, PodEnvironment, PodStatusReport):
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

    # --- processes -----------------------------------------------------------------

    def start_container(self, c: Container) -> None:
        try:
            env = self.environment(c.spec)
            paths = self.secret_volume_paths(c.spec)
            argv = [on_host(expand(a, env), paths) for a in (c.spec.get("command") or []) + (c.spec.get("args") or [])]
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
