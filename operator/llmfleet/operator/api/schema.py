"""pydantic model → structural OpenAPI v3 schema, as apiextensions.k8s.io/v1 requires.

pydantic emits JSON Schema 2020-12; a CRD needs the structural subset. The differences,
each handled by one rule below:

| JSON Schema from pydantic            | structural schema                                   |
| ------------------------------------ | --------------------------------------------------- |
| `$ref` into `$defs`                  | the definition inlined (no $ref allowed)            |
| `anyOf: [X, {type: null}]` (Optional)| X; the field is simply not required                 |
| `const: v`                           | `enum: [v]`                                         |
| `exclusiveMinimum: n` (a number)     | `minimum: n, exclusiveMinimum: true` (a boolean)    |
| `title`, `default: null`             | dropped                                             |
| `integer` / `number`                 | with `format` int32 (bounded ≤ 2³¹-1) / int64, double |
| default from `default_factory`       | the value, nulls and empty lists/maps left out      |

Descriptions come from `Field(description=...)`, else from the model's docstring.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

from .cel import VALIDATIONS_KEY

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

# Keywords the structural conversion drops: documentation-only or meaningless on the wire.
_DROPPED = {"title", "$defs", "examples"}


class _Generator(GenerateJsonSchema):
    """Also emits defaults built by `default_factory`, which pydantic leaves out."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().get_default_value(schema)
        value = factory()  # type: ignore[call-arg]  # takes no data: checked above
        if isinstance(value, BaseModel):
            # The whole default object, not `{}`: the API server checks a default against the
            # CEL rules as written, before nested defaults would fill it in.
            return _compact(value.model_dump(by_alias=True, mode="json"))
        if value in ({}, []):
            return NoDefault  # an empty list or map is the same as absent; keep objects small
        return value


def _compact(value: Any) -> Any:
    """Drop nulls and empty lists/maps from a default: absent means the same and reads shorter."""
    if isinstance(value, dict):
        items = ((k, _compact(v)) for k, v in value.items())
        return {k: v for k, v in items if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural schema of `model`, wire (camelCase) names, ready for openAPIV3Schema."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_Generator)
    defs = raw.get("$defs", {})
    return _convert(raw, defs)


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Replace a $ref (and an Optional's null branch) by the schema it stands for, keeping sibling keys."""
    node = dict(node)
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"unions are not structural; only Optional[X] is supported: {branches}")
        node = _merge(branches[0], node)
    if "$ref" in node:
        target = defs[node.pop("$ref").split("/")[-1]]
        node = _merge(target, node)
        return _resolve(node, defs)
    return node


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`overlay` (the field's own keys) wins over `base` (the type's); CEL rules from both are kept."""
    merged = {**copy.deepcopy(base), **overlay}
    rules = base.get(VALIDATIONS_KEY, []) + overlay.get(VALIDATIONS_KEY, [])
    if rules:
        merged[VALIDATIONS_KEY] = rules
    return merged


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    node = _resolve(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "default" and value is None:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = _convert(value, defs)
        elif key == "additionalProperties":
            continue  # a boolean here is pydantic's extra= setting; structural schemas prune instead
        elif key == "default":
            out[key] = _without_nulls(value)
        else:
            out[key] = value
    if out.get("type") == "integer" and out.get("maximum") == INT64_MAX:
        del out["maximum"]  # the full int64 range: say it with the format, not a 19-digit bound
        out["format"] = "int64"
    if out.get("type") == "integer" and "format" not in out:
        bounded = "maximum" in out and out["maximum"] <= INT32_MAX and out.get("minimum", 0) >= -INT32_MAX - 1
        out["format"] = "int32" if bounded else "int64"
    if out.get("type") == "number" and "format" not in out:
        out["format"] = "double"
    if "enum" in out and "type" not in out:
        out["type"] = _enum_type(out["enum"])
    return _ordered(out)


def _enum_type(values: list[Any]) -> str:
    kinds = {type(v) for v in values}
    if kinds <= {str}:
        return "string"
    if kinds <= {int}:
        return "integer"
    raise ValueError(f"mixed enum {values}")


def _without_nulls(value: Any) -> Any:
    """Defaults are pruned like objects: a null inside one would be stored as null, so leave it out."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


# Key order in the generated YAML, so a reviewer reads type and description first.
_ORDER = ["description", "type", "format", "enum", "default", "required"]


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    head = {k: node[k] for k in _ORDER if k in node}
    tail = {k: node[k] for k in sorted(node) if k not in head}
    return {**head, **tail}
