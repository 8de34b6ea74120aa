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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from llmfleet.operator.api.autoscalepolicy import AutoscalePolicySpec
from llmfleet.operator.api.scaling_status import ScalingStatus
from llmfleet.operator.scaling import PodMetric, recommend_replicas

# The inputs and outputs live in their own modules; importers use this one.
from .simulate_inputs import (
    DEFAULT_START,
    SimulateError,
    TracePoint,
    load_at,
    load_policy,
    load_trace,
    parse_policy,
    parse_trace,
)
from .simulate_output import _require_matplotlib, plot, write_csv

__all__ = ["DEFAULT_START", "SimRow", "SimulateError", "TracePoint", "load_at", "load_policy", "load_trace",
           "parse_policy", "parse_trace", "plot", "run_simulation", "simulate", "write_csv"]

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
