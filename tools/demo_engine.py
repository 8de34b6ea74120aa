"""The engine on its own: serve the demo model (SmolLM2-135M-Instruct, from PyPI) and chat with it.

    python -m tools.demo_engine

Uses the official `openai` client against the local server, streams the answer,
then shows the queue and latency metrics the operator scales on.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx

from tools.demo_model import ensure_demo_model

QUESTIONS = ["What is the capital of France?", "Give me three tips for writing readable Python code."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    model = ensure_demo_model()
    print(f"model: {model}\n  {(model / 'SOURCE.txt').read_text().strip()}\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "llmfleet.engine.cli", "serve", "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port), "--served-model-name", "demo-chat", "--threads", "2", "--max-model-len", "2048",
           "--log-level", "warning"]
    print("$ llmfleet-engine " + " ".join(cmd[3:]))
    proc = subprocess.Popen(cmd)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                print("the engine did not become ready", file=sys.stderr)
                return 1
            time.sleep(0.2)
        import openai

        client = openai.OpenAI(base_url=url + "/v1", api_key="none")
        for q in QUESTIONS:
            print(f"\nuser> {q}\nassistant> ", end="", flush=True)
            stream = client.chat.completions.create(model="demo-chat", messages=[{"role": "user", "content": q}],
                                                    max_tokens=120, temperature=0.7, seed=1, stream=True)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    print(chunk.choices[0].delta.content, end="", flush=True)
            print()
        metrics = httpx.get(url + "/metrics").text.splitlines()
        print("\nsome of /metrics:")
        for line in metrics:
            if line.startswith(("llmfleet_engine_requests_", "llmfleet_engine_generation_tokens_total",
                                "llmfleet_engine_time_to_first_token_seconds_count", "vllm:num_requests")):
                print("  " + line)
        return 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
