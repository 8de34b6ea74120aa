"""The real nodes' host-global state besides the network (hostnet.py): cgroups, host paths,
mounts, leftover shims and network namespaces, the nftables ruleset; saved by `up`, undone by `down`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import hostnet
from realnodes import CGROUP_CONTROLLERS, HOST_PATHS, REAL_NODES, containerd_socket, ctr


def host_snapshot() -> dict:
    """What `down` must restore: sysctls, which host paths existed, the nft ruleset."""
    ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    return {
        "sysctls": hostnet.read_sysctls(),
        "existing_paths": [p for p in HOST_PATHS if os.path.lexists(p)],
        "nft_ruleset": ruleset,
    }


def make_cgroups() -> None:
    for node in REAL_NODES:
        for c in CGROUP_CONTROLLERS:
            base = Path("/sys/fs/cgroup") / c
            if not base.is_dir():
                continue
            path = base / node.cgroup_root.lstrip("/")
            path.mkdir(exist_ok=True)
            if c == "cpuset":
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (path / f).write_text((base / f).read_text())


def remove_cgroups() -> list[str]:
    problems = []
    for node in REAL_NODES:
        for c in (*CGROUP_CONTROLLERS, "unified"):
            path = Path("/sys/fs/cgroup") / c / node.cgroup_root.lstrip("/")
            if not path.is_dir():
                continue
            for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                try:
                    sub.rmdir()
                except OSError:
                    pass
            try:
                path.rmdir()
            except OSError as e:
                problems.append(f"cgroup {path}: {e}")
    return problems


def kill_node_containers(state_dir: Path) -> None:
    """Every task containerd still runs for the bed (pods the kubelets did not stop)."""
    for node in REAL_NODES:
        if not containerd_socket(state_dir, node).exists():
            continue
        tasks = ctr(state_dir, node, "tasks", "ls", "-q", timeout=30).stdout.split()
        for task in tasks:
            ctr(state_dir, node, "tasks", "kill", "-a", "-s", "SIGKILL", task, timeout=30)
        deadline = time.monotonic() + 10
        for task in tasks:
            while time.monotonic() < deadline:
                if ctr(state_dir, node, "tasks", "rm", "-f", task, timeout=30).returncode == 0:
                    break
                time.sleep(0.2)
        for container in ctr(state_dir, node, "containers", "ls", "-q", timeout=30).stdout.split():
            ctr(state_dir, node, "containers", "rm", container, timeout=30)


def shim_pids(state_dir: Path) -> list[int]:
    """containerd shims serving the bed's containerds (they outlive containerd by design)."""
    socks = {str(containerd_socket(state_dir, n)) for n in REAL_NODES}
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and any(s.encode() in argv for s in socks):
            pids.append(int(proc.name))
    return pids


def bed_netns() -> list[str]:
    """Network namespaces CNI made for the bed's pods (an address in the pod range)."""
    names = []
    for ns in Path("/run/netns").glob("cni-*") if Path("/run/netns").is_dir() else []:
        out = subprocess.run(["ip", "-n", ns.name, "-4", "addr"], capture_output=True, text=True).stdout
        if " 10.244." in out:
            names.append(ns.name)
    return names


def unmount_under(root: Path) -> list[str]:
    """Unmount everything mounted below root, deepest first (kubelet volumes, rootfs, shm)."""
    problems = []
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(root) or point.startswith(str(root) + "/"):
            mounts.append(point)
    for point in sorted(set(mounts), key=lambda p: -p.count("/")):
        done = subprocess.run(["umount", point], capture_output=True, text=True)
        if done.returncode != 0:
            done = subprocess.run(["umount", "-l", point], capture_output=True, text=True)
            if done.returncode != 0:
                problems.append(f"umount {point}: {done.stderr.strip()}")
    return problems


def clean_host_paths(state_dir: Path, existing: list[str]) -> None:
    """Remove the host paths the nodes created; in those that existed, only the bed's entries."""
    for path in HOST_PATHS:
        p = Path(path)
        if path not in existing:
            if p.is_dir() and not p.is_symlink():
                unmount_under(p)
                shutil.rmtree(p, ignore_errors=True)
            continue
        if path == "/var/log/containers":
            for link in p.glob("*.log"):
                if str(os.readlink(link)).startswith(str(state_dir)):
                    link.unlink(missing_ok=True)
        elif path == "/var/lib/cni":
            for f in (p / "results").glob("llmfleet-bed-*"):
                f.unlink(missing_ok=True)


def restore_nft(ruleset: str) -> list[str]:
    """Put the machine's nftables ruleset back as it was before `up` (iptables-nft included)."""
    now = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    if now == ruleset:
        return []
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as f:
        f.write("flush ruleset\n" + ruleset)
        f.flush()
        done = subprocess.run(["nft", "-f", f.name], capture_output=True, text=True)
    return [f"nft restore: {done.stderr.strip()}"] if done.returncode != 0 else []
