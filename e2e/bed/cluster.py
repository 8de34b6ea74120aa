"""Bring the e2e control plane up and down on loopback: the bed's only entry point.

    python3 e2e/bed/cluster.py up [--owner NAME] [--no-nodes | --kwok-nodes N]
                                                   start (or reuse a healthy) cluster: the control
                                                   plane and real kubelet/containerd nodes
                                                   (realnodes.py; root); --no-nodes: the control
                                                   plane alone (no root, any number per machine);
                                                   --kwok-nodes: N simulated nodes more, for scale
                                                   tests (kwoknodes.py)
    python3 e2e/bed/cluster.py down [--owner NAME] stop everything it started, by pid
    python3 e2e/bed/cluster.py status              exit 0 if a healthy cluster is up
    python3 e2e/bed/cluster.py restart COMPONENT [--hard] [--down-for S]
                                                   restart one process (to test recovery)

Everything lives in <repo>/.cluster/ (gitignored):

| path                  | what                                                        |
| --------------------- | ----------------------------------------------------------- |
| kubeconfig            | cluster-admin kubeconfig for tests and kubectl              |
| state.json            | ports, owner, and each process's pid and start time         |
| pids/<component>.pid  | the same pids, one file each, for people and shell scripts  |
| pki/                  | CA, API server serving cert, service-account key pair      |
| etcd/                 | etcd's data                                                 |
| logs/<component>.log  | each process's output                                       |
| nodes/                | the real nodes' configuration, roots and pod logs           |
| pods/                 | pod logs kept after the kubelet removes them (bedkit.py)    |

This module is the lifecycle (ports, start order, health waits, stop, recovery); what
each component is started with lives in controlplane.py.

Invariants: a pid is only ever signalled after /proc confirms it is the process that
was recorded (same start time), so a recycled pid is never hit; every wait has a
deadline; `down` works from any state, including a half-started or killed `up`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hostnet
import kwoknodes
import nodehost
import nodeimages
import realnodes
from controlplane import (
    BED,
    CACHE,
    binaries,
    command_lines,
    default_service_account,
    write_kubeconfigs,
    write_pki,
)
from controlplane import tools_path as tools_path  # for conftest.py and bench_operator.py
from procs import is_same_process, proc_start_time, stop_process

REPO = BED.parent.parent
# An empty LLMFLEET_CLUSTER_DIR means unset: Path("") is the working directory, which `down` would wipe.
STATE_DIR = Path(os.environ.get("LLMFLEET_CLUSTER_DIR") or REPO / ".cluster")

#: Start order (stopped in reverse: etcd last).
CONTROL_PLANE = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]


def components(state: dict) -> list[str]:
    """The processes this cluster runs, in start order (the control plane, then the nodes')."""
    return state.get("components", CONTROL_PLANE)

START_TIMEOUT = float(os.environ.get("LLMFLEET_CLUSTER_TIMEOUT", "120"))


class BedError(Exception):
    """A problem the person running the bed can act on; printed without a traceback."""


# --- processes -------------------------------------------------------------------


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(env: str, taken: set[int]) -> int:
    """The port named by the environment variable env (must be free), or a free one."""
    wanted = os.environ.get(env)
    if wanted:
        port = int(wanted)
        if not port_is_free(port):
            raise BedError(
                f"port {port} on 127.0.0.1 (from {env}) is already in use by another process; "
                f"free it or unset {env} to let the bed pick a free port"
            )
        return port
    # Not a kernel-assigned port: those come from the ephemeral range, where any outgoing
    # connection made during start-up may take it before our server binds it.
    low, high = ephemeral_ports()
    candidates = [p for p in range(15000, 32000) if not low <= p <= high and p not in taken]
    for port in random.sample(candidates, 200):
        if port_is_free(port):
            return port
    raise BedError("could not find a free port on 127.0.0.1")


def ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


# --- state -------------------------------------------------------------------------


@dataclass
class Cluster:
    """What tests need: where the kubeconfig is and how to reach the API."""

    dir: Path
    kubeconfig: Path
    server: str
    owner: str

    def client(self):
        from kubernetes import client, config

        return client.ApiClient(config.new_client_from_config(str(self.kubeconfig)).configuration)


def load_state() -> dict | None:
    try:
        return json.loads((STATE_DIR / "state.json").read_text())
    except (OSError, ValueError):
        return None


def save_state(state: dict) -> None:
    tmp = STATE_DIR / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(STATE_DIR / "state.json")


def api_healthy(state: dict, timeout: float = 3.0) -> bool:
    ctx = ssl.create_default_context(cafile=str(STATE_DIR / "pki" / "ca.crt"))
    try:
        with urllib.request.urlopen(f"{state['server']}/readyz", context=ctx, timeout=timeout) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError, ssl.SSLError):
        return False


def all_alive(state: dict) -> bool:
    procs = state.get("processes", {})
    return all(
        c in procs and is_same_process(procs[c]["pid"], procs[c]["start_time"]) for c in components(state)
    )


# --- up ----------------------------------------------------------------------------


#: A proxy in the caller's environment never carries the bed's own traffic (the API server
#: listens on a bridge address with real nodes, which Go would otherwise send to the proxy).
BED_NO_PROXY = f"127.0.0.1,localhost,{hostnet.POD_CIDR},{hostnet.SERVICE_CIDR}"


def start(name: str, argv: list[str], state: dict, env: dict[str, str] | None = None) -> None:
    log = open(STATE_DIR / "logs" / f"{name}.log", "ab")
    proc = subprocess.Popen(
        argv,
        env={**os.environ, "NO_PROXY": BED_NO_PROXY, "no_proxy": BED_NO_PROXY, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=STATE_DIR,
    )
    log.close()
    state["processes"][name] = {"pid": proc.pid, "start_time": proc_start_time(proc.pid), "argv": argv}
    if env:
        state["processes"][name]["env"] = env
    (STATE_DIR / "pids").mkdir(exist_ok=True)
    (STATE_DIR / "pids" / f"{name}.pid").write_text(f"{proc.pid}\n")  # for people; state.json is the record
    save_state(state)


def log_tail(name: str, lines: int = 15) -> str:
    try:
        text = (STATE_DIR / "logs" / f"{name}.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def wait_for(
    what: str, check, state: dict, timeout: float = START_TIMEOUT, watch: tuple[str, ...] = ()
) -> None:
    """Poll check() until true; fail early and clearly if a watched process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in watch:
            p = state["processes"][name]
            if not is_same_process(p["pid"], p["start_time"]):
                raise BedError(
                    f"{name} exited while waiting for {what}; the end of "
                    f"{STATE_DIR / 'logs' / (name + '.log')}:\n{log_tail(name)}"
                )
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - the API is still coming up; keep polling
            pass
        time.sleep(0.5)
    raise BedError(f"timed out after {timeout:.0f}s waiting for {what} (logs in {STATE_DIR / 'logs'})")


def current() -> Cluster | None:
    """The running cluster if it is whole and healthy, else None."""
    state = load_state()
    if not state or not all_alive(state) or not api_healthy(state):
        return None
    return Cluster(STATE_DIR, STATE_DIR / "kubeconfig", state["server"], state.get("owner", "?"))


@contextlib.contextmanager
def state_lock(timeout: float = 300.0) -> Iterator[None]:
    """One up/down/join/leave at a time per cluster dir (two sessions may share a checkout)."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "w") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BedError(
                        f"{STATE_DIR / 'lock'} was held for {timeout:.0f}s by another up/down"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def up(owner: str = "cluster-up", real_nodes: bool = True, kwok_nodes: int = 0) -> Cluster:
    """The bed, started or joined: with real nodes (root), else the control plane alone; with
    kwok_nodes, that many simulated nodes beside the real ones (scale tests)."""
    if kwok_nodes and not real_nodes:
        raise BedError("kwok nodes come beside the real nodes (their addresses are on a bed bridge): drop --no-nodes")
    if kwok_nodes:
        kwoknodes.node_ip(kwok_nodes)  # within the bridge's room, or a clear error
        if not binaries()["kwok"].exists():  # built on demand only: neither make test nor the demo needs it
            raise BedError(f"kwok nodes need {binaries()['kwok']}: run `e2e/bed/build.sh kwok`")
    with state_lock():
        return _up(owner, real_nodes, kwok_nodes)


def bed_bridges(state: dict) -> list[hostnet.Bridge]:
    """The bridges `up` made: one per real node, and the kwok nodes' one when it has them."""
    return [n.bridge for n in realnodes.REAL_NODES] + ([kwoknodes.BRIDGE] if state.get("kwok_nodes") else [])


def _up(owner: str, real_nodes: bool, kwok_nodes: int = 0) -> Cluster:
    found = current()
    if found and kwok_nodes > (load_state() or {}).get("kwok_nodes", 0):
        raise BedError(
            f"the bed in {STATE_DIR} runs {(load_state() or {}).get('kwok_nodes', 0)} kwok nodes, not {kwok_nodes}: "
            f"stop it (`LLMFLEET_CLUSTER_DIR={STATE_DIR} python3 e2e/bed/cluster.py down`) or pick another directory"
        )
    if found:
        if owner != found.owner:  # a user too: the owner's `down` hands it over instead of pulling it away
            state = load_state() or {}
            state["users"] = sorted(set(state.get("users", [])) | {owner})
            save_state(state)
        print(
            f"cluster: already up at {found.server} (started by {found.owner}); kubeconfig {found.kubeconfig}"
        )
        if real_nodes and (load_state() or {}).get("real_nodes"):
            load_images()  # what `make images` rebuilt since (nothing when unchanged)
        return found
    missing = [n for n, p in binaries().items() if n not in ("helm", "kubectl", "kwok") and not p.exists()]
    if missing:
        raise BedError(
            f"missing binaries {', '.join(missing)} under {CACHE / 'bin'}: run `make e2e-binaries` "
            "(e2e/bed/build.sh) first"
        )
    if load_state() is not None:
        print(
            f"cluster: found a stale {STATE_DIR} (an earlier run was killed?); cleaning it up",
            file=sys.stderr,
        )
        _down(quiet=True)
    if real_nodes:
        problems = realnodes.preflight()
        if problems:
            raise BedError("cannot start real nodes:\n  " + "\n  ".join(problems))
    try:
        return start_cluster(owner, real_nodes, kwok_nodes)
    except BedError as e:
        if "address already in use" not in str(e) or any(os.environ.get(v) for v in PORT_ENV.values()):
            raise
        # Someone took a free port between our check and the server's bind: pick again, once.
        print("cluster: a port was taken during start-up; starting again on other ports", file=sys.stderr)
        return start_cluster(owner, real_nodes, kwok_nodes)


#: Which environment variable pins which port (unset: a free one is picked).
PORT_ENV = {
    "apiserver": "LLMFLEET_APISERVER_PORT",
    "etcd": "LLMFLEET_ETCD_PORT",
    "etcd-peer": "LLMFLEET_ETCD_PEER_PORT",
    "controller-manager": "LLMFLEET_KCM_PORT",
    "scheduler": "LLMFLEET_SCHEDULER_PORT",
    "kwok": "LLMFLEET_KWOK_PORT",  # kwok's own server, when the bed runs kwok nodes
}


def looks_like_bed_dir(path: Path) -> bool:
    """Whether `down` may empty `path`: never a checkout (a .git inside) nor the repository or a
    folder above it, whatever LLMFLEET_CLUSTER_DIR says."""
    here = path.resolve()
    return not (here / ".git").exists() and not (here == REPO.resolve() or here in REPO.resolve().parents)


def start_cluster(owner: str, real_nodes: bool, kwok_nodes: int = 0) -> Cluster:
    """Start every component from scratch in STATE_DIR; on failure stop what was started."""
    # Logs of the previous cluster go (those of this one stay after `down` for a post-mortem),
    # and so does anything a start killed half-way left.
    for sub in ("logs", "pods", "etcd", "pki", "runner", "pids", "nodes"):  # runner/: left by older beds
        shutil.rmtree(STATE_DIR / sub, ignore_errors=True)

    started = time.monotonic()
    taken: set[int] = set()
    ports = {}
    for key, env in PORT_ENV.items():
        ports[key] = choose_port(env, taken)
        taken.add(ports[key])
    for sub in ("pki", "logs", "pods", "etcd"):
        (STATE_DIR / sub).mkdir(parents=True, exist_ok=True)
    (STATE_DIR / "etcd").chmod(0o700)
    # With real nodes the API server listens on the first node's bridge address, not loopback: the
    # kubernetes Service's endpoint is where it listens, and the API server (like any cluster's)
    # refuses a loopback endpoint address. The bridge exists before the API server starts.
    server_ip = realnodes.api_server_ip() if real_nodes else "127.0.0.1"
    server = f"https://{server_ip}:{ports['apiserver']}"
    state = {
        "server": server,
        "ports": ports,
        "owner": owner,
        "processes": {},
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    if real_nodes:
        claim_real_nodes()
        # Before any component: routes that keep the pod and Service ranges on this machine.
        state["components"] = CONTROL_PLANE + list(realnodes.argvs(STATE_DIR))
        state["real_nodes"] = nodehost.host_snapshot()
        if kwok_nodes:
            state["kwok_nodes"] = kwok_nodes
            state["components"] += list(kwoknodes.argvs(STATE_DIR, kwok_nodes, ports["kwok"]))
        save_state(state)
    save_state(state)
    write_pki(STATE_DIR / "pki", server_ip)
    write_kubeconfigs(server, STATE_DIR)
    argv = command_lines(ports, STATE_DIR)
    if real_nodes:
        argv = real_node_control_plane(argv, server_ip)
        realnodes.issue_client_cert(
            STATE_DIR / "pki", "kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)
        )

    try:
        if real_nodes:
            hostnet.apply(bed_bridges(state))
            for cmd in kwoknodes.plan_addresses(kwok_nodes):
                hostnet.run(cmd)
            nodehost.make_cgroups()
        start("etcd", argv["etcd"], state)
        wait_for(
            "etcd",
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{ports['etcd']}/health", timeout=2).status == 200
            ),
            state,
            watch=("etcd",),
        )
        start("kube-apiserver", argv["kube-apiserver"], state)
        wait_for(
            "the API server to be ready", lambda: api_healthy(state), state, watch=("kube-apiserver", "etcd")
        )
        from kubernetes import client, config

        api = config.new_client_from_config(str(STATE_DIR / "kubeconfig"))
        api.configuration.retries = 1
        for name in ("kube-controller-manager", "kube-scheduler"):
            start(name, argv[name], state)
        if real_nodes:
            start_real_nodes(server, state, api)
        if kwok_nodes:
            start_kwok_nodes(state, api, kwok_nodes)
        wait_for(
            "the default ServiceAccount (controller manager)",
            lambda: default_service_account(api),
            state,
            watch=("kube-controller-manager",),
        )
        # The scheduler has no health we can reach without credentials: check it is alive.
        wait_for("the scheduler", lambda: all_alive(state), state, timeout=5, watch=("kube-scheduler",))
        del client
    except BaseException:
        print("cluster: start failed; stopping what was started", file=sys.stderr)
        _down(quiet=True, keep_logs=True)
        raise
    print(
        f"cluster: up at {server} in {time.monotonic() - started:.1f}s; KUBECONFIG={STATE_DIR / 'kubeconfig'}"
    )
    return Cluster(STATE_DIR, STATE_DIR / "kubeconfig", server, owner)


# --- real nodes ----------------------------------------------------------------------


def claim_real_nodes() -> None:
    """One bed with real nodes per machine: the bridges, routes and iptables are global."""
    lock = realnodes.LOCK
    if lock.exists():
        holder = Path(lock.read_text().strip())
        if holder != STATE_DIR:
            try:
                other = json.loads((holder / "state.json").read_text())
            except (OSError, ValueError):
                other = None
            if other and other.get("real_nodes") and any(
                is_same_process(p["pid"], p["start_time"]) for p in other.get("processes", {}).values()
            ):
                raise BedError(
                    f"the bed in {holder} runs real nodes on this machine; only one can "
                    f"(`LLMFLEET_CLUSTER_DIR={holder} python3 e2e/bed/cluster.py down` stops it)"
                )
    lock.write_text(f"{STATE_DIR}\n")


def real_node_control_plane(argv: dict[str, list[str]], server_ip: str) -> dict[str, list[str]]:
    """The control plane's argv with routable Services, the API server on server_ip (bound and
    advertised) and the kubelet client flags."""
    out = {}
    for name, args in argv.items():
        moved = {"--service-cluster-ip-range=": hostnet.SERVICE_CIDR}
        if name == "kube-apiserver":
            moved |= {"--bind-address=": server_ip, "--advertise-address=": server_ip}
        args = [next((flag + value for flag, value in moved.items() if a.startswith(flag)), a) for a in args]
        out[name] = args + realnodes.control_plane_flags(STATE_DIR / "pki").get(name, [])
    return out


def load_images() -> float:
    """The pause image and the images `make images` built, into every node that lacks them."""
    t = time.monotonic()
    refs = [nodeimages.ensure_pause_image()] + realnodes.app_image_refs()
    for step, secs in nodeimages.import_images(STATE_DIR, refs, log=lambda m: print(m, file=sys.stderr)).items():
        print(f"cluster: {step}: {secs:.1f}s", file=sys.stderr)
    return round(time.monotonic() - t, 1)


def start_real_nodes(server: str, state: dict, api) -> None:
    from kubernetes import client, utils

    realnodes.write_node_files(STATE_DIR, server)
    wait_for("CoreDNS's RBAC", lambda: utils.create_from_yaml(api, yaml_objects=realnodes.COREDNS_RBAC) or True,
             state, timeout=30)
    procs = realnodes.argvs(STATE_DIR)
    for node in realnodes.REAL_NODES:
        name = f"containerd-{node.name}"
        start(name, procs[name][0], state, procs[name][1])
        wait_for(f"{name}'s socket", lambda n=node: realnodes.ctr(STATE_DIR, n, "version", timeout=10).returncode == 0,
                 state, timeout=60, watch=(name,))
    state["image_import_seconds"] = load_images()
    for name in ("coredns", "kube-proxy", *(f"kubelet-{n.name}" for n in realnodes.REAL_NODES)):
        start(name, procs[name][0], state, procs[name][1])
    names = [n.name for n in realnodes.REAL_NODES]
    core = client.CoreV1Api(api)

    def ready() -> bool:
        nodes = {n.metadata.name: n for n in core.list_node().items}
        return all(
            n in nodes and any(c.type == "Ready" and c.status == "True" for c in nodes[n].status.conditions or [])
            for n in names
        )

    wait_for(f"real nodes {', '.join(names)} to be Ready", ready, state,
             watch=tuple(f"kubelet-{n}" for n in names) + tuple(f"containerd-{n}" for n in names))
    # No GPUs here: the capacity a GPU node's device plugin would report, set in the node's
    # status as an extended resource (the kubelet keeps extended resources it does not own).
    for node in realnodes.REAL_NODES:
        core.patch_node_status(node.name, {"status": {"capacity": {"nvidia.com/gpu": str(node.gpus)}}})

    def gpus_allocatable() -> bool:
        return all(
            (core.read_node(n.name).status.allocatable or {}).get("nvidia.com/gpu") == str(n.gpus)
            for n in realnodes.REAL_NODES
        )

    wait_for("nvidia.com/gpu to be allocatable", gpus_allocatable, state, timeout=60)
    save_state(state)


def start_kwok_nodes(state: dict, api, count: int) -> None:
    """kwok, its nodes, and a stand-in server on each node's address (kwoknodes.py)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    for name, (argv, env) in kwoknodes.argvs(STATE_DIR, count, state["ports"]["kwok"]).items():
        start(name, argv, state, env or None)
    core = client.CoreV1Api(api)

    def register() -> bool:
        for node in kwoknodes.node_objects(count):
            try:
                core.create_node(node)
            except ApiException as e:
                if e.status != 409:
                    raise
        return True

    wait_for("kwok node registration", register, state, timeout=30)
    names = {kwoknodes.node_name(k) for k in range(1, count + 1)}

    def ready() -> bool:
        nodes = [n for n in core.list_node().items if n.metadata.name in names]
        return len(nodes) == count and all(
            any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or []) for n in nodes)

    wait_for(f"{count} kwok nodes to be Ready", ready, state, watch=("kwok",))
    standins = [f"standin-{kwoknodes.node_name(k)}" for k in range(1, count + 1)]
    wait_for("the kwok nodes' stand-in servers", lambda: all(
        urllib.request.urlopen(f"http://{kwoknodes.node_ip(k)}:{kwoknodes.ENGINE_PORT}/health", timeout=2).status == 200
        for k in range(1, count + 1)), state, timeout=30, watch=tuple(standins))


def stop_real_nodes(state: dict) -> list[str]:
    """Stop the nodes and undo every host change (the order matters; see the steps)."""
    procs = state.get("processes", {})
    problems: list[str] = []

    def stop(name: str, grace: float = 10.0) -> None:
        p = procs.get(name)
        if p:
            stop_process(name, p["pid"], p["start_time"], grace=grace)

    node_names = [n.name for n in realnodes.REAL_NODES]
    # 1. kube-proxy, then the kubelets (pods keep running in containerd).
    stop("kube-proxy")
    for n in node_names:
        stop(f"kubelet-{n}")
    # 2. Every container, through containerd while it runs; then containerd and CoreDNS.
    nodehost.kill_node_containers(STATE_DIR)
    for n in node_names:
        stop(f"containerd-{n}")
    stop("coredns")
    # 3. What outlives containerd: shims, pod network namespaces, mounts.
    for pid in nodehost.shim_pids(STATE_DIR):
        stop_process("containerd shim", pid, proc_start_time(pid), grace=5.0)
    for ns in nodehost.bed_netns():
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    problems += nodehost.unmount_under(STATE_DIR / "nodes")
    # 4. kube-proxy's rules, the kubelet's chains: the nft ruleset as it was; cgroups; network; sysctls.
    kube_proxy = realnodes.node_binaries()["kube-proxy"]
    if kube_proxy.exists() and (STATE_DIR / "nodes" / "kube-proxy-config.yaml").exists():
        subprocess.run([str(kube_proxy), "--cleanup", f"--config={STATE_DIR / 'nodes' / 'kube-proxy-config.yaml'}"],
                       capture_output=True, timeout=60)
    snapshot = state.get("real_nodes", {})
    problems += nodehost.remove_cgroups()
    problems += hostnet.revert(bed_bridges(state), snapshot.get("sysctls", {}))
    if "nft_ruleset" in snapshot:
        problems += nodehost.restore_nft(snapshot["nft_ruleset"])
    nodehost.clean_host_paths(STATE_DIR, snapshot.get("existing_paths", list(realnodes.HOST_PATHS)))
    if realnodes.LOCK.exists() and realnodes.LOCK.read_text().strip() == str(STATE_DIR):
        realnodes.LOCK.unlink()
    return problems


# --- down --------------------------------------------------------------------------


def session_alive(user: str) -> bool:
    """Whether a user named pytest-<pid> is a live process (other users always count as live)."""
    if not user.startswith("pytest-"):
        return True
    try:
        return proc_start_time(int(user.split("-", 1)[1])) is not None
    except ValueError:
        return False


def down(owner: str | None = None, quiet: bool = False, keep_logs: bool = True) -> bool:
    """Stop every recorded process, then the runner's leftover pod processes; remove state.

    With owner set, only a cluster started by that owner is stopped (so `make e2e`
    never tears down a cluster someone started with `make cluster-up`), and not while
    another live session that joined it still uses it: ownership passes to that one.
    Owner "orphaned" means whichever pytest session started it, if it is gone.
    """
    with state_lock():
        state = load_state()
        if owner is not None and state is not None:
            users = [u for u in state.get("users", []) if u != owner and session_alive(u)]
            if owner == "orphaned":
                owner = state.get("owner", "")
                if not owner.startswith("pytest-") or session_alive(owner):
                    return False
            if owner != state.get("owner"):
                if owner in state.get("users", []):
                    state["users"] = users
                    save_state(state)
                if not quiet:
                    print(f"cluster: left running (started by {state.get('owner')}, not {owner})")
                return False
            if users:
                state["owner"], state["users"] = users[0], users[1:]
                save_state(state)
                if not quiet:
                    print(f"cluster: left running for {users[0]}, which uses it too")
                return False
        return _down(quiet, keep_logs, state)


def _down(quiet: bool = False, keep_logs: bool = True, state: dict | None = None) -> bool:
    state = state if state is not None else load_state()
    if state and state.get("real_nodes"):
        for problem in stop_real_nodes(state):
            print(f"cluster: could not undo: {problem}", file=sys.stderr)
    if state:
        procs = state.get("processes", {})
        for name in reversed(components(state)):
            p = procs.get(name)
            if p:
                stop_process(name, p["pid"], p["start_time"], grace=10.0)
    if STATE_DIR.exists() and not looks_like_bed_dir(STATE_DIR):
        print(f"cluster: {STATE_DIR} holds more than a bed's state (a .git, or it is a parent of the "
              "repository): left as it is", file=sys.stderr)
    elif STATE_DIR.exists():
        for child in STATE_DIR.iterdir():
            if child.name == "lock" or (keep_logs and child.name in ("logs", "pods")):
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    if not quiet:
        print("cluster: down" if state else "cluster: nothing was running")
    return True


def restart(component: str, hard: bool = False, down_for: float = 0.0) -> None:
    """Restart one component, to test recovery.

    hard SIGKILLs it first, as a crash would; down_for keeps it stopped that long
    (say, to see the kubelets and the operator ride out an API server outage).
    """
    state = load_state()
    if not state or component not in state.get("processes", {}):
        raise BedError("no cluster is up")
    p = state["processes"][component]
    if hard and is_same_process(p["pid"], p["start_time"]):
        os.killpg(p["pid"], signal.SIGKILL)
        time.sleep(0.5)
    stop_process(component, p["pid"], p["start_time"], grace=15.0)
    time.sleep(down_for)
    start(component, p["argv"], state, p.get("env"))
    if component == "kube-apiserver":
        wait_for("the API server to be ready", lambda: api_healthy(state), state, watch=("kube-apiserver",))
    print(f"cluster: {component} restarted")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status", "env", "restart"])
    parser.add_argument(
        "component",
        nargs="?",
        choices=CONTROL_PLANE + list(realnodes.argvs(STATE_DIR)),
        help="restart: which",
    )
    parser.add_argument("--no-nodes", action="store_true",
                        help="up: the control plane alone, without the real nodes (no root needed)")
    parser.add_argument("--kwok-nodes", type=int, default=0, metavar="N",
                        help="up: N kwok nodes beside the real ones, for scale tests (kwoknodes.py)")
    parser.add_argument("--hard", action="store_true", help="restart: SIGKILL it first, as a crash would")
    parser.add_argument("--down-for", type=float, default=0.0, help="restart: seconds to keep it stopped")
    parser.add_argument(
        "--owner",
        default=None,
        help="who starts/stops the cluster (down: only if it matches; 'orphaned': only if the "
        "pytest session that started it is gone)",
    )
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            up(args.owner or "cluster-up", real_nodes=not args.no_nodes, kwok_nodes=args.kwok_nodes)
        elif args.action == "down":
            down(args.owner)
        elif args.action == "status":
            found = current()
            print(f"cluster: up at {found.server}" if found else "cluster: not running")
            return 0 if found else 1
        elif args.action == "restart":
            if not args.component:
                raise BedError(f"restart: name a component ({', '.join(CONTROL_PLANE)} or a node's process)")
            restart(args.component, args.hard, args.down_for)
        elif args.action == "env":
            print(f"export KUBECONFIG={STATE_DIR / 'kubeconfig'}")
            b = binaries()
            print(f"export PATH={b['helm'].parent}:{b['kubectl'].parent}:$PATH")
    except BedError as e:
        print(f"cluster: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
