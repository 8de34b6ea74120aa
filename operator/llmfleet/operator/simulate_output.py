"""Writes a simulation's rows: the CSV table and the PNG plot (matplotlib, only when asked for)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from llmfleet.operator.api.autoscalepolicy import AutoscalePolicySpec

from .simulate_inputs import OUTPUT_HEADER, SimulateError

if TYPE_CHECKING:
    from .simulate import SimRow


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
