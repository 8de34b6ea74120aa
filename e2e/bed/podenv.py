"""What a pod's processes see, and how the runner reaches into them.

| piece                 | as the kubelet does it                                             |
| --------------------- | ------------------------------------------------------------------ |
| environment           | image env (here: the runner's own), then envFrom, then env; values |
|                       | may use $(VAR) of earlier ones; fieldRef/resourceFieldRef/keyRefs  |
| service account       | a projected token volume (here: a kubeconfig with a bound token,   |
|                       | passed as KUBECONFIG, since there is no mount namespace)           |
| handlers              | exec / httpGet / tcpSocket / sleep, for probes and preStop hooks,  |
|                       | aimed at the pod IP; named ports resolved from the pod's spec      |
| secret volumes        | the Secret's keys written under the pod's directory at each start  |
|                       | and handler run (so a rotation reaches the next read; a Secret     |
|                       | deleted meanwhile leaves the files, as the kubelet does), and the  |
|                       | mountPath rewritten to it in command, args, env values and exec    |
|                       | handlers, since there is no mount namespace                        |

PodEnvironment is a mixin of PodWorker: it reads the worker's pod, IP and runner.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from podworker import Container


class PodEnvironment:
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
            raw = (obj.data or {}).get(ref["key"])
            return None if raw is None else base64.b64decode(raw).decode()
        return (obj.data or {}).get(ref["key"])

    def secret_volume_paths(self, c: dict) -> dict[str, str]:
        """mountPath -> the host directory holding the Secret's files, for c's secret volumes."""
        volumes = {v["name"]: v for v in self.spec.get("volumes") or [] if "secret" in v}
        paths: dict[str, str] = {}
        for m in c.get("volumeMounts") or []:
            vol = volumes.get(m["name"])
            if vol is None:
                continue
            src = vol["secret"]
            d = self.pod_dir / "volumes" / m["name"]
            obj = self.runner.call(f"read secret {src['secretName']}", self.runner.core.read_namespaced_secret,
                                   src["secretName"], self.ns)
            if obj is None and d.is_dir():  # deleted while the pod runs: the kubelet keeps the files
                paths[m["mountPath"].rstrip("/")] = str(d)
                continue
            if obj is None and not src.get("optional"):
                raise ValueError(f"secret {src['secretName']} not found")
            data = (obj.data or {}) if obj is not None else {}
            items = src.get("items") or [{"key": k, "path": k} for k in data]
            d.mkdir(parents=True, exist_ok=True)
            for item in items:
                if item["key"] not in data:
                    continue
                target = d / item["path"]
                tmp = target.with_name(target.name + ".new")
                tmp.write_bytes(base64.b64decode(data[item["key"]]))
                tmp.chmod(item.get("mode", src.get("defaultMode", 0o644)))
                tmp.replace(target)  # atomic, as the kubelet's symlink swap
            paths[m["mountPath"].rstrip("/")] = str(d)
        return paths

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
        paths = self.secret_volume_paths(c)
        env.update({k: on_host(v, paths) for k, v in defined.items()})
        return env

    def run_handler(self, c: Container, handler: dict, timeout: float) -> bool:
        """Run a probe or lifecycle handler (exec, httpGet, tcpSocket, sleep); True on success."""
        if "exec" in handler:
            try:
                env = self.environment(c.spec)
                paths = self.secret_volume_paths(c.spec)
            except ValueError:
                return False
            argv = [on_host(expand(a, env), paths) for a in handler["exec"].get("command") or []]
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


_VAR = re.compile(r"\$(\$?)\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, $$(X) stays as $(X)."""

    def sub(m: re.Match) -> str:
        if m.group(1):
            return m.group(0)[1:]
        return env.get(m.group(2), m.group(0))

    return _VAR.sub(sub, text)


def on_host(value: str, paths: dict[str, str]) -> str:
    """A path inside a secret volume's mountPath, as the host path the runner wrote it to."""
    for mount, host in paths.items():
        if value == mount or value.startswith(mount + "/"):
            return host + value[len(mount):]
    return value
