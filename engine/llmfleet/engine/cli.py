"""`llmfleet-engine`: serve a model, or drain a running server (the pod's preStop hook).

    llmfleet-engine serve --model DIR [options]      flags come from EngineConfig
    llmfleet-engine drain [--port 8000] [--wait-seconds 5] [--token-file F]

The HTTP server starts first and answers /health while the weights load in the
background (/ready turns 200 when loading is done), so a liveness or startup probe
sees a live process during a long load. A bad model directory is found by a fast
check before the server starts and ends the process with a message naming the file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

from .config import EngineConfig
from .errors import EngineError

log = logging.getLogger("llmfleet.engine")
HOST_ENV = "LLMFLEET_ENGINE_HOST"
DRAIN_TOKEN_ENV = "LLMFLEET_DRAIN_TOKEN_FILE"
CONNECTION_HEADROOM = 256  # connections beyond --max-concurrent-requests before uvicorn refuses outright


def _add_config_flags(ap: argparse.ArgumentParser) -> None:
    for f in EngineConfig.option_fields():
        flag = "--" + f.name.replace("_", "-")
        # argparse %-formats help text: a literal % (e.g. "90% of") must be doubled.
        kw: dict = {"dest": f.name, "help": (f.metadata.get("help") or "").replace("%", "%%"), "default": f.default}
        if f.type in ("bool", bool, "bool | None"):
            kw["action"] = argparse.BooleanOptionalAction
        else:
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
            t = str(f.type)
            kw["type"] = int if t.startswith("int") else float if t.startswith("float") else str
        if f.name == "model":
            kw["required"] = True
        ap.add_argument(flag, **kw)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="llmfleet-engine", description="llmfleet's paged-attention inference engine")
    sub = ap.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API")
    _add_config_flags(serve)
    drain = sub.add_parser("drain", help="ask a local server to drain, then wait out the grace (preStop hook)")
    drain.add_argument("--host", default=None,
                       help=f"server address; default ${HOST_ENV} (0.0.0.0 means this host: 127.0.0.1)")
    drain.add_argument("--port", type=int, default=8000)
    drain.add_argument("--wait-seconds", type=float, default=5.0,
                       help="seconds to wait after the drain request, so endpoints drop the pod first")
    drain.add_argument("--timeout", type=float, default=5.0, help="HTTP timeout for the drain request")
    drain.add_argument("--token-file", default=os.environ.get(DRAIN_TOKEN_ENV),
                       help=f"file with the drain token the server was started with (default ${DRAIN_TOKEN_ENV})")
    return ap


def config_from_args(args: argparse.Namespace) -> EngineConfig:
    values = {f.name: getattr(args, f.name) for f in EngineConfig.option_fields()}
    cfg = EngineConfig(**values)
    if cfg.host is None:
        cfg = dataclasses.replace(cfg, host=os.environ.get(HOST_ENV) or "0.0.0.0")
    return cfg


def drain_host(flag: str | None) -> str:
    """Where the preStop hook finds its own engine: the address $LLMFLEET_ENGINE_HOST binds it to
    (engines run as host processes side by side, each on its own address); in a pod it is unset."""
    host = flag or os.environ.get(HOST_ENV) or "127.0.0.1"
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def run_drain(args: argparse.Namespace) -> int:
    """POST /drain with the drain token, then wait out the grace. Exit 1 when the server refused
    (a wrong or missing token): the kubelet records FailedPreStopHook, and the grace is still
    waited out, since endpoints learn of the pod's deletion late either way."""
    url = f"http://{drain_host(args.host)}:{args.port}/drain"
    headers = {}
    if args.token_file:
        try:
            with open(args.token_file) as f:
                headers["Authorization"] = f"Bearer {f.read().strip()}"
        except OSError as e:
            print(json.dumps({"drain": "no token", "error": str(e)}), file=sys.stderr)
    code = 0
    try:
        req = urllib.request.Request(url, data=b"", method="POST", headers=headers)
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            print(resp.read().decode())
    except urllib.error.HTTPError as e:
        print(json.dumps({"drain": "refused", "status": e.code, "error": e.read().decode(errors="replace")[:500]}),
              file=sys.stderr)
        code = 1
    except (urllib.error.URLError, OSError) as e:
        # Nothing to drain (the server is gone or never started): the pod can go.
        print(json.dumps({"drain": "skipped", "error": str(e)}), file=sys.stderr)
        return 0
    time.sleep(max(0.0, args.wait_seconds))
    return code


def serve(cfg: EngineConfig) -> int:
    # In a container the engine is PID 1, and PID 1 never gets a signal it has no handler for:
    # a SIGTERM before uvicorn's handlers (a pod deleted while it starts) would be dropped, and
    # the engine would serve on until its SIGKILL. Hold it here; the server acts on it at start.
    early_signals: list[int] = []
    signal.signal(signal.SIGTERM, lambda sig, frame: early_signals.append(sig))
    import torch
    import uvicorn

    from .admission import Admission
    from .auth import ApiKeys, DrainToken, TokenBuckets
    from .gpu import GpuMonitor
    from .loader import load_model_config, resolve_model_path, weight_files
    from .logs import setup_logging
    from .metrics import EngineMetrics
    from .model_runner import pick_device
    from .server import ServerState, create_app
    from .tokenizer import Tokenizer

    started = time.monotonic()
    setup_logging(cfg.log_level)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        model_dir = resolve_model_path(cfg.model)
        load_model_config(model_dir)  # fast checks: fail before serving anything
        weight_files(model_dir)
        tokenizer = Tokenizer(model_dir)
        api_keys = ApiKeys(cfg.api_key_file)
        drain_token = DrainToken(cfg.drain_token_file)
        device = pick_device(cfg.device)
    except EngineError as e:
        print(f"llmfleet-engine: cannot serve {cfg.model}: {e.message}", file=sys.stderr)
        return 1
    name = cfg.served_model_name or model_dir.name
    metrics = EngineMetrics(name)
    admission = Admission(cfg.drain_grace_seconds, drain_expiry_seconds=cfg.drain_expiry_seconds)
    state = ServerState(config=cfg, metrics=metrics, admission=admission, api_keys=api_keys,
                        drain_token=drain_token, buckets=TokenBuckets(cfg.rate_limit_tokens_per_minute),
                        gpu=GpuMonitor(device.type), tokenizer=tokenizer, served_model_name=name)
    app = create_app(state)
    # uvicorn's own bound counts open connections too (idle ones included) and refuses every
    # request past it, probes too: a backstop above the app's per-request bound (body.py).
    server = _Server(uvicorn.Config(app, host=cfg.host or "0.0.0.0", port=cfg.port, log_config=None, access_log=False,
                                    timeout_graceful_shutdown=int(cfg.shutdown_timeout) or None,
                                    limit_concurrency=cfg.max_concurrent_requests + CONNECTION_HEADROOM,
                                    timeout_keep_alive=5), state, early_signals)

    def load() -> None:
        from .async_engine import AsyncEngine
        from .llm_engine import LLMEngine

        # CUDA graphs are captured before serving (capture must not overlap other GPU work); on CPU
        # the engine serves eagerly at once and compiles in this thread (unless --compile-wait).
        run_cfg = dataclasses.replace(cfg, served_model_name=name, compile=cfg.compile_enabled(device.type))
        compile_first = run_cfg.compile and (cfg.compile_wait or device.type == "cuda")
        try:
            engine = LLMEngine(run_cfg, compile_now=False)
            if compile_first and engine.compile():
                metrics.compile_seconds.set(engine.compile_seconds)
                metrics.decode_compiled.set(1)
        except Exception as e:
            state.load_error = str(e)
            log.error("model load failed", extra={"error": str(e)})
            server.exit_code = 1
            server.should_exit = True
            return
        state.max_model_len = engine.max_model_len
        state.vocab_size = engine.runner.cfg.vocab_size
        state.engine = AsyncEngine(engine, metrics, cfg.max_waiting)
        state.admission.loaded = True
        metrics.ready.set(1)
        metrics.model_load_seconds.set(time.monotonic() - started)
        log.info("ready", extra={"model": name, "load_seconds": round(time.monotonic() - started, 2),
                                 "host": cfg.host, "port": cfg.port})
        if run_cfg.compile and not compile_first and engine.compile():
            metrics.compile_seconds.set(engine.compile_seconds)
            metrics.decode_compiled.set(1)

    loader = threading.Thread(target=load, name="model-load", daemon=True)
    loader.start()
    server.run()
    if state.engine:
        state.engine.shutdown()
    log.info("exited", extra={"code": server.exit_code})
    if loader.is_alive():
        # Stopped while loading or compiling: a thread still inside torch when the interpreter
        # finalizes aborts the process (std::terminate), so leave without finalizing.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(server.exit_code)
    return server.exit_code


def _make_server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, plus: SIGTERM refuses new requests at once and marks the engine draining."""

        def __init__(self, config, state, early_signals: list[int]):
            super().__init__(config)
            self.state = state
            self.exit_code = 0
            self.early_signals = early_signals

        @contextlib.contextmanager
        def capture_signals(self):
            with super().capture_signals():
                for sig in self.early_signals:  # received while starting: act on them now
                    self.handle_exit(sig, None)
                yield

        def handle_exit(self, sig, frame) -> None:
            a = self.state.admission
            if not a.terminating:
                log.info("signal received: refusing new requests, finishing in-flight ones",
                         extra={"signal": int(sig),
                                "in_flight": self.state.engine.num_in_flight if self.state.engine else 0})
            a.terminating = True
            self.state.metrics.draining.set(1)
            self.state.metrics.ready.set(0)
            super().handle_exit(sig, frame)
            # uvicorn re-raises captured signals after shutdown, so the process would die by SIGTERM
            # (exit 143) even after a clean drain; a graceful SIGTERM exit is a success (exit 0).
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list) and sig == signal.SIGTERM:
                captured[:] = [s for s in captured if s != signal.SIGTERM]

    return Server


def _Server(config, state, early_signals):  # noqa: N802 - a factory for the class (uvicorn imported lazily)
    return _make_server_class()(config, state, early_signals)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "drain":
        sys.exit(run_drain(args))
    try:
        cfg = config_from_args(args)
    except ValueError as e:
        print(f"llmfleet-engine serve: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(serve(cfg))


if __name__ == "__main__":
    main()
