"""The control plane's configuration: binaries, PKI, kubeconfigs, flags and nodes.

Pure configuration, no lifecycle (that is cluster.py):

| what               | choice                                                               |
| ------------------ | -------------------------------------------------------------------- |
| binaries           | versions.env, built by build.sh into $LLMFLEET_CACHE/bin             |
| API server auth    | a bed CA (serving cert for 127.0.0.1), static tokens per component,  |
|                    | Node+RBAC authorization, NodeRestriction on top of the defaults      |
| service accounts   | a local key pair: the API server signs, the controller manager too   |
| service CIDR       | loopback without nodes; hostnet.SERVICE_CIDR with the real nodes    |
| controllers        | all defaults plus bootstrapsigner/tokencleaner, one SA per controller |
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import yaml

BED = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("LLMFLEET_CACHE", Path.home() / ".cache" / "llmfleet"))

#: Without nodes (`up --no-nodes`) Service ClusterIPs come from loopback: nothing routes
#: them, and a stray connection to one stays on this machine. With real nodes
#: (realnodes.py) they come from hostnet.SERVICE_CIDR, which pods can reach.
SERVICE_CIDR = "127.96.0.0/16"


def versions() -> dict[str, str]:
    out = {}
    for line in (BED / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def binaries() -> dict[str, Path]:
    v = versions()
    k8s = CACHE / "bin" / f"kubernetes-control-plane-{v['KUBERNETES_VERSION']}"
    return {
        "etcd": CACHE / "bin" / f"etcd-{v['ETCD_VERSION']}" / "etcd",
        "kube-apiserver": k8s / "kube-apiserver",
        "kube-controller-manager": k8s / "kube-controller-manager",
        "kube-scheduler": k8s / "kube-scheduler",
        "kwok": CACHE / "bin" / f"kwok-{v['KWOK_VERSION']}" / "kwok",
        "helm": CACHE / "bin" / f"helm-{v['HELM_VERSION']}" / "helm",
        "kubectl": CACHE / "bin" / f"kubectl-{v['KUBERNETES_VERSION']}" / "kubectl",
    }


def tools_path() -> str:
    """PATH with the bed's helm and kubectl first: scenarios shell out to both, and a fresh
    machine has neither (kubectl also matches the API server's version)."""
    b = binaries()
    return os.pathsep.join([str(b["helm"].parent), str(b["kubectl"].parent), os.environ.get("PATH", "")])


# --- pki and kubeconfigs -------------------------------------------------------------


def write_pki(pki: Path, server_ip: str = "127.0.0.1") -> None:
    """A CA, a serving cert for 127.0.0.1/localhost and server_ip (where the API server listens),
    and the service-account key pair."""
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
    names += [x509.IPAddress(ipaddress.ip_address(a))
              for a in dict.fromkeys(("127.0.0.1", "127.96.0.1", "10.96.0.1", server_ip))]
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


def write_kubeconfigs(server: str, state_dir: Path) -> None:
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
                    "cluster": {"server": server, "certificate-authority": str(state_dir / "pki" / "ca.crt")},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "llmfleet-e2e", "context": {"cluster": "llmfleet-e2e", "user": user}}],
        }
        path = state_dir / ("kubeconfig" if name == "admin" else f"{name}.kubeconfig")
        path.write_text(yaml.safe_dump(cfg))
        path.chmod(0o600)
    (state_dir / "pki" / "tokens.csv").write_text("\n".join(lines) + "\n")


def command_lines(ports: dict[str, int], state_dir: Path) -> dict[str, list[str]]:
    """Each component's argv: loopback only, files under state_dir."""
    b = binaries()
    s = state_dir
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
    }


def default_service_account(api) -> bool:
    from kubernetes import client

    client.CoreV1Api(api).read_namespaced_service_account("default", "default")
    return True
