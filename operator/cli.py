"""`llmfleet-operator`: the operator's command line.

Subcommands:
  simulate  replay a load trace through an AutoscalePolicy (no cluster needed)
  run       run the operator (kopf) against a cluster: not implemented yet

Exit codes: 0 success, 2 a usage or input error (reported in one line, no traceback).
Each subcommand is a `_cmd_<name>(args) -> int` registered in `build_parser`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import datetime

EXIT_OK = 0
EXIT_USAGE = 2


def _iso_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone offset, e.g. {text}+00:00")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _cmd_simulate(args: argparse.Namespace) -> int:
    from llmfleet.operator.simulate import DEFAULT_START, SimulateError, run_simulation

    try:
        run_simulation(
            args.policy,
            args.trace,
            sys.stdout,
            initial_replicas=args.initial_replicas,
            startup_seconds=args.startup_seconds,
            plot_path=args.plot,
            start=args.start or DEFAULT_START,
        )
    except SimulateError as exc:
        print(f"llmfleet-operator simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `simulate ... | head`: the reader has seen enough; no traceback for that.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    print(
        "llmfleet-operator run: not implemented yet: the kopf handlers that reconcile LLMService, "
        "AutoscalePolicy and SpotPool in a cluster have not landed. "
        "`llmfleet-operator simulate` works without a cluster.",
        file=sys.stderr,
    )
    return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmfleet-operator", description="Kubernetes operator for fleets of LLM inference servers."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = commands.add_parser(
        "simulate",
        help="replay a load trace through an AutoscalePolicy",
        description=(
            "Replay a load trace through the autoscaler's algorithm and print, per sync, "
            "t_seconds,replicas,ready_replicas,metric_average,desired_replicas as CSV."
        ),
    )
    sim.add_argument(
        "--policy", required=True, help="AutoscalePolicy manifest (YAML), the one you would apply"
    )
    sim.add_argument(
        "--trace", required=True, help="CSV with header t_seconds,total (service-wide metric total)"
    )
    sim.add_argument(
        "--initial-replicas",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="replicas at t=0, all ready (default: the policy's minReplicas)",
    )
    sim.add_argument(
        "--startup-seconds",
        type=_non_negative_float,
        default=0.0,
        metavar="S",
        help="seconds from a scale-up until the new pods are ready (model load); default 0",
    )
    sim.add_argument(
        "--start",
        type=_iso_datetime,
        default=None,
        metavar="TIME",
        help="wall-clock time of t=0 for schedules, ISO 8601 with offset (default 2024-01-01T00:00:00+00:00, a Monday)",
    )
    sim.add_argument(
        "--plot", default=None, metavar="OUT.png", help="also draw replicas and load over time to a PNG"
    )
    sim.set_defaults(func=_cmd_simulate)

    run = commands.add_parser("run", help="run the operator against a cluster (not implemented yet)")
    run.set_defaults(func=_cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
