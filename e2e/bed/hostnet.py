"""The host settings the real nodes need, applied before any component starts and undone after.

The real nodes' pods live on Linux bridges on this machine (one per node), and their
Services on a range that must not be loopback (a pod's network namespace owns 127/8).
Neither range may ever follow the machine's default route, not even in the second before
kube-proxy has written its rules, so the routes are in place before etcd starts:

| range / object          | what the bed installs                                           |
| ----------------------- | --------------------------------------------------------------- |
| 10.244.<i>.0/24         | bridge `lfbed<i>` with 10.244.<i>.1 (the node's IP, CNI gateway) |
| 10.96.0.0/16 (Services) | a link route on the first bridge (kube-proxy DNATs before it    |
|                         | matters), and `unreachable` at a higher metric as a fallback    |
| 10.244.0.0/16 (pods)    | `unreachable` for every /24 no bridge has                       |
| FORWARD                 | chain LLMFLEET-BED, first: bridge-to-bridge passes, anything    |
|                         | else into or out of a bed bridge is dropped                     |
| sysctls                 | ip_forward=1 (pod <-> Service across bridges); the originals of |
|                         | it and of those the kubelet and kube-proxy change are saved and |
|                         | restored                                                        |

Pods get no default route (CNI routes only the two ranges) and no masquerading, so a pod
cannot address anything off this machine. `plan_*` are pure (tested without root);
`apply`/`revert` run them.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
#: The API server's own ClusterIP (first of the range) and CoreDNS's Service.
KUBERNETES_SERVICE_IP = "10.96.0.1"
GUARD_CHAIN = "LLMFLEET-BED"
BRIDGE_PREFIX = "lfbed"
FALLBACK_METRIC = 4096

#: Sysctls the bed, the kubelet or kube-proxy change; their values before `up` are saved.
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "vm.overcommit_memory",
    "kernel.panic",
    "kernel.panic_on_oops",
)


@dataclass(frozen=True)
class Bridge:
    name: str
    subnet: str  # the node's pod /24
    gateway: str  # the bridge's address: node IP, pods' gateway, where CoreDNS listens


def bridge_for(index: int) -> Bridge:
    net = ipaddress.ip_network(POD_CIDR)
    subnet = list(net.subnets(new_prefix=24))[index]
    return Bridge(f"{BRIDGE_PREFIX}{index}", str(subnet), str(subnet.network_address + 1))


def plan_up(bridges: list[Bridge]) -> list[list[str]]:
    """The commands that put the bridges, routes and forward guard in place (idempotent)."""
    cmds: list[list[str]] = []
    for b in bridges:
        prefix = ipaddress.ip_network(b.subnet).prefixlen
        cmds += [
            ["ip", "link", "add", b.name, "type", "bridge"],
            ["ip", "addr", "replace", f"{b.gateway}/{prefix}", "dev", b.name],
            ["ip", "link", "set", b.name, "up"],
        ]
    cmds += [
        ["ip", "route", "replace", SERVICE_CIDR, "dev", bridges[0].name, "src", bridges[0].gateway],
        ["ip", "route", "replace", "unreachable", SERVICE_CIDR, "metric", str(FALLBACK_METRIC)],
        ["ip", "route", "replace", "unreachable", POD_CIDR, "metric", str(FALLBACK_METRIC)],
        ["iptables", "-w", "-N", GUARD_CHAIN],
        ["iptables", "-w", "-F", GUARD_CHAIN],
        [
            "iptables",
            "-w",
            "-A",
            GUARD_CHAIN,
            "-i",
            f"{BRIDGE_PREFIX}+",
            "-o",
            f"{BRIDGE_PREFIX}+",
            "-j",
            "ACCEPT",
        ],
        ["iptables", "-w", "-A", GUARD_CHAIN, "-i", f"{BRIDGE_PREFIX}+", "-j", "DROP"],
        ["iptables", "-w", "-A", GUARD_CHAIN, "-o", f"{BRIDGE_PREFIX}+", "-j", "DROP"],
        ["iptables", "-w", "-I", "FORWARD", "1", "-j", GUARD_CHAIN],
    ]
    return cmds


def plan_down(bridges: list[Bridge]) -> list[list[str]]:
    """The commands that remove what plan_up added (each may fail harmlessly if already gone)."""
    cmds: list[list[str]] = [
        ["iptables", "-w", "-D", "FORWARD", "-j", GUARD_CHAIN],
        ["iptables", "-w", "-F", GUARD_CHAIN],
        ["iptables", "-w", "-X", GUARD_CHAIN],
        ["ip", "route", "del", "unreachable", SERVICE_CIDR, "metric", str(FALLBACK_METRIC)],
        ["ip", "route", "del", "unreachable", POD_CIDR, "metric", str(FALLBACK_METRIC)],
        ["ip", "route", "del", SERVICE_CIDR, "dev", bridges[0].name],
    ]
    cmds += [["ip", "link", "del", b.name] for b in bridges]
    return cmds


def run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def read_sysctls() -> dict[str, str]:
    out = {}
    for key in SYSCTLS:
        path = Path("/proc/sys") / key.replace(".", "/")
        try:
            out[key] = path.read_text().strip()
        except OSError:
            pass
    return out


def write_sysctl(key: str, value: str) -> None:
    (Path("/proc/sys") / key.replace(".", "/")).write_text(value + "\n")


def apply(bridges: list[Bridge]) -> None:
    for cmd in plan_up(bridges):
        # `ip link add` and `iptables -N` fail when a killed run left them: that is fine.
        tolerate = cmd[:3] == ["ip", "link", "add"] or cmd[2:3] == ["-N"]
        run(cmd, check=not tolerate)
    write_sysctl("net.ipv4.ip_forward", "1")


def revert(bridges: list[Bridge], sysctls: dict[str, str]) -> list[str]:
    """Undo apply and restore the saved sysctls; returns what could not be undone."""
    problems = []
    for cmd in plan_down(bridges):
        done = run(cmd, check=False)
        if done.returncode != 0 and not any(
            s in done.stderr for s in ("No such", "No chain", "does not exist", "Cannot find", "Bad rule")
        ):
            problems.append(f"{' '.join(cmd)}: {done.stderr.strip()}")
    for key, value in sysctls.items():
        try:
            write_sysctl(key, value)
        except OSError as e:
            problems.append(f"sysctl {key}={value}: {e}")
    return problems


def default_gateway() -> str | None:
    """The machine's default route's gateway (the address pods' traffic must never reach)."""
    out = run(["ip", "-4", "route", "show", "default"], check=False).stdout.split()
    return out[out.index("via") + 1] if "via" in out else None
