"""Serving behaviour under pressure: drain, SIGTERM, disconnects, queue bound, keys, rate limits, bad models."""

from __future__ import annotations

import concurrent.futures as cf
import json
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from engine_process import EngineProcess

LONG = {"prompt": "Although never is often better", "max_tokens": 400, "ignore_eos": True, "stream": True}


def stream_all(url: str, body: dict) -> tuple[int, list[str]]:
    """Consume an SSE stream; return (status, data lines)."""
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as r:
        return r.status_code, [ln for ln in r.iter_lines() if ln.startswith("data: ")]


def wait_for(pred, timeout=30.0, every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    return False


DRAIN_TOKEN = "drain-token-for-the-lifecycle-tests"
DRAIN = {"Authorization": f"Bearer {DRAIN_TOKEN}"}


@pytest.fixture
def server(slow_llama, tmp_path):
    token = tmp_path / "drain-token"
    token.write_text(DRAIN_TOKEN + "\n")
    srv = EngineProcess(slow_llama, "--drain-grace-seconds", "1", "--max-num-seqs", "2",
                        "--drain-token-file", str(token))
    yield srv
    srv.stop()


def test_drain_finishes_streams_then_refuses(server):
    with cf.ThreadPoolExecutor(2) as pool:
        streams = [pool.submit(stream_all, server.url, LONG) for _ in range(2)]
        assert wait_for(lambda: server.metric("llmfleet_engine_requests_running") == 2)
        r = httpx.post(server.url + "/drain", headers=DRAIN)
        assert r.json()["draining"] is True and r.json()["in_flight"] == 2
        # the operator's estimate of what a short grace would cut: one entry per request in flight,
        # (400 tokens minus those generated) x the step time
        assert len(r.json()["seconds_left"]) == 2 and all(s > 0 for s in r.json()["seconds_left"])
        assert httpx.get(server.url + "/ready").status_code == 503
        # within the propagation grace new requests are still admitted (it waits for a batch slot)
        assert httpx.post(server.url + "/v1/completions", json={"prompt": "a", "max_tokens": 1},
                          timeout=60).status_code == 200
        time.sleep(1.2)
        late = httpx.post(server.url + "/v1/completions", json={"prompt": "a", "max_tokens": 1})
        assert late.status_code == 503 and late.headers["retry-after"] == "1"
        assert late.json()["error"]["code"] == "draining"
        for f in streams:
            status, lines = f.result()
            assert status == 200 and lines[-1] == "data: [DONE]"
            assert json.loads(lines[-2][len("data: "):])["choices"][0]["finish_reason"] == "length"
    assert server.metric("llmfleet_engine_draining") == 1
    assert httpx.get(server.url + "/drain").json() == {"draining": True, "accepting": False, "in_flight": 0,
                                                       "seconds_left": []}


def test_sigterm_refuses_new_finishes_in_flight_and_exits(server):
    with cf.ThreadPoolExecutor(1) as pool:
        stream = pool.submit(stream_all, server.url, LONG)
        assert wait_for(lambda: server.metric("llmfleet_engine_requests_running") == 1)
        server.proc.send_signal(signal.SIGTERM)
        status, lines = stream.result()
    assert status == 200 and lines[-1] == "data: [DONE]"
    assert server.proc.wait(timeout=30) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/health")


def test_sigterm_when_idle_exits_at_once(server):
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=15) == 0


def test_client_disconnect_aborts_and_frees_blocks(server):
    # streaming: read the first chunk, then hang up
    with httpx.stream("POST", server.url + "/v1/completions", json=LONG, timeout=30) as r:
        lines = r.iter_lines()  # keep a reference: a collected iterator closes the connection
        next(lines)
        assert wait_for(lambda: server.metric("llmfleet_engine_requests_running") == 1)
    # non-streaming: give up while the request is running
    with pytest.raises(httpx.TimeoutException):
        httpx.post(server.url + "/v1/completions", json={**LONG, "stream": False}, timeout=0.3)
    assert wait_for(lambda: server.metric("llmfleet_engine_requests_running") == 0, timeout=10)
    assert server.metric("llmfleet_engine_kv_cache_usage_ratio") == 0.0
    assert server.metric('llmfleet_engine_requests_finished_total{finish_reason="abort"}') == 2
    assert server.metric('llmfleet_engine_requests_finished_total{finish_reason="length"}') == 0
    # and the server still serves
    assert httpx.post(server.url + "/v1/completions", json={"prompt": "a", "max_tokens": 2}).status_code == 200
    # a disconnect is logged as one (status 499), not as "Exception in ASGI application"
    assert "Traceback" not in server.output() and '"status": 499' in server.output()


def test_a_stream_whose_client_leaves_while_queued_is_aborted_before_it_runs(server):
    """Clients that time out and retry under load leave streams behind in the queue: each must go
    at once, not hold a queue place and then cost a prefill when its turn comes."""
    with httpx.stream("POST", server.url + "/v1/completions", json=LONG, timeout=30) as a, \
            httpx.stream("POST", server.url + "/v1/completions", json=LONG, timeout=30) as b:
        lines = [a.iter_lines(), b.iter_lines()]  # both batch slots (--max-num-seqs 2) busy
        for it in lines:
            next(it)
        body = json.dumps(LONG).encode()
        with socket.create_connection(("127.0.0.1", server.port)) as queued:
            queued.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body) + body)
            assert wait_for(lambda: server.metric("llmfleet_engine_requests_waiting") == 1)
        assert wait_for(lambda: server.metric("llmfleet_engine_requests_waiting") == 0, timeout=20)
        assert server.metric("llmfleet_engine_requests_running") == 2  # gone from the queue, not run
        assert server.metric('llmfleet_engine_requests_finished_total{finish_reason="abort"}') == 1
    assert wait_for(lambda: server.metric("llmfleet_engine_kv_cache_usage_ratio") == 0.0, timeout=10)
    assert "Traceback" not in server.output()


def test_bounded_queue_answers_503_with_retry_after(slow_llama):
    srv = EngineProcess(slow_llama, "--max-num-seqs", "1", "--max-waiting", "2")
    try:
        with cf.ThreadPoolExecutor(6) as pool:
            futs = [pool.submit(stream_all, srv.url, LONG) for _ in range(6)]
            statuses = sorted(f.result()[0] for f in futs)
        assert statuses.count(200) >= 2 and 503 in statuses, statuses
        # every 503 was one queue-full rejection, counted once
        assert srv.metric('llmfleet_engine_requests_rejected_total{reason="queue_full"}') == statuses.count(503)
    finally:
        srv.stop()


def test_api_keys_and_rate_limits(tiny_llama, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# team keys\nsk-alpha\nsk-beta\n")
    srv = EngineProcess(tiny_llama, "--api-key-file", str(keys), "--rate-limit-tokens-per-minute", "60")
    try:
        body = {"prompt": "hello", "max_tokens": 10}
        assert httpx.post(srv.url + "/v1/completions", json=body).status_code == 401
        bad = httpx.post(srv.url + "/v1/completions", json=body, headers={"Authorization": "Bearer sk-nope"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
        alpha = {"Authorization": "Bearer sk-alpha"}
        codes = [httpx.post(srv.url + "/v1/completions", json=body, headers=alpha).status_code for _ in range(6)]
        assert codes[0] == 200 and codes[-1] == 429, codes  # ~11-12 tokens each against 60 per minute
        limited = httpx.post(srv.url + "/v1/completions", json=body, headers=alpha)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        # buckets are per key
        beta = httpx.post(srv.url + "/v1/completions", json=body, headers={"Authorization": "Bearer sk-beta"})
        assert beta.status_code == 200
        # probes stay open for the kubelet
        assert httpx.get(srv.url + "/ready").status_code == 200
        assert httpx.get(srv.url + "/metrics").status_code == 200
    finally:
        srv.stop()


@pytest.mark.parametrize("breakage,needle", [
    (lambda d: (d / "config.json").unlink(), "config.json: missing"),
    (lambda d: (d / "config.json").write_text("{not json"), "config.json: not valid JSON"),
    (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json: missing"),
    (lambda d: (d / "model.safetensors").unlink(), "no model.safetensors"),
    (lambda d: (d / "model.safetensors").write_bytes(b"garbage"), "model.safetensors: cannot read"),
], ids=["no-config", "bad-config", "no-tokenizer", "no-weights", "corrupt-weights"])
def test_bad_model_directory_fails_at_start_naming_the_file(tiny_llama, tmp_path, breakage, needle):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_llama, model)
    breakage(model)
    proc = subprocess.run([sys.executable, "-m", "llmfleet.engine.cli", "serve", "--model", str(model),
                           "--port", "0", "--host", "127.0.0.1", "--threads", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert needle in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def _catches_sigterm(pid: int) -> bool:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def _answers(url: str) -> bool:
    try:
        httpx.get(url + "/health", timeout=0.5)
        return True
    except httpx.HTTPError:
        return False


def test_sigterm_while_starting_is_acted_on_once_serving(slow_llama):
    # In a container the engine is PID 1, which never gets a signal it has no handler for: a pod
    # deleted while its engine starts must still see the engine exit, not serve until SIGKILL.
    srv = EngineProcess(slow_llama, wait=False)
    try:
        assert wait_for(lambda: srv.proc.poll() is not None or _catches_sigterm(srv.proc.pid), every=0.01)
        assert not _answers(srv.url), "the engine served before it caught SIGTERM"
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=60) == 0, srv.output()
        out = srv.output()
        assert "signal received" in out and '"exited"' in out, out
    finally:
        srv.stop()
