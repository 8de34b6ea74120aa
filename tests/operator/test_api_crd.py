"""The generated CRDs are well-formed apiextensions.k8s.io/v1 with structural schemas.

What a kube-apiserver refuses at CRD creation, checked without one:
- unknown keys anywhere (the field names of the Kubernetes client's own CRD models);
- a schema node without `type` (unless int-or-string or preserve-unknown-fields);
- forbidden keywords ($ref, definitions, uniqueItems: true, ...), properties together with
  additionalProperties, a numeric exclusiveMinimum;
- CEL rules or printer columns naming fields that do not exist; list-map keys not required.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes.client as k8s
import pytest
from llmfleet.operator.api.cel import VALIDATIONS_KEY
from llmfleet.operator.api.crd import discover, render_crd

CRDS = {info.kind: render_crd(info) for info in discover()}
SCHEMA_KEYS = set(k8s.V1JSONSchemaProps.attribute_map.values())
FORBIDDEN = {"$ref", "$schema", "definitions", "dependencies", "additionalItems", "patternProperties", "id", "title"}
OWN_KINDS = ["LLMService", "SpotPool"]


def test_every_kind_is_generated():
    assert {"LLMService", "SpotPool"} <= set(CRDS)


def _check_model(value: Any, type_name: str, path: str, errors: list[str]) -> None:
    """Check a plain dict against a kubernetes-client model's declared fields, recursively."""
    if type_name == "V1JSONSchemaProps":
        return  # schemas are checked by _schema_nodes
    if type_name.startswith("List["):
        for i, item in enumerate(value):
            _check_model(item, type_name[5:-1], f"{path}[{i}]", errors)
        return
    if type_name.startswith("Dict[") or type_name == "object":
        return
    cls = getattr(k8s, type_name, None)
    if cls is None:
        return  # a scalar (str, bool, int)
    by_wire = {wire: attr for attr, wire in cls.attribute_map.items()}
    for key, sub in value.items():
        if key not in by_wire:
            errors.append(f"{path}: unknown field {key!r} for {type_name}")
            continue
        _check_model(sub, cls.openapi_types[by_wire[key]], f"{path}.{key}", errors)


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_crd_fields_are_known_to_apiextensions_v1(kind):
    errors: list[str] = []
    _check_model(CRDS[kind], "V1CustomResourceDefinition", kind, errors)
    assert not errors, "\n".join(errors)


def _schema_nodes(node: dict, path: str):
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _schema_nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _schema_nodes(node["additionalProperties"], f"{path}{{}}")


def _schema(kind: str) -> dict:
    return CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _structural_errors(kind: str) -> list[str]:
    errors = []
    for path, node in _schema_nodes(_schema(kind), kind):
        unknown = set(node) - SCHEMA_KEYS
        if unknown:
            errors.append(f"{path}: unknown keywords {sorted(unknown)}")
        if set(node) & FORBIDDEN:
            errors.append(f"{path}: forbidden keywords {sorted(set(node) & FORBIDDEN)}")
        free = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
        if not node.get("type") and not free:
            errors.append(f"{path}: no type")
        if "properties" in node and "additionalProperties" in node:
            errors.append(f"{path}: properties and additionalProperties together")
        if node.get("uniqueItems"):
            errors.append(f"{path}: uniqueItems is not allowed")
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            if key in node and not isinstance(node[key], bool):
                errors.append(f"{path}: {key} must be a boolean")
        if node.get("type") == "array" and "items" not in node:
            errors.append(f"{path}: array without items")
        for branch in node.get("anyOf", []):
            # Only the int-or-string idiom may carry types inside anyOf.
            if not node.get("x-kubernetes-int-or-string") and set(branch) & {"type", "description", "default"}:
                errors.append(f"{path}: anyOf branch sets {sorted(branch)}")
        if node.get("x-kubernetes-list-type") == "map":
            required = set(node["items"].get("required", []))
            for key in node.get("x-kubernetes-list-map-keys", []):
                if key not in required:
                    errors.append(f"{path}: list-map key {key} must be required")
    return errors


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_schema_is_structural(kind):
    assert _structural_errors(kind) == []


@pytest.mark.parametrize("kind", OWN_KINDS)
def test_every_field_has_a_description(kind):
    missing = [path for path, node in _schema_nodes(_schema(kind), kind)
               if not path.endswith(("[]", "{}")) and path.count(".") > 1 and not node.get("description")]
    assert missing == []


@pytest.mark.parametrize("kind", OWN_KINDS)
def test_free_form_only_where_kopf_keeps_its_state(kind):
    free = [path for path, node in _schema_nodes(_schema(kind), kind) if node.get("x-kubernetes-preserve-unknown-fields")]
    assert free == [f"{kind}.status.kopf"]


def _resolve(schema: dict, dotted: str) -> dict | None:
    node = schema
    for part in filter(None, dotted.split(".")):
        props = node.get("properties")
        if props is None:
            return node  # metadata, maps: the API server knows their shape
        if part not in props:
            return None
        node = props[part]
    return node


SELF_PATH = re.compile(r"self((?:\.[A-Za-z_][A-Za-z0-9_]*)+)(\()?")


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_cel_rules_name_existing_fields(kind):
    errors = []
    for path, node in _schema_nodes(_schema(kind), kind):
        for rule in node.get(VALIDATIONS_KEY, []):
            assert rule.get("message"), f"{path}: rule without message: {rule['rule']}"
            for match in SELF_PATH.finditer(rule["rule"]):
                dotted = match.group(1)
                if match.group(2):  # a method call: the last segment is the method
                    dotted = dotted.rsplit(".", 1)[0]
                if _resolve(node, dotted) is None:
                    errors.append(f"{path}: {rule['rule']!r} refers to missing self{dotted}")
            if "fieldPath" in rule and _resolve(node, rule["fieldPath"]) is None:
                errors.append(f"{path}: fieldPath {rule['fieldPath']} does not exist")
    assert errors == []


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_cel_walked_strings_and_lists_are_bounded(kind):
    """The API server estimates rule cost from maxLength/maxItems; unbounded inputs make it refuse the CRD."""
    errors = []
    for path, node in _schema_nodes(_schema(kind), kind):
        for rule in node.get(VALIDATIONS_KEY, []):
            for match in SELF_PATH.finditer(rule["rule"]):
                target = _resolve(node, match.group(1).rsplit(".", 1)[0] if match.group(2) else match.group(1))
                if target is None or "properties" not in node:
                    continue
                if target.get("type") == "string" and "maxLength" not in target and "enum" not in target:
                    errors.append(f"{path}: {match.group(0)} walks an unbounded string")
                if target.get("type") == "array" and "maxItems" not in target:
                    errors.append(f"{path}: {match.group(0)} walks an unbounded list")
                if target.get("type") == "object" and "additionalProperties" in target and "maxProperties" not in target:
                    errors.append(f"{path}: {match.group(0)} walks an unbounded map")
    assert errors == []


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_printer_columns_and_scale_paths_exist(kind):
    crd = CRDS[kind]
    version = crd["spec"]["versions"][0]
    schema = _schema(kind)
    for column in version["additionalPrinterColumns"]:
        assert _resolve(schema, column["jsonPath"]) is not None, column
    scale = version.get("subresources", {}).get("scale")
    if scale:
        for key in ("specReplicasPath", "statusReplicasPath", "labelSelectorPath"):
            assert _resolve(schema, scale[key]) is not None, scale[key]


def test_llmservice_names_and_subresources():
    crd = CRDS["LLMService"]
    assert crd["metadata"]["name"] == "llmservices.llmfleet.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["shortNames"] == ["llms"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    columns = [c["name"].upper() for c in version["additionalPrinterColumns"]]
    for name in ("MODEL", "READY", "QUEUE", "PHASE", "SPOT", "LAST SCALE", "AGE"):
        assert name in columns


def test_spotpool_is_cluster_scoped():
    crd = CRDS["SpotPool"]
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["shortNames"] == ["spotpool"]


def test_replicas_has_no_default():
    """A default on replicas would make every object with an autoscalePolicyRef fail the exclusivity rule."""
    spec = _schema("LLMService")["properties"]["spec"]
    assert "default" not in spec["properties"]["replicas"]
    rules = [r["rule"] for r in spec[VALIDATIONS_KEY]]
    assert "!(has(self.replicas) && has(self.autoscalePolicyRef))" in rules


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_object_defaults_hold_what_their_rules_read(kind):
    """The API server checks a default against CEL rules as written, before nested defaults apply:
    a default of `{}` under `self.a >= self.b` is refused with "no such key" at CRD creation."""
    errors = []
    for path, node in _schema_nodes(_schema(kind), kind):
        default = node.get("default")
        if not isinstance(default, dict):
            continue
        for rule in node.get(VALIDATIONS_KEY, []):
            for match in SELF_PATH.finditer(rule["rule"]):
                first = match.group(1).split(".")[1]
                if f"has(self.{first}" not in rule["rule"] and first not in default:
                    errors.append(f"{path}: default lacks {first!r} read by {rule['rule']!r}")
    assert errors == []
