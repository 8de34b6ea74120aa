"""Where the engine finds the weights: the volume, mount, init container and --model path per URI.

| spec.model.uri     | volume                          | engine gets --model             |
| ------------------ | ------------------------------- | ------------------------------- |
| file:///dir        | hostPath /dir, read-only at /dir| /dir (same path: the e2e runner has no mount namespaces) |
| pvc://claim/sub    | the PVC, read-only at /models   | /models/sub                     |
| hf://org/name      | the cache emptyDir, filled by an init container | /var/cache/llmfleet/models/org/name |

The hf:// download uses huggingface_hub's Python API rather than a CLI: the CLI was
renamed (`huggingface-cli` → `hf`) across versions, the function was not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmfleet.operator.api.model_source import ModelSource

from .paths import CACHE_DIR, CACHE_VOLUME, HF_HOME, MODEL_VOLUME, PVC_MOUNT, TMP_DIR, TMP_VOLUME

# Downloads one repository snapshot into a directory; argv: repo, revision ('' = default branch), target.
HF_DOWNLOAD_SCRIPT = (
    "import sys; from huggingface_hub import snapshot_download; "
    "repo, revision, target = sys.argv[1:4]; "
    "snapshot_download(repo_id=repo, revision=revision or None, local_dir=target); "
    "print('downloaded', repo, 'to', target)"
)


@dataclass(frozen=True)
class ModelMount:
    """What the pod needs so the engine can read the model at `path`."""

    path: str
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    hf_repo: str | None = None  # set for hf://: the init container downloads it to `path`


def model_mount(model: ModelSource) -> ModelMount:
    uri = model.uri
    if uri.startswith("file://"):
        path = uri.removeprefix("file://")
        return ModelMount(
            path=path,
            volumes=[{"name": MODEL_VOLUME, "hostPath": {"path": path, "type": "Directory"}}],
            mounts=[{"name": MODEL_VOLUME, "mountPath": path, "readOnly": True}],
        )
    if uri.startswith("pvc://"):
        claim, _, sub = uri.removeprefix("pvc://").partition("/")
        sub = sub.strip("/")
        return ModelMount(
            path=f"{PVC_MOUNT}/{sub}" if sub else PVC_MOUNT,
            volumes=[{"name": MODEL_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}],
            mounts=[{"name": MODEL_VOLUME, "mountPath": PVC_MOUNT, "readOnly": True}],
        )
    if uri.startswith("hf://"):
        repo = uri.removeprefix("hf://")
        return ModelMount(path=f"{CACHE_DIR}/models/{repo}", hf_repo=repo)
    raise ValueError(f"unsupported model URI {uri!r}")  # the CRD pattern rejects these first


def download_init_container(model: ModelSource, mount: ModelMount, image: str, security_context: dict[str, Any]) -> dict[str, Any]:
    """The init container that fills the cache volume from the Hugging Face Hub (hf:// only)."""
    env: list[dict[str, Any]] = [{"name": "HOME", "value": TMP_DIR}, {"name": "HF_HOME", "value": HF_HOME}]
    if model.token_secret_ref is not None:
        env.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {"name": model.token_secret_ref.name, "key": model.token_secret_ref.key}
                },
            }
        )
    return {
        "name": "fetch-model",
        "image": image,
        "command": ["python3", "-c", HF_DOWNLOAD_SCRIPT, mount.hf_repo, model.revision or "", mount.path],
        "env": env,
        "securityContext": security_context,
        "volumeMounts": [
            {"name": CACHE_VOLUME, "mountPath": CACHE_DIR},
            {"name": TMP_VOLUME, "mountPath": TMP_DIR},
        ],
    }
