"""STAND-IN, NOT vLLM: answers like an idle vLLM OpenAI server, for the operator benchmark.

See e2e/standin_engine/README.md. Accepts (and ignores) vLLM's flags except --port; binds
$LLMFLEET_ENGINE_HOST (a kwok node's address: the bed runs one per kwok node), else 0.0.0.0.
"""

from __future__ import annotations

import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

METRICS = (
    b"# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 0\n"
    b"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n"
    b"# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc 0\n"
    b"# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total 0\n"
)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path in ("/health", "/ready"):
            body, ctype = b"ok\n", "text/plain"
        elif self.path == "/metrics":
            body, ctype = METRICS, "text/plain; version=0.0.4"
        elif self.path == "/v1/models":
            body, ctype = b'{"object":"list","data":[]}', "application/json"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # quiet: 200 of these share one machine
        pass


def main(argv: list[str]) -> None:
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv else 8000
    host = os.environ.get("LLMFLEET_ENGINE_HOST", "0.0.0.0")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    HTTPServer((host, port), Handler).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
