"""LLMService.spec.model: where the model comes from (file://, pvc://, hf://), the paths it may
not be mounted at, and the token to fetch it with."""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from .base import ApiModel
from .cel import Rule, cel_rules
from .common import (
    SecretKeySelector,
)

# file:///abs/dir | pvc://claim[/path] | hf://org/name — the three places a model can come from.
MODEL_URI_PATTERN = (
    r"^(file:///[^\s]*"
    r"|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/[^\s]*)?"
    r"|hf://[A-Za-z0-9][-A-Za-z0-9_.]*/[A-Za-z0-9][-A-Za-z0-9_.]*)$"
)

# A file:// model directory is mounted at its own path in the pod. It must not be one of the
# pod's own mount paths (a duplicate mountPath: the API server refuses every pod template, so
# every apply fails), nor / or the kernel's filesystems (the container cannot start). A path
# below /tmp is fine: Kubernetes mounts it on top of the /tmp emptyDir.
OWN_MOUNTS = ("/tmp", "/var/cache/llmfleet", "/var/run/secrets/llmfleet", "/var/run/secrets/llmfleet-drain", "/dev/shm")
SYSTEM_DIRS = ("/dev", "/proc", "/sys")
class ModelSource(ApiModel):
    """Which model to serve and under which name clients ask for it."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            Rule(
                "!has(self.revision) || self.uri.startsWith('hf://')",
                "spec.model.revision applies only to hf:// model URIs",
                field_path=".revision",
                reason="FieldValueForbidden",
            ),
            Rule(
                "!self.uri.startsWith('file://') || (self.uri.substring(7) != '/' "
                "&& !(self.uri.substring(7) in [" + ", ".join(f"'{m}'" for m in OWN_MOUNTS) + "]) && ["
                + ", ".join(f"'{m}'" for m in SYSTEM_DIRS)
                + "].all(m, self.uri.substring(7) != m && !self.uri.substring(7).startsWith(m + '/')))",
                "spec.model.uri: a file:// directory is mounted at the same path in the pod, so it must not be /, "
                "one of the pod's own mount paths (" + ", ".join(OWN_MOUNTS) + ") or under "
                + ", ".join(SYSTEM_DIRS),
                field_path=".uri",
                reason="FieldValueForbidden",
            ),
            Rule(
                "!has(self.tokenSecretRef) || self.uri.startsWith('hf://')",
                "spec.model.tokenSecretRef applies only to hf:// model URIs",
                field_path=".tokenSecretRef",
                reason="FieldValueForbidden",
            ),
        )
    )

    uri: str = Field(
        description=(
            "Where the weights are, in Hugging Face layout. `file:///dir`: a directory on the node, "
            "mounted read-only by hostPath at the same path. `pvc://claim/path`: a directory inside a "
            "PersistentVolumeClaim of the same namespace, mounted read-only at /models. "
            "`hf://org/name`: downloaded by an init container into a cache volume before the engine starts."
        ),
        min_length=1,
        max_length=1024,
        pattern=MODEL_URI_PATTERN,
    )
    served_name: str | None = Field(
        None,
        description="The model name clients put in requests (`model` field, /v1/models). Defaults to the LLMService name.",
        max_length=253,
        pattern=r"^[A-Za-z0-9][-A-Za-z0-9_./:]*$",
    )
    revision: str | None = Field(
        None,
        description="For hf:// only: the branch, tag or commit to download. Unset means the repository's default branch.",
        max_length=255,
        pattern=r"^[-A-Za-z0-9_./]+$",
    )
    token_secret_ref: SecretKeySelector | None = Field(
        None, description="For hf:// only: a Secret key holding a Hugging Face token, for gated or private models."
    )

    @model_validator(mode="after")
    def _host_path_clear_of_the_pods_mounts(self) -> ModelSource:
        if self.uri.startswith("file://"):
            path = self.uri.removeprefix("file://")
            if path == "/" or path in OWN_MOUNTS or any(path == m or path.startswith(m + "/") for m in SYSTEM_DIRS):
                raise ValueError(f"spec.model.uri: {path} clashes with the pod's own mounts ({', '.join(OWN_MOUNTS)}) "
                                 f"or a system directory ({', '.join(SYSTEM_DIRS)})")
        return self

    @model_validator(mode="after")
    def _hf_only_fields(self) -> ModelSource:
        if not self.uri.startswith("hf://"):
            for field, value in (("revision", self.revision), ("tokenSecretRef", self.token_secret_ref)):
                if value is not None:
                    raise ValueError(f"spec.model.{field} applies only to hf:// model URIs")
        return self
