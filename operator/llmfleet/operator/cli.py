"""`llmfleet-operator`: the operator's command line.

Subcommands:
  simulate  replay a load trace through an AutoscalePolicy (no cluster needed)
  run       run the operator (kopf) against a cluster
  node-agent  on a spot node: EC2 metadata notices → Node annotation (the chart's DaemonSet)

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


def peering_priority(now: float | None = None) -> int:
    """A priority distinct per process, higher for older processes.

    kopf pauses every peer that sees a live peer of higher *or equal* priority, and
    `--priority` is one value for all pods of a Deployment; so each process derives its
    own from its start time (milliseconds) with a random tie-break. The oldest replica
    stays active; one that starts later (a rollout's new pod) joins paused. Stays below
    2**53 so JSON readers keep it exact.
    """
    import random
    import time

    start_ms = int((time.time() if now is None else now) * 1000)
    return (10**13 - start_ms) * 100 + random.randrange(100)


def _cmd_run(args: argparse.Namespace) -> int:
    import kopf
    from llmfleet.operator.handlers import kopf_handlers

    if args.standalone and args.peering:
        print("llmfleet-operator run: --standalone and --peering exclude each other", file=sys.stderr)
        return EXIT_USAGE
    if args.all_namespaces and args.namespace:
        print("llmfleet-operator run: --all-namespaces and --namespace exclude each other", file=sys.stderr)
        return EXIT_USAGE
    drain_key_file = args.drain_key_file or os.environ.get("LLMFLEET_DRAIN_KEY_FILE")
    if drain_key_file:
        from llmfleet.operator.adapters.drain_key import DrainKey

        try:
            DrainKey(drain_key_file)
        except ValueError as exc:
            print(f"llmfleet-operator run: drain key: {exc}", file=sys.stderr)
            return EXIT_USAGE
    kopf.configure(debug=args.debug, verbose=args.verbose, quiet=args.quiet)
    kopf_handlers.configure_runtime(
        engine_image=args.engine_image or os.environ.get("LLMFLEET_ENGINE_IMAGE"),
        check_secrets=not args.no_secret_check,
        metrics_address=args.metrics_address,
        metrics_port=args.metrics_port,
        namespaces=args.namespace,
        node_events_namespace=args.node_events_namespace,
        drain_key_file=drain_key_file,
    )
    priority = args.priority if args.priority is not None else peering_priority()
    kopf.run(
        standalone=args.standalone or not args.peering,
        peering_name=args.peering,
        priority=priority,
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
    )
    return EXIT_OK


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

    run = commands.add_parser(
        "run",
        help="run the operator (kopf) against a cluster",
        description=(
            "Reconcile LLMServices and AutoscalePolicies in the cluster of the in-cluster service account, "
            "else $KUBECONFIG. The flags mirror `kopf run`'s."
        ),
    )
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="serve every namespace (default)")
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="serve only this namespace (repeatable; globs need namespace list rights)")
    run.add_argument("--node-events-namespace", default="default", metavar="NS",
                     help="where Events about Nodes (Karpenter's SpotInterrupted) are stored; watched too when "
                          "--namespace does not list it (default: default; '' = do not)")
    run.add_argument("--standalone", action="store_true", help="no peering: the only operator (default)")
    run.add_argument("--peering", default=None, metavar="NAME",
                     help="kopf peering object shared by the replicas; one replica is active")
    run.add_argument("--priority", type=int, default=None,
                     help="peering priority (default: distinct per process, older processes higher)")
    run.add_argument("--liveness", default=None, metavar="URL",
                     help="kopf's liveness endpoint, e.g. http://0.0.0.0:8081/healthz")
    run.add_argument("--metrics-address", default=None, metavar="ADDR",
                     help="address for /metrics (default $POD_IP, else 0.0.0.0)")
    run.add_argument("--metrics-port", type=int, default=8080, metavar="PORT", help="port for /metrics (8080)")
    run.add_argument("--engine-image", default=None, metavar="IMAGE",
                     help="default image of embedded-engine pods (default $LLMFLEET_ENGINE_IMAGE, else the release's)")
    run.add_argument("--drain-key-file", default=None, metavar="FILE",
                     help="the key every LLMService's drain token is derived from (default "
                          "$LLMFLEET_DRAIN_KEY_FILE; unset: a random key per process, see docs/security.md)")
    run.add_argument("--no-secret-check", action="store_true",
                     help="do not watch Secrets (without read rights): a missing API-key Secret shows on the pods only")
    for flag in ("--verbose", "--debug", "--quiet"):
        run.add_argument(flag, action="store_true", help=f"kopf's {flag} logging")
    run.set_defaults(func=_cmd_run)
    _add_node_agent(commands)
    return parser


# --- node-agent (the SpotPool DaemonSet; operator/adapters/node_agent.py) -----------------------------


def _cmd_node_agent(args: argparse.Namespace) -> int:
    import logging

    from llmfleet.operator.adapters.node_agent import ImdsClient, KubeNodeClient, run_agent

    node = args.node_name or os.environ.get("NODE_NAME")
    if not node:
        print("llmfleet-operator node-agent: give --node-name or set $NODE_NAME", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_agent(node, ImdsClient(args.imds_url, timeout=args.timeout), KubeNodeClient(), interval=args.interval)
    return EXIT_OK


def _add_node_agent(commands) -> None:
    agent = commands.add_parser(
        "node-agent",
        help="watch this node's EC2 metadata for spot notices and annotate the Node",
        description=(
            "Poll the instance metadata service (IMDSv2) for a spot instance-action and a rebalance "
            "recommendation and write them onto the Node (llmfleet.dev/interruption-deadline, "
            "llmfleet.dev/rebalance-recommendation). Runs as the chart's node-agent DaemonSet."
        ),
    )
    agent.add_argument("--node-name", default=None, help="this pod's node (default $NODE_NAME)")
    agent.add_argument("--imds-url", default="http://169.254.169.254", help="metadata service base URL")
    agent.add_argument("--interval", type=_non_negative_float, default=5.0, metavar="S", help="seconds between polls (5)")
    agent.add_argument("--timeout", type=_non_negative_float, default=2.0, metavar="S", help="per-request timeout (2)")
    agent.set_defaults(func=_cmd_node_agent)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
