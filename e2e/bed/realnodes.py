"""Real nodes for the bed: upstream kubelet + containerd + runc + CNI, kube-proxy and CoreDNS.

`cluster.py up` (what `make cluster-up` runs) starts, next to the control
plane, the nodes in REAL_NODES:

| part        | what                                                                       |
| ----------- | -------------------------------------------------------------------------- |
| kubelet     | k8s.io/kubernetes/cmd/kubelet at the pinned version, unpatched (build.sh);  |
|             | x509 identity system:node:<name> from the bed CA; cgroupfs, own cgroup root |
| containerd  | Debian's, one per node: own socket, state, runc root; its root (images) is |
|             | kept in $LLMFLEET_CACHE/containerd/<node> so imports survive `down`         |
| runc, CNI   | Debian's runc and containernetworking-plugins (bridge, host-local, portmap) |
| kube-proxy  | one for the machine (iptables are global), iptables mode                   |
| CoreDNS     | built from its module; answers cluster.local from the API, forwards nothing |
| images      | the pause program (pause/main.go) and the images `make images` built,       |
|             | imported with `ctr`; containerd is given a dead proxy, so a pull of an     |
|             | image that is not there fails instead of reaching a registry               |

This module is what the nodes run with (pure configuration, identities, files); images
go in with nodeimages.py; host-global state is hostnet.py's (network) and nodehost.py's
(cgroups, host paths, mounts, what `down` undoes). Only one bed with real nodes can run on a machine at a time: the
bridges, routes and iptables are the machine's (a lock in /run says who has them).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import hostnet
import yaml
from controlplane import CACHE, versions

#: Where containerd's runc lives and the Debian CNI plugins.
RUNC = "/usr/sbin/runc"
CNI_BIN_DIR = "/usr/lib/cni"
#: Ports every node serves on its own IP.
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
CLUSTER_DOMAIN = "cluster.local"
#: A proxy nobody listens on: containerd's registry client goes there and fails, on loopback.
DEAD_PROXY = "http://127.0.0.1:9"
#: The kubelet's v1 cgroup controllers that must hold its cgroup root beforehand.
CGROUP_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd")
#: Host paths the kubelet, containerd and CNI use whatever their flags say.
HOST_PATHS = (
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
    "/run/containerd",
    "/var/lib/cni",
    "/run/netns",
)
LOCK = Path("/run/llmfleet-bed-real-nodes.lock")
PAUSE_IMAGE_REPO = "localhost/llmfleet-bed/pause"
APP_IMAGES = ("ghcr.io/llmfleet/llmfleet-operator", "ghcr.io/llmfleet/llmfleet-engine")


@dataclass(frozen=True)
class RealNode:
    name: str
    index: int  # bridge lfbed<index>, pod subnet 10.244.<index>.0/24, cgroup root /llmfleet-bed-<index>
    capacity_type: str  # "spot" | "on-demand"
    zone: str
    gpus: int = 4

    @property
    def bridge(self) -> hostnet.Bridge:
        return hostnet.bridge_for(self.index)

    @property
    def ip(self) -> str:
        return self.bridge.gateway

    @property
    def cgroup_root(self) -> str:
        return f"/llmfleet-bed-{self.index}"

    def labels(self) -> dict[str, str]:
        """What a cloud (and Karpenter / EKS, the NVIDIA GPU feature discovery) puts on a GPU node."""
        return {
            "node.kubernetes.io/instance-type": "g5.12xlarge",
            "topology.kubernetes.io/zone": self.zone,
            "topology.kubernetes.io/region": self.zone[:-1],
            "karpenter.sh/capacity-type": self.capacity_type,
            "eks.amazonaws.com/capacityType": "SPOT" if self.capacity_type == "spot" else "ON_DEMAND",
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": "NVIDIA-A10G",
            "nvidia.com/gpu.count": str(self.gpus),
            "llmfleet.dev/bed-node": "real",
        }


REAL_NODES = (
    RealNode("gpu-ondemand-1", 1, "on-demand", "us-east-1a"),
    RealNode("gpu-spot-1", 2, "spot", "us-east-1b"),
    # A second spot node: a spot notice's replacement lands on the other spot node.
    RealNode("gpu-spot-2", 3, "spot", "us-east-1c"),
)


def node_binaries() -> dict[str, Path]:
    v = versions()
    node = CACHE / "bin" / f"kubernetes-node-{v['KUBERNETES_VERSION']}"
    pause = sorted((CACHE / "bin").glob("pause-*/pause"), key=lambda p: p.stat().st_mtime)
    return {
        "kubelet": node / "kubelet",
        "kube-proxy": node / "kube-proxy",
        "coredns": CACHE / "bin" / f"coredns-{v['COREDNS_VERSION']}" / "coredns",
        "pause": pause[-1] if pause else CACHE / "bin" / "pause-missing" / "pause",
        "containerd": Path(shutil.which("containerd") or "/usr/bin/containerd"),
        "ctr": Path(shutil.which("ctr") or "/usr/bin/ctr"),
        "runc": Path(RUNC),
        "cni bridge plugin": Path(CNI_BIN_DIR) / "bridge",
    }


def api_server_ip() -> str:
    """Where the bed's API server listens with real nodes: the first node's bridge address (as a
    kind cluster's API server is on its control-plane node's address)."""
    return REAL_NODES[0].ip


def preflight() -> list[str]:
    """What is missing for real nodes, as sentences a person can act on."""
    problems = []
    if os.geteuid() != 0:
        problems.append("real nodes need root (bridges, routes, iptables, cgroups, mounts)")
    for name, path in node_binaries().items():
        if not path.exists():
            hint = (
                "apt-get install containerd runc containernetworking-plugins"
                if name in ("containerd", "ctr", "runc", "cni bridge plugin")
                else "run e2e/bed/build.sh"
            )
            problems.append(f"{name} not found at {path} ({hint})")
    for tool in ("iptables", "ip", "podman", "conntrack", "nft"):
        if not shutil.which(tool):
            problems.append(f"{tool} not on PATH (apt-get install iptables iproute2 podman conntrack nftables)")
    return problems


# --- PKI -----------------------------------------------------------------------------


def issue_client_cert(pki: Path, name: str, common_name: str, orgs: tuple[str, ...] = ()) -> None:
    """<pki>/<name>.crt/.key: a client certificate signed by the bed CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    subject.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (pki / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (pki / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (pki / f"{name}.key").chmod(0o600)


def cert_kubeconfig(path: Path, server: str, pki: Path, name: str) -> None:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "llmfleet-e2e",
        "clusters": [
            {
                "name": "llmfleet-e2e",
                "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": name,
                "user": {
                    "client-certificate": str(pki / f"{name}.crt"),
                    "client-key": str(pki / f"{name}.key"),
                },
            }
        ],
        "contexts": [{"name": "llmfleet-e2e", "context": {"cluster": "llmfleet-e2e", "user": name}}],
    }
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)


def control_plane_flags(pki: Path) -> dict[str, list[str]]:
    """Extra flags for the control plane when real nodes run (logs/exec, routable Services)."""
    return {
        "kube-apiserver": [
            # A Hostname address would be resolved through the machine's resolver: off-machine.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'kubelet-client.key'}",
        ],
    }


# --- per-node configuration (pure) -----------------------------------------------------


def node_dir(state_dir: Path, node: RealNode) -> Path:
    return state_dir / "nodes" / node.name


def containerd_root(node: RealNode) -> Path:
    return CACHE / "containerd" / node.name


def containerd_socket(state_dir: Path, node: RealNode) -> Path:
    return node_dir(state_dir, node) / "containerd.sock"


def containerd_config(state_dir: Path, node: RealNode, pause_image: str) -> str:
    d = node_dir(state_dir, node)
    return f"""version = 2
root = "{containerd_root(node)}"
state = "{d / "containerd-state"}"
oom_score = 0
[grpc]
  address = "{containerd_socket(state_dir, node)}"
[ttrpc]
  address = ""
[debug]
  address = ""
  level = "warn"
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{d / "containerd-opt"}"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{pause_image}"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    disable_apparmor = true
    # root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below containerd's own.
    restrict_oom_score_adj = true
    tolerate_missing_hugetlb_controller = true
    disable_hugetlb_controller = true
    max_container_log_line_size = 16384
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "{RUNC}"
          SystemdCgroup = false
          Root = "{d / "runc"}"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{CNI_BIN_DIR}"
      conf_dir = "{d / "cni"}"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ""
"""


def cni_config(state_dir: Path, node: RealNode) -> dict:
    """Bridge + host-local: routes for the pod and Service ranges only (no default route), no masquerade."""
    b = node.bridge
    return {
        "cniVersion": "1.0.0",
        "name": f"llmfleet-bed-{node.index}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": b.name,
                "isGateway": True,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": b.subnet, "gateway": b.gateway}]],
                    "routes": [{"dst": hostnet.POD_CIDR}, {"dst": hostnet.SERVICE_CIDR}],
                    "dataDir": str(node_dir(state_dir, node) / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(state_dir: Path, node: RealNode, pki: Path) -> dict:
    d = node_dir(state_dir, node)
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "containerRuntimeEndpoint": f"unix://{containerd_socket(state_dir, node)}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup_root,
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "failCgroupV1": False,
        "failSwapOn": False,
        "address": node.ip,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": node.ip,
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "podCIDR": node.bridge.subnet,
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [node.ip],
        # No resolv.conf of this machine in pods: CoreDNS is their only resolver.
        "resolvConf": "",
        # The images cannot be pulled again: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "2%",
            "imagefs.available": "2%",
            "nodefs.inodesFree": "2%",
        },
        "serializeImagePulls": False,
        "maxPods": 50,
        "podLogsDir": str(d / "pod-logs"),
        "registerNode": True,
        "shutdownGracePeriod": "0s",
    }


def kubelet_argv(state_dir: Path, node: RealNode, pause_image: str) -> list[str]:
    d = node_dir(state_dir, node)
    labels = ",".join(f"{k}={v}" for k, v in node.labels().items())
    return [
        str(node_binaries()["kubelet"]),
        f"--config={d / 'kubelet-config.yaml'}",
        f"--kubeconfig={d / 'kubelet.kubeconfig'}",
        f"--root-dir={d / 'kubelet'}",
        f"--cert-dir={d / 'kubelet-pki'}",
        f"--hostname-override={node.name}",
        f"--node-ip={node.ip}",
        f"--node-labels={labels}",
        f"--pod-infra-container-image={pause_image}",
        "--v=1",
    ]


def kube_proxy_config(state_dir: Path, node: RealNode) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(state_dir / "nodes" / "kube-proxy.kubeconfig")},
        "hostnameOverride": node.name,
        "mode": "iptables",
        "clusterCIDR": hostnet.POD_CIDR,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "nodePortAddresses": [f"{n.ip}/32" for n in REAL_NODES],
        # Zero: kube-proxy leaves the machine's nf_conntrack sysctls alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
            "udpTimeout": "0s",
            "udpStreamTimeout": "0s",
        },
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False, "syncPeriod": "10s"},
    }


def corefile(state_dir: Path) -> str:
    """cluster.local (and reverse zones) from the API; every other name: REFUSED, never forwarded."""
    binds = " ".join(n.ip for n in REAL_NODES)
    kubeconfig = state_dir / "nodes" / "coredns.kubeconfig"
    return f"""{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {binds}
    errors
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} llmfleet-e2e
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
"""


COREDNS_RBAC = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "llmfleet-bed:coredns"},
        "rules": [
            {"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "llmfleet-bed:coredns"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "llmfleet-bed:coredns",
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:coredns"}],
    },
]


# --- preparing a start ----------------------------------------------------------------


def pause_image() -> str:
    digest = hashlib.sha256(node_binaries()["pause"].read_bytes()).hexdigest()[:12]
    return f"{PAUSE_IMAGE_REPO}:{digest}"


def write_node_files(state_dir: Path, server: str) -> None:
    """PKI, kubeconfigs and every config file the nodes, kube-proxy and CoreDNS read."""
    pki = state_dir / "pki"
    nodes = state_dir / "nodes"
    nodes.mkdir(parents=True, exist_ok=True)
    issue_client_cert(pki, "kube-proxy", "system:kube-proxy")
    issue_client_cert(pki, "coredns", "system:coredns")
    cert_kubeconfig(nodes / "kube-proxy.kubeconfig", server, pki, "kube-proxy")
    cert_kubeconfig(nodes / "coredns.kubeconfig", server, pki, "coredns")
    (nodes / "Corefile").write_text(corefile(state_dir))
    (nodes / "kube-proxy-config.yaml").write_text(yaml.safe_dump(kube_proxy_config(state_dir, REAL_NODES[0])))
    pause = pause_image()
    for node in REAL_NODES:
        d = node_dir(state_dir, node)
        for sub in ("cni", "ipam", "kubelet", "kubelet-pki", "pod-logs", "runc", "containerd-state"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        containerd_root(node).mkdir(parents=True, exist_ok=True)
        issue_client_cert(pki, f"node-{node.name}", f"system:node:{node.name}", ("system:nodes",))
        cert_kubeconfig(d / "kubelet.kubeconfig", server, pki, f"node-{node.name}")
        (d / "containerd.toml").write_text(containerd_config(state_dir, node, pause))
        (d / "cni" / "10-bed.conflist").write_text(json.dumps(cni_config(state_dir, node), indent=1))
        (d / "kubelet-config.yaml").write_text(yaml.safe_dump(kubelet_config(state_dir, node, pki)))


def argvs(state_dir: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each node process's argv and extra environment, in start order."""
    b = node_binaries()
    pause = pause_image()
    out: dict[str, tuple[list[str], dict[str, str]]] = {}
    for node in REAL_NODES:
        d = node_dir(state_dir, node)
        proxy = {
            "HTTP_PROXY": DEAD_PROXY,
            "HTTPS_PROXY": DEAD_PROXY,
            "NO_PROXY": "",
            "http_proxy": DEAD_PROXY,
            "https_proxy": DEAD_PROXY,
            "no_proxy": "",
        }
        out[f"containerd-{node.name}"] = ([str(b["containerd"]), f"--config={d / 'containerd.toml'}"], proxy)
    out["coredns"] = ([str(b["coredns"]), "-conf", str(state_dir / "nodes" / "Corefile")], {})
    out["kube-proxy"] = (
        [str(b["kube-proxy"]), f"--config={state_dir / 'nodes' / 'kube-proxy-config.yaml'}"],
        {},
    )
    for node in REAL_NODES:
        out[f"kubelet-{node.name}"] = (kubelet_argv(state_dir, node, pause), {})
    return out


def app_image_refs() -> list[str]:
    version = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "charts/llmfleet/Chart.yaml").read_text()
    )["appVersion"]
    return [f"{repo}:{version}" for repo in APP_IMAGES]


def ctr(state_dir: Path, node: RealNode, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    sock = containerd_socket(state_dir, node)
    return subprocess.run(
        [str(node_binaries()["ctr"]), "--address", str(sock), "--namespace", "k8s.io", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
