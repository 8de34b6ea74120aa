"""`llmfleet-router`: serve the OpenAI API in front of the fleet's engines.

    llmfleet-router [--namespace NS ...] [--port 8080] [--admin-port 9090] [--load-factor 1.25] ...

Every flag is a RouterConfig field (config.py says why each default is what it is).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

from .config import RouterConfig


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_args(argv: list[str] | None = None) -> RouterConfig:
    parser = argparse.ArgumentParser(prog="llmfleet-router", description=__doc__.splitlines()[0])
    defaults = RouterConfig()
    for f in dataclasses.fields(RouterConfig):
        if f.name == "namespaces":
            env = os.environ.get("LLMFLEET_ROUTER_NAMESPACES", "")
            parser.add_argument("--namespace", dest="namespaces", action="append",
                                default=[n for n in env.split(",") if n.strip()],
                                help="serve the LLMServices of this namespace (repeat; default: every namespace; "
                                     "also $LLMFLEET_ROUTER_NAMESPACES, comma-separated)")
            continue
        default = getattr(defaults, f.name)
        parser.add_argument(_flag(f.name), dest=f.name, type=type(default), default=default,
                            help=f"(default {default})")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request and per scrape otherwise
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RouterConfig)}
    values["namespaces"] = tuple(n.strip() for n in values["namespaces"] if n.strip())
    config = RouterConfig(**values)
    problems = check_config(config)
    if problems:
        parser.error("; ".join(problems))
    return config


def check_config(config: RouterConfig) -> list[str]:
    problems = []
    if config.load_factor < 1:
        problems.append("--load-factor must be at least 1 (1 = perfectly even, no prefix stickiness)")
    if config.max_attempts < 1:
        problems.append("--max-attempts must be at least 1")
    for name in ("metrics_interval_seconds", "metrics_timeout_seconds", "connect_timeout_seconds",
                 "response_timeout_seconds", "stream_idle_timeout_seconds", "key_refresh_seconds",
                 "body_read_timeout_seconds"):
        if getattr(config, name) <= 0:
            problems.append(f"{_flag(name)} must be positive")
    for name in ("port", "admin_port"):
        if not 1 <= getattr(config, name) <= 65535:
            problems.append(f"{_flag(name)} must be a TCP port (1-65535)")
    if config.port == config.admin_port:
        problems.append("--admin-port must differ from --port: /metrics and /demand stay off the API port")
    if config.max_body_bytes <= 0 or config.prefix_chars <= 0 or config.max_connections <= 0:
        problems.append("--max-body-bytes, --prefix-chars and --max-connections must be positive")
    return problems


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    import uvicorn

    from .app import RouterApp
    from .discovery import Discovery
    from .fleet import Fleet
    from .kube import client_from_environment
    from .poller import run_poller

    fleet = Fleet()
    api = client_from_environment()
    discovery = Discovery(api, fleet, config)
    app = RouterApp(config, fleet)
    app.background = (discovery.run, lambda: run_poller(fleet, app.client, config, app.metrics))
    app.synced = discovery.synced
    host = config.host or os.environ.get("POD_IP") or "0.0.0.0"

    def config_for(port: int) -> uvicorn.Config:
        return uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                              timeout_graceful_shutdown=30, limit_concurrency=config.max_connections)

    # One server, one app, two listening sockets: the app tells the API port from the admin port
    # by the address each connection arrived on (app.py).
    sockets = [config_for(port).bind_socket() for port in (config.port, config.admin_port)]
    uvicorn.Server(config_for(config.port)).run(sockets=sockets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
