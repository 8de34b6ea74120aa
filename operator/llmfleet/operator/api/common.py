"""Small types that several custom resources share, shaped like their core Kubernetes namesakes.

Each mirrors the core API type of the same name (LocalObjectReference, SecretKeySelector,
Toleration, metav1.Condition, resource.Quantity) so users write what they already know,
and the render layer can copy them into pod specs unchanged.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema

from .base import ApiModel

# DNS-1123 subdomain / label patterns, as the API server checks object names.
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

# resource.Quantity's canonical grammar: a number with an optional binary/decimal suffix or exponent.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)


def _quantity(value: object) -> str:
    """Accept `2` as well as `"2"` (YAML users write both) and keep the string form."""
    if isinstance(value, bool):
        raise ValueError("a quantity is a number or a string such as '500m' or '16Gi'")
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str) or not _QUANTITY_RE.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 2, '500m', '16Gi')")
    return value


# A resource request or limit: the same grammar without a sign (a negative one is refused by
# the API server only when the pod is created, long after the LLMService was accepted).
NON_NEGATIVE_QUANTITY_PATTERN = QUANTITY_PATTERN.replace(r"^(\+|-)?", "^", 1)
_NON_NEGATIVE_RE = re.compile(NON_NEGATIVE_QUANTITY_PATTERN)


def _non_negative_quantity(value: object) -> str:
    text = _quantity(value)
    if not _NON_NEGATIVE_RE.match(text):
        raise ValueError(f"{value!r} is negative: a resource quantity must be 0 or more")
    return text


# A resource.Quantity: int-or-string on the wire, exactly as core types declare it.
Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]


class LocalObjectReference(ApiModel):
    """A reference to another object by name, in the referrer's namespace (or cluster-scoped)."""

    name: str = Field(
        description="Name of the referenced object.",
        min_length=1,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
    )


class SecretKeySelector(ApiModel):
    """One key of a Secret in the referrer's namespace."""

    name: str = Field(
        description="Name of the Secret.", min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN
    )
    key: str = Field(
        description="Key inside the Secret whose value is used.",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
    )


# A label value: at most 63 characters (the API server's own limit; it also bounds CEL's cost).
LabelValue = Annotated[str, Field(max_length=63)]


class Toleration(ApiModel):
    """A core/v1 Toleration, copied into the pod spec unchanged."""

    key: str | None = Field(
        None, description="Taint key the toleration applies to; empty with operator Exists matches all keys.",
        max_length=316,
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        None, description="Exists matches any value; Equal (the Kubernetes default) matches `value`."
    )
    value: str | None = Field(None, description="Taint value to match with operator Equal.", max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        None,
        description="For NoExecute: how long the pod stays bound after the taint appears; unset means forever.",
        ge=0,
        le=2**63 - 1,
    )


class NodePlacement(ApiModel):
    """Where pods may run: node labels they require and taints they tolerate."""

    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict,
        description="Node labels a pod requires (core/v1 PodSpec.nodeSelector).",
        max_length=32,
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        description="Taints a pod tolerates (core/v1 PodSpec.tolerations).",
        max_length=32,
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """A metav1.Condition: one aspect of an object's state, with the reason it is so."""

    model_config = ConfigDict(extra="ignore")

    type: str = Field(
        description="Condition type in CamelCase, e.g. Ready, Progressing, Degraded.",
        min_length=1,
        max_length=316,
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str | None = Field(
        None,
        description="One CamelCase word saying why the condition is in this status (machine-readable).",
        max_length=1024,
    )
    message: str | None = Field(None, description="A sentence for humans on the same.", max_length=32768)
    last_transition_time: datetime | None = Field(
        None, description="When `status` last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        None,
        description="The object's metadata.generation this condition was computed from.",
        ge=0,
        le=2**63 - 1,
    )


def conditions_field(description: str) -> list[Condition]:
    """A `conditions` list keyed by `type`, as Kubernetes lists conditions (one entry per type)."""
    return Field(
        default_factory=list,
        description=description,
        max_length=16,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )


class ObjectMeta(ApiModel):
    """The part of metav1.ObjectMeta the operator reads; the API server owns the schema of metadata."""

    model_config = ConfigDict(extra="allow")

    name: str = Field("", description="Object name.")
    namespace: str | None = Field(None, description="Namespace of a namespaced object.")
    uid: str | None = Field(None, description="Unique id, used for owner references.")
    generation: int | None = Field(None, description="Spec generation, for observedGeneration.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")


ResourceQuantity = Annotated[
    str,
    BeforeValidator(_non_negative_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],  # exactly this shape: structural
            "pattern": NON_NEGATIVE_QUANTITY_PATTERN,  # strings only; the rule below for integers
            "x-kubernetes-int-or-string": True,
            "x-kubernetes-validations": [
                {"rule": "type(self) != int || int(self) >= 0", "message": "a resource quantity must be 0 or more"}
            ],
        }
    ),
]
