"""Reads the simulator's inputs: an AutoscalePolicy manifest and a load trace (CSV), each mistake a SimulateError naming the file and line."""

from __future__ import annotations

import bisect
import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml
from llmfleet.operator.api.autoscalepolicy import KIND, AutoscalePolicy
from llmfleet.operator.api.resource import API_VERSION
from pydantic import ValidationError

DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday, so weekday schedules read naturally
TRACE_HEADER = ("t_seconds", "total")
OUTPUT_HEADER = ("t_seconds", "replicas", "ready_replicas", "metric_average", "desired_replicas")


class SimulateError(Exception):
    """A mistake in the user's policy or trace; the message names the file and line."""


# --- policy -----------------------------------------------------------------------------


def _node_line(root: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """1-based line of the deepest YAML node on the path `loc` (a pydantic error location)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            if match is None:
                break
            key_node = next(k for k, v in node.value if v is match)
            node, line = match, key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _field_path(loc: Sequence[str | int]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse_policy(text: str, source: str = "policy") -> AutoscalePolicy:
    """The AutoscalePolicy in a YAML manifest (the one admins apply); other documents are skipped."""
    try:
        nodes = [n for n in yaml.compose_all(text) if n is not None]
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SimulateError(f"{source}{where}: invalid YAML: {problem}") from None

    documents = [d for d in documents if d is not None]
    if not documents:
        raise SimulateError(f"{source}: no YAML document; expected an AutoscalePolicy manifest")
    for doc, node in zip(documents, nodes, strict=True):
        if not isinstance(doc, dict):
            raise SimulateError(
                f"{source} line {node.start_mark.line + 1}: expected a mapping (a Kubernetes manifest)"
            )
    policies = [(d, n) for d, n in zip(documents, nodes, strict=True) if d.get("kind") == KIND]
    if not policies:
        doc, node = documents[0], nodes[0]
        line = _node_line(node, ["kind"])
        raise SimulateError(f"{source} line {line}: kind is {doc.get('kind')!r}; expected {KIND}")
    if len(policies) > 1:
        line = policies[1][1].start_mark.line + 1
        raise SimulateError(f"{source} line {line}: more than one AutoscalePolicy; simulate one at a time")
    doc, node = policies[0]
    if doc.get("apiVersion") != API_VERSION:
        line = _node_line(node, ["apiVersion"])
        raise SimulateError(
            f"{source} line {line}: apiVersion is {doc.get('apiVersion')!r}; expected {API_VERSION}"
        )
    doc.setdefault("metadata", {"name": "policy"})
    try:
        return AutoscalePolicy.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        line = _node_line(node, err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise SimulateError(f"{source} line {line}: {_field_path(err['loc'])}: {message}{more}") from None


def load_policy(path: str | Path) -> AutoscalePolicy:
    return parse_policy(_read(path), str(path))


# --- trace ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TracePoint:
    t_seconds: float
    total: float


def _number(text: str, column: str, source: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SimulateError(f"{source} line {line}: {column} {text.strip()!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise SimulateError(f"{source} line {line}: {column} {text.strip()!r} must be a non-negative number")
    return value


def parse_trace(text: str, source: str = "trace") -> list[TracePoint]:
    """Rows of `t_seconds,total`, t strictly increasing."""
    reader = csv.reader(io.StringIO(text), strict=True)
    points: list[TracePoint] = []
    header_seen = False
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if not header_seen:
                if tuple(cell.strip() for cell in row) != TRACE_HEADER:
                    raise SimulateError(
                        f"{source} line {line}: expected the header 't_seconds,total', got {','.join(row)!r}"
                    )
                header_seen = True
                continue
            if len(row) != 2:
                raise SimulateError(
                    f"{source} line {line}: expected 2 columns (t_seconds,total), got {len(row)}"
                )
            t = _number(row[0], "t_seconds", source, line)
            total = _number(row[1], "total", source, line)
            if points and t <= points[-1].t_seconds:
                raise SimulateError(
                    f"{source} line {line}: t_seconds {row[0].strip()} is not after the previous row's"
                )
            points.append(TracePoint(t, total))
    except csv.Error as exc:
        raise SimulateError(f"{source} line {reader.line_num}: malformed CSV: {exc}") from None
    if not header_seen:
        raise SimulateError(f"{source}: empty; expected the header 't_seconds,total' and rows")
    if not points:
        raise SimulateError(f"{source}: no rows after the header")
    return points


def load_trace(path: str | Path) -> list[TracePoint]:
    return parse_trace(_read(path), str(path))


def load_at(trace: Sequence[TracePoint], t: float) -> float:
    """The trace's total at time t: the last row at or before t (0 before the first row)."""
    index = bisect.bisect_right([p.t_seconds for p in trace], t)
    return trace[index - 1].total if index else 0.0


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SimulateError(f"{path}: cannot read: {exc}") from None
