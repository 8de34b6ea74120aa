"""The engine pod template: one hardened container, its volumes, and its placement.

Hardening (restricted Pod Security Standard): non-root, no privilege escalation, all
capabilities dropped, RuntimeDefault seccomp, read-only root filesystem with emptyDirs
for /tmp and the caches, no service-account token (the engine never calls the API).
Placement: spec.scheduling merged with the SpotPool's side for this capacity; the pool's
nodeSelector wins on a shared key, so a user cannot pull spot replicas onto other nodes.
"""

from __future__ import annotations

from typing import Any

from llmfleet.operator.api.common import NodePlacement
from llmfleet.operator.api.llmservice import LLMService

from .context import RenderContext
from .drain_token import drain_secret_name, uses_drain_token
from .engine import engine_process, probes, termination_grace_seconds
from .labels import deployment_selector, selector_labels
from .model_source import download_init_container, model_mount
from .paths import (
    API_KEY_DIR,
    API_KEY_VOLUME,
    CACHE_DIR,
    CACHE_VOLUME,
    DRAIN_TOKEN_DIR,
    DRAIN_TOKEN_KEY,
    DRAIN_TOKEN_VOLUME,
    HTTP_PORT,
    HTTP_PORT_NAME,
    SHM_VOLUME,
    TMP_DIR,
    TMP_VOLUME,
)

GPU_RESOURCE = "nvidia.com/gpu"
# The uid the llmfleet images run as (images/), so the engine image runs as its own user; any
# other image (vLLM) runs non-root as it too. emptyDirs are world-writable: no fsGroup (no
# recursive chown of a model cache).
RUN_AS_USER = 10001
SHM_SIZE = "1Gi"

# Defaults that keep one service from pushing a shared node into OOM or DiskPressure.
# Without spec.resources.memory the pod gets this limit (an engine that outgrows it is
# OOM-killed alone, not the node's other pods) and this request (without one, Kubernetes
# would request the whole limit and the pod might never schedule).
DEFAULT_MEMORY_LIMIT = "16Gi"
DEFAULT_MEMORY_REQUEST = "2Gi"
TMP_SIZE = "1Gi"  # /tmp: scratch and HOME; the engine writes little there
# The cache emptyDir: an hf:// model is downloaded into it, so it holds the weights; for other
# sources only the Hugging Face and compile caches. spec.resources.cacheSize overrides both.
CACHE_SIZE_HF = "100Gi"
CACHE_SIZE = "10Gi"



def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(service: LLMService) -> dict[str, Any]:
    """Requests from spec.resources; memory and GPUs are also limits, CPU is not (throttling hurts latency).
    Without spec.resources.memory: DEFAULT_MEMORY_REQUEST and DEFAULT_MEMORY_LIMIT."""
    spec = service.spec.resources
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if spec.cpu is not None:
        requests["cpu"] = spec.cpu
    if spec.memory is not None:
        requests["memory"] = limits["memory"] = spec.memory
    else:
        requests["memory"], limits["memory"] = DEFAULT_MEMORY_REQUEST, DEFAULT_MEMORY_LIMIT
    if spec.gpus:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(spec.gpus)
    out = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _placement_parts(ctx: RenderContext) -> tuple[NodePlacement | None, dict[str, Any] | None]:
    """The pool side this capacity runs on, and a node affinity keeping on-demand pods off spot nodes."""
    if ctx.pool is None:
        return None, None
    if ctx.capacity == "spot":
        return ctx.pool.spot, None
    # NOT (k1=v1 AND k2=v2 ...) == (k1 NotIn [v1]) OR (k2 NotIn [v2]) ...: one term per label.
    terms = [
        {"matchExpressions": [{"key": key, "operator": "NotIn", "values": [value]}]}
        for key, value in sorted(ctx.pool.spot.node_selector.items())
    ]
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}
    return ctx.pool.on_demand, affinity


def placement(service: LLMService, ctx: RenderContext) -> dict[str, Any]:
    """nodeSelector, tolerations, affinity and priorityClassName of the pod spec."""
    scheduling = service.spec.scheduling
    pool_side, affinity = _placement_parts(ctx)
    node_selector = dict(scheduling.node_selector)
    tolerations = [t.to_wire() for t in scheduling.tolerations]
    if pool_side is not None:
        node_selector.update(pool_side.node_selector)
        tolerations += [t.to_wire() for t in pool_side.tolerations if t.to_wire() not in tolerations]
    out: dict[str, Any] = {}
    if node_selector:
        out["nodeSelector"] = dict(sorted(node_selector.items()))
    if tolerations:
        out["tolerations"] = tolerations
    if affinity:
        out["affinity"] = affinity
    if scheduling.priority_class_name:
        out["priorityClassName"] = scheduling.priority_class_name
    return out


def cache_size(service: LLMService) -> str:
    """The cache emptyDir's sizeLimit: spec.resources.cacheSize, else by model source."""
    if service.spec.resources.cache_size is not None:
        return service.spec.resources.cache_size
    return CACHE_SIZE_HF if service.spec.model.uri.startswith("hf://") else CACHE_SIZE


def _volumes(service: LLMService, model_volumes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # sizeLimit: the kubelet evicts the pod that outgrows it, before the node's disk fills
    volumes = [
        {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": TMP_SIZE}},
        {"name": CACHE_VOLUME, "emptyDir": {"sizeLimit": cache_size(service)}},
        *model_volumes,
    ]
    ref = service.spec.api_key_secret_ref
    if ref is not None and service.spec.engine.kind == "embedded":
        volumes.append(
            {
                "name": API_KEY_VOLUME,
                # Mounted as a directory (not subPath) so a rotated key reaches the pod.
                # 0444: the pod runs as a non-root uid without fsGroup, so the file must be world-readable.
                "secret": {"secretName": ref.name, "items": [{"key": ref.key, "path": "api-key"}], "defaultMode": 0o444},
            }
        )
    if uses_drain_token(service):
        volumes.append(
            {
                "name": DRAIN_TOKEN_VOLUME,
                # A directory mount, so a rotated token reaches the pod; 0444 as the API key above.
                "secret": {"secretName": drain_secret_name(service.metadata.name),
                           "items": [{"key": DRAIN_TOKEN_KEY, "path": DRAIN_TOKEN_KEY}], "defaultMode": 0o444},
            }
        )
    if service.spec.engine.kind == "vllm":
        volumes.append({"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}})
    return volumes


def _mounts(service: LLMService, model_mounts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    mounts = [
        {"name": TMP_VOLUME, "mountPath": TMP_DIR},
        {"name": CACHE_VOLUME, "mountPath": CACHE_DIR},
        *model_mounts,
    ]
    if service.spec.api_key_secret_ref is not None and service.spec.engine.kind == "embedded":
        mounts.append({"name": API_KEY_VOLUME, "mountPath": API_KEY_DIR, "readOnly": True})
    if uses_drain_token(service):
        mounts.append({"name": DRAIN_TOKEN_VOLUME, "mountPath": DRAIN_TOKEN_DIR, "readOnly": True})
    if service.spec.engine.kind == "vllm":
        mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    return mounts


def image(service: LLMService, ctx: RenderContext) -> str:
    engine = service.spec.engine
    return engine.image or (ctx.images.vllm if engine.kind == "vllm" else ctx.images.embedded)


def render_pod_template(service: LLMService, ctx: RenderContext) -> dict[str, Any]:
    """The Deployment's spec.template for one capacity."""
    spec = service.spec
    name = service.metadata.name
    mount = model_mount(spec.model)
    process = engine_process(service, mount.path)
    container = {
        "name": "engine",
        "image": image(service, ctx),
        **({"imagePullPolicy": spec.engine.image_pull_policy} if spec.engine.image_pull_policy else {}),
        "command": process.command,
        "args": process.args,
        "env": process.env,
        "ports": [{"name": HTTP_PORT_NAME, "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "resources": resources(service),
        **probes(spec, process.readiness_path),
        "lifecycle": {"preStop": process.pre_stop},
        "securityContext": container_security_context(),
        "volumeMounts": _mounts(service, mount.mounts),
    }
    pod_spec: dict[str, Any] = {}
    if mount.hf_repo is not None:
        pod_spec["initContainers"] = [
            download_init_container(spec.model, mount, image(service, ctx), container_security_context())
        ]
    pod_spec |= {
        "containers": [container],
        "volumes": _volumes(service, mount.volumes),
        "securityContext": pod_security_context(),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": termination_grace_seconds(spec),
        **placement(service, ctx),
        # Spread replicas over nodes: one reclaimed node should take as few as possible.
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector_labels(name)},
            }
        ],
    }
    return {
        "metadata": {
            "labels": deployment_selector(name, ctx.capacity),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(HTTP_PORT),
                "prometheus.io/path": "/metrics",
                "kubectl.kubernetes.io/default-container": "engine",
            },
        },
        "spec": pod_spec,
    }
