"""What the runner reports for a pod through pods/status, in the kubelet's terms.

| field               | rule                                                                  |
| ------------------- | --------------------------------------------------------------------- |
| phase               | Pending until init is done and a container ran; Running while one     |
|                     | runs or will restart; then Succeeded if all exited 0, else Failed     |
| conditions          | PodReadyToStartContainers, Initialized, ContainersReady, Ready (with  |
|                     | readiness gates) are ours; any other condition is kept as found       |
| containerStatuses   | state running / waiting (reason) / terminated (exit code), lastState, |
|                     | ready (readiness and startup probes passed), started, restartCount    |

PodStatusReport is a mixin of PodWorker; a report is sent only when it changed.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from podworker import Container

#: Conditions the runner owns; any other (PodScheduled, DisruptionTarget, gates) is kept as found.
OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PodStatusReport:
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
