"""Bring the e2e control plane up and down on loopback: the bed's only entry point.

    python3 e2e/bed/cluster.py up [--owner NAME]   start (or reuse a healthy) cluster
    python3 e2e/bed/cluster.py down [--owner NAME] stop everything it started, by pid
    python3 e2e/bed/cluster.py status              exit 0 if a healthy cluster is up
    python3 e2e/bed/cluster.py restart [COMPONENT] [--hard] [--down-for S]
                                                   restart one process (default: the pod runner)

Everything lives in <repo>/.cluster/ (gitignored):

| path                  | what                                                        |
| --------------------- | ----------------------------------------------------------- |
| kubeconfig            | cluster-admin kubeconfig for tests and kubectl              |
| state.json            | ports, owner, and each process's pid and start time         |
| pids/<component>.pid  | the same pids, one file each, for people and shell scripts  |
| pki/                  | CA, API server serving cert, service-account key pair      |
| etcd/                 | etcd's data                                                 |
| logs/<component>.log  | each control-plane process's output                         |
| pods/<ns>_<name>.log  | each pod's processes' output (written by the pod runner)    |
| runner/               | the pod runner's state file                                 |

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

import yaml
from procs import is_same_process, proc_start_time, stop_process

BED = Path(__file__).resolve().parent
REPO = BED.parent.parent
STATE_DIR = Path(os.environ.get("LLMFLEET_CLUSTER_DIR", REPO / ".cluster"))
CACHE = Path(os.environ.get("LLMFLEET_CACHE", Path.home() / ".cache" / "llmfleet"))

#: Service ClusterIPs come from loopback too: nothing routes them (there is no
#: kube-proxy), and a stray connection to one then stays on this machine.
SERVICE_CIDR = "127.96.0.0/16"
#: Stop order: the runner first (it stops the pods' processes), etcd last.
COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "podrunner"]
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")

START_TIMEOUT = float(os.environ.get("LLMFLEET_CLUSTER_TIMEOUT", "120"))


class BedError(Exception):
    """A problem the person running the bed can act on; printed without a traceback."""


def versions() -> dict[str, str]:
    out = {}
    for line in (BED / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def binaries() -> dict[str, Path]:
    v = versions()
    k8s = CACHE / "bin" / f"kubernetes-{v['KUBERNETES_VERSION']}"
    return {
        "etcd": CACHE / "bin" / f"etcd-{v['ETCD_VERSION']}" / "etcd",
        "kube-apiserver": k8s / "kube-apiserver",
        "kube-controller-manager": k8s / "kube-controller-manager",
        "kube-scheduler": k8s / "kube-scheduler",
        "kwok": CACHE / "bin" / f"kwok-{v['KWOK_VERSION']}" / "kwok",
        "helm": CACHE / "bin" / f"helm-{v['HELM_VERSION']}" / "helm",
    }


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
    return all(c in procs and is_same_process(procs[c]["pid"], procs[c]["start_time"]) for c in COMPONENTS)


# --- pki and kubeconfigs -------------------------------------------------------------


def write_pki(pki: Path) -> None:
    """A CA, a serving cert for 127.0.0.1/localhost, and the service-account key pair."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    pki.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)

    def key_pem(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "llmfleet-e2e-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    srv_key = ec.generate_private_key(ec.SECP256R1())
    names = [
        x509.DNSName(n)
        for n in (
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        )
    ]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "127.96.0.1")]
    srv = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = ec.generate_private_key(ec.SECP256R1())
    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (pki / "ca.key").write_bytes(key_pem(ca_key))
    (pki / "apiserver.crt").write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    (pki / "apiserver.key").write_bytes(key_pem(srv_key))
    (pki / "sa.key").write_bytes(key_pem(sa_key))
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


#: Static tokens: user, groups. RBAC's bootstrap roles already bind the two system users.
USERS = {
    "admin": ("llmfleet-e2e-admin", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", ""),
    "kube-scheduler": ("system:kube-scheduler", ""),
}


def write_kubeconfigs(server: str) -> None:
    lines = []
    for name, (user, groups) in USERS.items():
        token = os.urandom(24).hex()
        lines.append(f'{token},{user},{user},"{groups}"')
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "llmfleet-e2e",
            "clusters": [
                {
                    "name": "llmfleet-e2e",
                    "cluster": {"server": server, "certificate-authority": str(STATE_DIR / "pki" / "ca.crt")},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "llmfleet-e2e", "context": {"cluster": "llmfleet-e2e", "user": user}}],
        }
        path = STATE_DIR / ("kubeconfig" if name == "admin" else f"{name}.kubeconfig")
        path.write_text(yaml.safe_dump(cfg))
        path.chmod(0o600)
    (STATE_DIR / "pki" / "tokens.csv").write_text("\n".join(lines) + "\n")


# --- up ----------------------------------------------------------------------------


def command_lines(ports: dict[str, int]) -> dict[str, list[str]]:
    b = binaries()
    s = STATE_DIR
    pki = s / "pki"
    etcd_url = f"http://127.0.0.1:{ports['etcd']}"
    return {
        "etcd": [
            str(b["etcd"]),
            "--name=bed",
            f"--data-dir={s / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{ports['etcd-peer']}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{ports['etcd-peer']}",
            f"--initial-cluster=bed=http://127.0.0.1:{ports['etcd-peer']}",
            "--unsafe-no-fsync",
            "--log-level=warn",
            "--quota-backend-bytes=2147483648",
        ],
        "kube-apiserver": [
            str(b["kube-apiserver"]),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['apiserver']}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            # The default admission chain of this version plus what kubeadm adds.
            "--enable-admission-plugins=NodeRestriction",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ],
        "kube-controller-manager": [
            str(b["kube-controller-manager"]),
            f"--kubeconfig={s / 'kube-controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={s / 'kube-controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={s / 'kube-controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['controller-manager']}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            "--controllers=*,bootstrapsigner,tokencleaner",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
            "--v=1",
        ],
        "kube-scheduler": [
            str(b["kube-scheduler"]),
            f"--kubeconfig={s / 'kube-scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={s / 'kube-scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={s / 'kube-scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['scheduler']}",
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ],
        "kwok": [
            str(b["kwok"]),
            f"--kubeconfig={s / 'kubeconfig'}",
            f"--config={BED / 'kwok-stages.yaml'}",
            "--manage-nodes-with-annotation-selector=" + "=".join(KWOK_NODE_ANNOTATION),
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{ports['kwok']}",
        ],
        "podrunner": [
            sys.executable,
            str(BED / "podrunner.py"),
            f"--kubeconfig={s / 'kubeconfig'}",
            f"--state-dir={s / 'runner'}",
            f"--pod-log-dir={s / 'pods'}",
            "--node-annotation=" + "=".join(KWOK_NODE_ANNOTATION),
        ],
    }


def start(name: str, argv: list[str], state: dict) -> None:
    log = open(STATE_DIR / "logs" / f"{name}.log", "ab")
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=STATE_DIR,
    )
    log.close()
    state["processes"][name] = {"pid": proc.pid, "start_time": proc_start_time(proc.pid), "argv": argv}
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


def node_objects() -> list[dict]:
    nodes = []
    for i, spec in enumerate(yaml.safe_load((BED / "nodes.yaml").read_text()), start=1):
        capacity = {
            "cpu": "48",
            "memory": "192Gi",
            "pods": "110",
            "ephemeral-storage": "500Gi",
            "nvidia.com/gpu": "4",
        }
        zone = spec["zone"]
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": spec["name"],
                    "annotations": {
                        KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1],
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                    "labels": {
                        "kubernetes.io/hostname": spec["name"],
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                        "node.kubernetes.io/instance-type": spec["instanceType"],
                        "topology.kubernetes.io/zone": zone,
                        "topology.kubernetes.io/region": zone[:-1],
                        "karpenter.sh/capacity-type": spec["capacityType"],
                        "eks.amazonaws.com/capacityType": "SPOT"
                        if spec["capacityType"] == "spot"
                        else "ON_DEMAND",
                        "nvidia.com/gpu.present": "true",
                        "nvidia.com/gpu.product": "NVIDIA-A10G",
                        "nvidia.com/gpu.count": capacity["nvidia.com/gpu"],
                    },
                },
                "spec": {"providerID": f"kwok://{spec['name']}"},
                "status": {
                    "capacity": capacity,
                    "allocatable": capacity,
                    "addresses": [
                        {"type": "InternalIP", "address": f"127.1.0.{i}"},
                        {"type": "Hostname", "address": spec["name"]},
                    ],
                    "nodeInfo": {
                        "architecture": "amd64",
                        "operatingSystem": "linux",
                        "kubeletVersion": versions()["KUBERNETES_VERSION"],
                        "containerRuntimeVersion": "llmfleet-podrunner://1",
                        "kernelVersion": "",
                        "kubeProxyVersion": "",
                        "osImage": "llmfleet e2e bed",
                        "bootID": "",
                        "machineID": "",
                        "systemUUID": "",
                    },
                },
            }
        )
    return nodes


def register_nodes(api) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api)
    for node in node_objects():
        try:
            core.create_node(node)
        except ApiException as e:
            if e.status != 409:
                raise


def nodes_ready(api, want: int) -> bool:
    from kubernetes import client

    ready = 0
    for node in client.CoreV1Api(api).list_node().items:
        if any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []):
            ready += 1
    return ready >= want


def default_service_account(api) -> bool:
    from kubernetes import client

    client.CoreV1Api(api).read_namespaced_service_account("default", "default")
    return True


def runner_alive() -> bool:
    beat = STATE_DIR / "runner" / "heartbeat"
    return beat.exists() and time.time() - beat.stat().st_mtime < 15


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


def up(owner: str = "cluster-up") -> Cluster:
    with state_lock():
        return _up(owner)


def _up(owner: str) -> Cluster:
    found = current()
    if found:
        if owner != found.owner:  # a user too: the owner's `down` hands it over instead of pulling it away
            state = load_state() or {}
            state["users"] = sorted(set(state.get("users", [])) | {owner})
            save_state(state)
        print(
            f"cluster: already up at {found.server} (started by {found.owner}); kubeconfig {found.kubeconfig}"
        )
        return found
    missing = [n for n, p in binaries().items() if n != "helm" and not p.exists()]
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
    try:
        return start_cluster(owner)
    except BedError as e:
        if "address already in use" not in str(e) or any(os.environ.get(v) for v in PORT_ENV.values()):
            raise
        # Someone took a free port between our check and the server's bind: pick again, once.
        print("cluster: a port was taken during start-up; starting again on other ports", file=sys.stderr)
        return start_cluster(owner)


#: Which environment variable pins which port (unset: a free one is picked).
PORT_ENV = {
    "apiserver": "LLMFLEET_APISERVER_PORT",
    "etcd": "LLMFLEET_ETCD_PORT",
    "etcd-peer": "LLMFLEET_ETCD_PEER_PORT",
    "controller-manager": "LLMFLEET_KCM_PORT",
    "scheduler": "LLMFLEET_SCHEDULER_PORT",
    "kwok": "LLMFLEET_KWOK_PORT",
}


def start_cluster(owner: str) -> Cluster:
    """Start every component from scratch in STATE_DIR; on failure stop what was started."""
    # Logs of the previous cluster go (those of this one stay after `down` for a post-mortem),
    # and so does anything a start killed half-way left.
    for sub in ("logs", "pods", "etcd", "pki", "runner", "pids"):
        shutil.rmtree(STATE_DIR / sub, ignore_errors=True)

    started = time.monotonic()
    taken: set[int] = set()
    ports = {}
    for key, env in PORT_ENV.items():
        ports[key] = choose_port(env, taken)
        taken.add(ports[key])
    for sub in ("pki", "logs", "pods", "runner", "etcd"):
        (STATE_DIR / sub).mkdir(parents=True, exist_ok=True)
    (STATE_DIR / "etcd").chmod(0o700)
    server = f"https://127.0.0.1:{ports['apiserver']}"
    state = {
        "server": server,
        "ports": ports,
        "owner": owner,
        "processes": {},
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    save_state(state)
    write_pki(STATE_DIR / "pki")
    write_kubeconfigs(server)
    argv = command_lines(ports)

    try:
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
        for name in ("kube-controller-manager", "kube-scheduler", "kwok", "podrunner"):
            start(name, argv[name], state)
        from kubernetes import client, config

        api = config.new_client_from_config(str(STATE_DIR / "kubeconfig"))
        api.configuration.retries = 1
        wait_for("node registration", lambda: register_nodes(api) or True, state, timeout=30)
        n = len(node_objects())
        wait_for(f"{n} kwok nodes to be Ready", lambda: nodes_ready(api, n), state, watch=("kwok",))
        wait_for(
            "the default ServiceAccount (controller manager)",
            lambda: default_service_account(api),
            state,
            watch=("kube-controller-manager",),
        )
        wait_for("the pod runner", runner_alive, state, timeout=30, watch=("podrunner",))
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
    if state:
        procs = state.get("processes", {})
        for name in reversed(COMPONENTS):
            p = procs.get(name)
            if p:
                stop_process(name, p["pid"], p["start_time"], grace=15.0 if name == "podrunner" else 10.0)
    # Pod processes the runner recorded but could not stop (say it was SIGKILLed).
    runner_state = STATE_DIR / "runner" / "state.json"
    if runner_state.exists():
        try:
            pods = json.loads(runner_state.read_text()).get("processes", [])
        except ValueError:
            pods = []
        for p in pods:
            stop_process(f"pod process {p.get('name')}", p["pid"], p.get("start_time"), grace=5.0)
    if STATE_DIR.exists():
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
    """Restart one component: after editing the runner, or to test recovery.

    hard SIGKILLs it first, as a crash would; down_for keeps it stopped that long
    (say, to see the runner ride out an API server outage).
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
    if component == "podrunner":
        (STATE_DIR / "runner" / "heartbeat").unlink(missing_ok=True)
    start(component, p["argv"], state)
    if component == "podrunner":
        wait_for("the pod runner", runner_alive, state, timeout=30, watch=("podrunner",))
    elif component == "kube-apiserver":
        wait_for("the API server to be ready", lambda: api_healthy(state), state, watch=("kube-apiserver",))
    print(f"cluster: {component} restarted")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status", "env", "restart"])
    parser.add_argument(
        "component",
        nargs="?",
        default="podrunner",
        choices=COMPONENTS,
        help="restart: which (default podrunner)",
    )
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
            up(args.owner or "cluster-up")
        elif args.action == "down":
            down(args.owner)
        elif args.action == "status":
            found = current()
            print(f"cluster: up at {found.server}" if found else "cluster: not running")
            return 0 if found else 1
        elif args.action == "restart":
            restart(args.component, args.hard, args.down_for)
        elif args.action == "env":
            print(f"export KUBECONFIG={STATE_DIR / 'kubeconfig'}")
            print(f"export PATH={binaries()['helm'].parent}:$PATH")
    except BedError as e:
        print(f"cluster: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
