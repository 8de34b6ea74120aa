"""What a CustomResourceDefinition says beyond the schema: names, scope, columns, subresources.

Each model module declares one `CRD = CrdInfo(...)` beside its spec and status models,
so a kind's whole API surface reads in one file; `crd.py` turns it into YAML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from .cel import Rule

GROUP = "llmfleet.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class PrinterColumn:
    """One `kubectl get` column (additionalPrinterColumns); priority 1 shows only with `-o wide`."""

    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    description: str
    priority: int = 0

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "name": self.name, "type": self.type, "jsonPath": self.json_path, "description": self.description
        }
        if self.priority:
            wire["priority"] = self.priority
        return wire


@dataclass(frozen=True)
class ScaleSubresource:
    """The `scale` subresource paths, so `kubectl scale`, an HPA or KEDA can drive the kind."""

    spec_replicas_path: str
    status_replicas_path: str
    label_selector_path: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = {"specReplicasPath": self.spec_replicas_path, "statusReplicasPath": self.status_replicas_path}
        if self.label_selector_path:
            wire["labelSelectorPath"] = self.label_selector_path
        return wire


@dataclass(frozen=True)
class CrdInfo:
    """Everything the CRD of one kind needs besides the field schemas, which come from the models."""

    kind: str
    plural: str
    scope: Literal["Namespaced", "Cluster"]
    spec_model: type[BaseModel]
    status_model: type[BaseModel] | None
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ("llmfleet",)
    description: str = ""
    printer_columns: tuple[PrinterColumn, ...] = ()
    scale: ScaleSubresource | None = None
    root_rules: tuple[Rule, ...] = ()  # CEL rules on the whole object (the only place metadata.name is visible)
    group: str = GROUP
    version: str = VERSION

    @property
    def name(self) -> str:
        """metadata.name of the CRD: <plural>.<group>."""
        return f"{self.plural}.{self.group}"

    @property
    def singular(self) -> str:
        return self.kind.lower()
