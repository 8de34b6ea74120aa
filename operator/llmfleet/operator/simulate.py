"""Replay a load trace through an AutoscalePolicy: what would the autoscaler have done?

The simulator drives the very function the operator uses (`recommend_replicas`) with a
fleet model simple enough to reason about:

| assumption        | model                                                                   |
| ----------------- | ----------------------------------------------------------------------- |
| load              | the trace's `total` (service-wide metric), piecewise constant from each row; 0 before the first |
| metric per pod    | every ready pod carries total / ready replicas; starting pods carry none |
| syncs             | t = 0, P, 2P, ... up to the trace's last time (P = syncPeriodSeconds)    |
| scale-up          | a new pod is ready `startup_seconds` after the sync that created it      |
| scale-down        | pods leave at once (their drain is not modelled), starting pods first, as the ReplicaSet controller picks unready pods first |
| replicas          | the count after the sync's decision (what the Deployment asks for)       |
| desired_replicas  | the metric's unstabilized recommendation; empty on Hold or a bounds correction |
| clock             | t = 0 is `start` (default Monday 2024-01-01 00:00 UTC), which schedules see |

Inputs are user files: every mistake in them is a SimulateError naming the file and line.
"""

from __future__ import annotations

import bisect
import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import yaml
from llmfleet.operator.api.autoscalepolicy import (
    KIND,
    AutoscalePolicy,
    AutoscalePolicySpec,
    ScalingStatus,
)
from llmfleet.operator.api.resource import API_VERSION
from llmfleet.operator.scaling import PodMetric, recommend_replicas
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


# --- the replay -------------------------------------------------------------------------


@dataclass(frozen=True)
class SimRow:
    t_seconds: float
    replicas: int
    ready_replicas: int
    metric_average: float | None
    desired_replicas: int | None
    total: float  # the load at t, for the plot
    reason: str  # why this sync scaled ("" when it did not)


@dataclass
class _Pod:
    name: str
    ready_at: float


def simulate(
    spec: AutoscalePolicySpec,
    trace: Sequence[TracePoint],
    initial_replicas: int | None = None,
    startup_seconds: float = 0.0,
    start: datetime = DEFAULT_START,
) -> list[SimRow]:
    """One row per sync, from t = 0 to the trace's last time."""
    if initial_replicas is None:
        initial_replicas = spec.min_replicas
    if initial_replicas < 0 or startup_seconds < 0:
        raise SimulateError("--initial-replicas and --startup-seconds must not be negative")
    pods = [_Pod(f"pod-{i}", ready_at=0.0) for i in range(initial_replicas)]
    created = initial_replicas
    status = ScalingStatus()
    rows: list[SimRow] = []
    period = spec.sync_period_seconds
    end = trace[-1].t_seconds
    for k in range(int(end // period) + 1):
        t = float(k * period)
        total = load_at(trace, t)
        ready = [p for p in pods if p.ready_at <= t]
        average = total / len(ready) if ready else None
        observed = [PodMetric(p.name, ready=True, value=average) for p in ready]
        observed += [PodMetric(p.name, ready=False) for p in pods if p.ready_at > t]
        decision = recommend_replicas(spec, len(pods), observed, status, start + timedelta(seconds=t))
        status = decision.status
        if decision.replicas > len(pods):
            for _ in range(decision.replicas - len(pods)):
                pods.append(_Pod(f"pod-{created}", ready_at=t + startup_seconds))
                created += 1
        elif decision.replicas < len(pods):
            # Starting pods go first, then the newest: the ReplicaSet controller's order.
            pods.sort(key=lambda p: (p.ready_at <= t, -p.ready_at))
            del pods[: len(pods) - decision.replicas]
        rows.append(
            SimRow(t, len(pods), len(ready), average, decision.metric_replicas, total, decision.reason)
        )
    return rows


def _fmt(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_csv(rows: Sequence[SimRow], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(OUTPUT_HEADER)
    for r in rows:
        writer.writerow(
            [
                _fmt(r.t_seconds),
                r.replicas,
                r.ready_replicas,
                _fmt(r.metric_average),
                _fmt(r.desired_replicas),
            ]
        )


def _require_matplotlib() -> None:
    """The plot is the one use of matplotlib: the operator's install (and image) leaves it out."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SimulateError("--plot needs matplotlib, which the operator does not install: "
                            "`pip install matplotlib` (or llmfleet[dev])") from None


def plot(rows: Sequence[SimRow], spec: AutoscalePolicySpec, path: str | Path, title: str = "") -> None:
    """Replicas and load over time, as a PNG (matplotlib, Agg backend: no display needed)."""
    _require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r.t_seconds for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6.5), height_ratios=[3, 2])
    top.step(t, [r.replicas for r in rows], where="post", label="replicas", linewidth=2)
    # After the sync: pods removed by a scale-down leave at once, so ready is at most replicas.
    ready_after = [min(r.ready_replicas, r.replicas) for r in rows]
    top.step(t, ready_after, where="post", label="ready replicas", linestyle="--")
    desired = [r.desired_replicas if r.desired_replicas is not None else math.nan for r in rows]
    top.step(t, desired, where="post", label="recommendation (unstabilized)", linestyle=":", alpha=0.8)
    top.set_ylabel("replicas")
    top.set_ylim(bottom=0)
    load_axis = top.twinx()
    load_axis.fill_between(
        t, [r.total for r in rows], step="post", alpha=0.15, color="tab:red", label="load (total)"
    )
    load_axis.set_ylabel(f"total {spec.metric.type.value}")
    load_axis.set_ylim(bottom=0)
    handles = top.get_legend_handles_labels()[0] + load_axis.get_legend_handles_labels()[0]
    top.legend(handles, [h.get_label() for h in handles], loc="center right", fontsize="small")

    average = [r.metric_average if r.metric_average is not None else math.nan for r in rows]
    target = spec.metric.target_average_value
    bottom.step(t, average, where="post", label=f"{spec.metric.type.value} per ready replica")
    bottom.axhline(target, color="tab:green", linestyle="--", label=f"target {target:g}")
    bottom.axhspan(target * (1 - spec.tolerance), target * (1 + spec.tolerance), color="tab:green", alpha=0.1)
    bottom.set_xlabel("t (seconds)")
    bottom.set_ylabel("average")
    bottom.set_ylim(bottom=0)
    bottom.legend(loc="upper right", fontsize="small")
    fig.suptitle(title or "llmfleet-operator simulate")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def run_simulation(
    policy_path: str | Path,
    trace_path: str | Path,
    out: TextIO,
    initial_replicas: int | None = None,
    startup_seconds: float = 0.0,
    plot_path: str | Path | None = None,
    start: datetime = DEFAULT_START,
) -> list[SimRow]:
    """Everything `llmfleet-operator simulate` does; raises SimulateError on bad input."""
    if plot_path is not None:
        _require_matplotlib()  # before any output, not after the table
    policy = load_policy(policy_path)
    trace = load_trace(trace_path)
    rows = simulate(policy.spec, trace, initial_replicas, startup_seconds, start)
    write_csv(rows, out)
    if plot_path is not None:
        try:
            plot(rows, policy.spec, plot_path, title=f"AutoscalePolicy {policy.metadata.name}")
        except OSError as exc:
            raise SimulateError(f"{plot_path}: cannot write the plot: {exc}") from None
    return rows
