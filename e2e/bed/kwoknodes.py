"""Simulated nodes for scale tests: kwok nodes beside the real ones, for pods that ask for them.

`cluster.py up --kwok-nodes N` adds, to the bed with real nodes, N nodes that kwok keeps
Ready and whose pods kwok marks Running and Ready (kwok-stages.yaml); nothing runs for
them. The 200-service operator bench (e2e/bench_operator.py) puts its stand-in
LLMServices there; every scenario runs on the real nodes.

| what             | choice                                                                  |
| ---------------- | ----------------------------------------------------------------------- |
| nodes            | `kwok-gpu-<k>`, on-demand GPU nodes labelled as a cloud labels them,     |
|                  | plus `llmfleet.dev/bed-node: kwok` and the taint                        |
|                  | `llmfleet.dev/bed-node=kwok:NoSchedule`: only pods that tolerate it and |
|                  | select the label land there                                             |
| node address     | 10.244.250.<10+k> on the bed bridge `lfbed250` (10.244.250.1/24): an     |
|                  | address of this machine, inside the pod range the bed guards            |
| pod address      | the node's address (the pod stage's template): every pod of a node       |
|                  | shares it, as host-network pods do                                      |
| what answers     | one stand-in server per node (e2e/standin_engine: /health, a fixed       |
|                  | vLLM /metrics) on <node address>:8000, started and stopped by the bed   |

So whatever scrapes a kwok pod's IP (the operator's autoscaler) reaches a process of the
bed on this machine, never an address elsewhere. `plan_*` and `node_objects` are pure.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

from controlplane import BED, binaries, versions
from hostnet import Bridge, bridge_for

#: The annotation kwok selects its nodes by (--manage-nodes-with-annotation-selector).
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
LABEL = TAINT = ("llmfleet.dev/bed-node", "kwok")
BRIDGE: Bridge = bridge_for(250)
FIRST_HOST = 10
MAX_NODES = 200
STANDIN = BED.parent / "standin_engine" / "vllm" / "entrypoints" / "openai" / "api_server.py"
ENGINE_PORT = 8000
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")


def node_name(k: int) -> str:
    return f"kwok-gpu-{k}"


def node_ip(k: int) -> str:
    if not 1 <= k <= MAX_NODES:
        raise ValueError(f"kwok node {k}: the bed has room for 1..{MAX_NODES}")
    return str(ipaddress.ip_network(BRIDGE.subnet).network_address + FIRST_HOST + k)


def plan_addresses(count: int) -> list[list[str]]:
    """The node addresses, on the kwok bridge (which hostnet.apply creates with the others)."""
    return [["ip", "addr", "replace", f"{node_ip(k)}/32", "dev", BRIDGE.name] for k in range(1, count + 1)]


def node_objects(count: int) -> list[dict]:
    capacity = {"cpu": "48", "memory": "192Gi", "pods": "110", "ephemeral-storage": "500Gi", "nvidia.com/gpu": "4"}
    nodes = []
    for k in range(1, count + 1):
        name, zone = node_name(k), ZONES[(k - 1) % len(ZONES)]
        nodes.append({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1], "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                    LABEL[0]: LABEL[1],
                    "node.kubernetes.io/instance-type": "g5.12xlarge",
                    "topology.kubernetes.io/zone": zone,
                    "topology.kubernetes.io/region": zone[:-1],
                    "karpenter.sh/capacity-type": "on-demand",
                    "eks.amazonaws.com/capacityType": "ON_DEMAND",
                    "nvidia.com/gpu.present": "true",
                    "nvidia.com/gpu.product": "NVIDIA-A10G",
                    "nvidia.com/gpu.count": capacity["nvidia.com/gpu"],
                },
            },
            "spec": {"providerID": f"kwok://{name}",
                     "taints": [{"key": TAINT[0], "value": TAINT[1], "effect": "NoSchedule"}]},
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "addresses": [{"type": "InternalIP", "address": node_ip(k)}, {"type": "Hostname", "address": name}],
                "nodeInfo": {
                    "architecture": "amd64", "operatingSystem": "linux",
                    "kubeletVersion": versions()["KUBERNETES_VERSION"], "containerRuntimeVersion": "kwok://1",
                    "kernelVersion": "", "kubeProxyVersion": "", "osImage": "llmfleet e2e bed (kwok)",
                    "bootID": "", "machineID": "", "systemUUID": "",
                },
            },
        })
    return nodes


def placement() -> dict:
    """What an LLMService's spec.scheduling needs to land on the kwok nodes."""
    return {"nodeSelector": {LABEL[0]: LABEL[1]},
            "tolerations": [{"key": TAINT[0], "operator": "Equal", "value": TAINT[1], "effect": "NoSchedule"}]}


def argvs(state_dir: Path, count: int, kwok_port: int) -> dict[str, tuple[list[str], dict[str, str]]]:
    """kwok and the stand-in servers: {component: (argv, extra environment)}."""
    out = {
        "kwok": ([
            str(binaries()["kwok"]),
            f"--kubeconfig={state_dir / 'kubeconfig'}",
            f"--config={BED / 'kwok-stages.yaml'}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=" + "=".join(KWOK_ANNOTATION),
            "--node-lease-duration-seconds=40",
            # The pod and host IP kwok falls back on when it cannot read a node's: the bridge's.
            f"--node-ip={BRIDGE.gateway}",
            f"--server-address=127.0.0.1:{kwok_port}",
        ], {}),
    }
    for k in range(1, count + 1):
        out[f"standin-{node_name(k)}"] = (
            [sys.executable, str(STANDIN), "--port", str(ENGINE_PORT)], {"LLMFLEET_ENGINE_HOST": node_ip(k)})
    return out
