"""A hostile or careless client against a real engine: bodies, credentials, request ids,
sampling values, and big prompts must never hurt the other clients of the replica."""

from __future__ import annotations

import concurrent.futures as cf
import json
import socket
import threading
import time

import httpx
import pytest
from engine_process import EngineProcess

KEY = "sk-team-a"
AUTH = {"Authorization": f"Bearer {KEY}"}
BODY_TIMEOUT = 3
MAX_REQUESTS = 4


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory):
    f = tmp_path_factory.mktemp("keys") / "api-key"
    f.write_text(KEY + "\n")
    return f


@pytest.fixture(scope="module")
def srv(tiny_llama, keys_file):
    s = EngineProcess(tiny_llama, "--api-key-file", str(keys_file), "--body-read-timeout", str(BODY_TIMEOUT),
                      "--max-concurrent-requests", str(MAX_REQUESTS))
    yield s
    s.stop()


def raw(srv, head: str, body: bytes = b"", timeout: float = 30) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
    s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    return s


def read_response(s: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of one HTTP/1.1 response (Content-Length framed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(lines[0].split()[1]), json.loads(rest[:length] or b"null")


def post_head(path: str = "/v1/completions", length: int | None = None, auth: bool = True,
              chunked: bool = False) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: engine", "Content-Type: application/json"]
    if auth:
        lines.append(f"Authorization: Bearer {KEY}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    return "\n".join(lines) + "\n"


# --- bodies ------------------------------------------------------------------------------------


def test_an_oversized_content_length_is_refused_before_the_body(srv):
    with raw(srv, post_head(length=10**9)) as s:  # announces 1 GB, sends nothing
        status, body = read_response(s)
    assert status == 413 and body["error"]["code"] == "body_too_large"


def test_a_chunked_body_is_cut_off_at_the_cap(srv):
    chunk = b"x" * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    with raw(srv, post_head(chunked=True)) as s:
        stop = threading.Event()

        def send_forever():  # never ends the body: only a server that stops reading answers
            try:
                while not stop.is_set():
                    s.sendall(frame)
            except OSError:
                pass

        sender = threading.Thread(target=send_forever, daemon=True)
        sender.start()
        try:
            status, body = read_response(s)
        finally:
            stop.set()
    assert status == 413 and body["error"]["code"] == "body_too_large"


def test_no_body_is_read_before_authentication(srv):
    # a body that never comes: only a server that authenticates first can answer
    with raw(srv, post_head(length=1000, auth=False)) as s:
        status, body = read_response(s)
    assert status == 401 and body["error"]["type"] == "authentication_error"


def test_slow_bodies_are_cut_at_the_deadline_and_the_number_of_requests_is_bounded(srv):
    held = [raw(srv, post_head(length=100), b'{"prompt": ') for _ in range(MAX_REQUESTS)]
    try:
        # every slot is held by a stalled body: a further request is refused at once, OpenAI-shaped
        def refused() -> bool:
            r = httpx.post(srv.url + "/v1/completions", json={"prompt": "a", "max_tokens": 1}, headers=AUTH)
            return r.status_code == 503 and r.json()["error"]["code"] == "too_many_requests"

        assert wait_for(refused, timeout=BODY_TIMEOUT)
        assert httpx.get(srv.url + "/health").status_code == 200  # probes are never refused
        assert httpx.get(srv.url + "/ready").status_code == 200
        # the stalled bodies get 408 at the deadline (in all, not per read) ...
        for s in held:
            status, body = read_response(s)
            assert status == 408 and body["error"]["code"] == "body_timeout"
    finally:
        for s in held:
            s.close()
    # ... and their slots are free again
    assert httpx.post(srv.url + "/v1/completions", json={"prompt": "a", "max_tokens": 1},
                      headers=AUTH).status_code == 200


def wait_for(pred, timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    return False


# --- credentials ---------------------------------------------------------------------------------


def test_a_rotated_api_key_reaches_the_running_server(srv, keys_file):
    body = {"prompt": "a", "max_tokens": 1}
    tmp = keys_file.with_name("api-key.new")
    tmp.write_text("sk-rotated\n")
    tmp.replace(keys_file)  # as the kubelet swaps a Secret volume's files
    try:
        r = httpx.post(srv.url + "/v1/completions", json=body, headers={"Authorization": "Bearer sk-rotated"})
        assert r.status_code == 200
        assert httpx.post(srv.url + "/v1/completions", json=body, headers=AUTH).status_code == 401
    finally:
        tmp.write_text(KEY + "\n")
        tmp.replace(keys_file)
    assert httpx.post(srv.url + "/v1/completions", json=body, headers=AUTH).status_code == 200


# --- request ids -------------------------------------------------------------------------------


def test_two_clients_with_the_same_request_id_both_succeed(srv):
    def stream() -> tuple[int, str, list[str]]:
        with httpx.stream("POST", srv.url + "/v1/completions", timeout=60,
                          json={"prompt": "Hello", "max_tokens": 30, "ignore_eos": True, "stream": True},
                          headers={**AUTH, "X-Request-ID": "same-id"}) as r:
            return r.status_code, r.headers.get("x-request-id"), [ln for ln in r.iter_lines() if ln]

    with cf.ThreadPoolExecutor(2) as pool:
        results = [f.result() for f in [pool.submit(stream) for _ in range(2)]]
    for status, rid, lines in results:
        assert status == 200 and rid == "same-id"  # the client's id is echoed ...
        assert lines[-1] == "data: [DONE]"
        last = json.loads(lines[-2][len("data: "):])
        assert last["choices"][0]["finish_reason"] == "length"
    ids = {json.loads(lines[0][len("data: "):])["id"] for _, _, lines in results}
    assert len(ids) == 2 and not any("same-id" in i for i in ids)  # ... the server keys by its own


def test_an_unprintable_request_id_is_not_echoed(srv):
    r = httpx.post(srv.url + "/v1/completions", json={"prompt": "a", "max_tokens": 1},
                   headers={**AUTH, "X-Request-ID": "x" * 500})
    assert r.status_code == 200 and r.headers["x-request-id"] != "x" * 500


# --- sampling values -----------------------------------------------------------------------------

BAD_SAMPLING = [
    ({"seed": 2**64}, "seed"),
    ({"seed": -(2**63) - 1}, "seed"),
    ({"temperature": 1e-40}, "temperature"),
    ({"stop_token_ids": [10**9], "min_tokens": 3, "max_tokens": 5}, "stop_token_ids"),
    ({"stop_token_ids": [-1]}, "stop_token_ids"),
    ({"stop_token_ids": list(range(100))}, "stop_token_ids"),
    ({"top_k": -2}, "top_k"),
    ({"top_p": 0.0}, "top_p"),
    ({"logit_bias": {"99999999": 5}}, "logit_bias"),
    ({"max_tokens": 10**12}, "max_tokens"),
    ({"max_tokens": 512}, "max_tokens"),  # the prompt leaves less room in a 512-token context
    ({"min_tokens": 10**12}, "min_tokens"),
    ({"n": 2}, "n"),
    ({"logprobs": 3}, "logprobs"),
    ({"prompt": [10**9]}, "prompt"),
]


def test_out_of_range_sampling_values_are_refused_at_the_edge_without_hurting_a_stream(srv):
    def stream() -> list[str]:
        with httpx.stream("POST", srv.url + "/v1/completions", timeout=60, headers=AUTH,
                          json={"prompt": "Beautiful is", "max_tokens": 60, "ignore_eos": True, "stream": True}) as r:
            return [ln for ln in r.iter_lines() if ln]

    with cf.ThreadPoolExecutor(1) as pool:
        running = pool.submit(stream)
        for extra, param in BAD_SAMPLING:
            r = httpx.post(srv.url + "/v1/completions", json={"prompt": "x", **extra}, headers=AUTH, timeout=30)
            assert r.status_code == 400, (extra, r.text)
            err = r.json()["error"]
            assert err["param"] == param and err["type"] == "invalid_request_error", (extra, err)
        lines = running.result()
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2][len("data: "):])["choices"][0]["finish_reason"] == "length"
    chat = httpx.post(srv.url + "/v1/chat/completions", headers=AUTH,
                      json={"messages": [{"role": "user", "content": "hi"}], "seed": 2**64})
    assert chat.status_code == 400 and chat.json()["error"]["param"] == "seed"


# --- big prompts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path,body", [
    ("/v1/completions", lambda text: {"prompt": text, "max_tokens": 1}),
    ("/v1/chat/completions", lambda text: {"messages": [{"role": "user", "content": text}], "max_tokens": 1}),
])
def test_probes_answer_while_a_huge_prompt_is_tokenized(srv, path, body):
    text = "hello world, this is a very long prompt. " * 30000  # ~1.2 MB: seconds of tokenization
    answered: list[float] = []  # when each probe's answer came back
    big: dict = {}

    def send_big():
        r = httpx.post(srv.url + path, json=body(text), headers=AUTH, timeout=120)
        big["status"], big["code"], big["at"] = r.status_code, r.json()["error"]["code"], time.monotonic()

    sender = threading.Thread(target=send_big)
    sender.start()
    with httpx.Client(timeout=30) as probe:
        while sender.is_alive():
            assert probe.get(srv.url + "/health").status_code == 200
            answered.append(time.monotonic())
    sender.join()
    assert big["status"] == 400 and big["code"] == "context_length_exceeded"
    # The loop kept answering while the prompt was tokenized: many probes came back before the big
    # request did (blocked, the loop answers none between reading the body and refusing the prompt).
    assert sum(1 for t in answered if t < big["at"]) >= 20, len(answered)


def test_probes_answer_while_bodies_of_200000_messages_arrive(srv):
    """Each message costs at least one token, so 200,000 can never fit a 512-token context; they
    are refused by count. Validated first, each body held the event loop, probes included, for
    over a second (pydantic and json hold the GIL, so no worker thread helps)."""
    body = json.dumps({"messages": [{"role": "user", "content": "x"}] * 200_000}).encode()  # ~6.8 MB
    answers: list[httpx.Response] = []

    def send_big():
        answers.append(httpx.post(srv.url + "/v1/chat/completions", content=body, timeout=120,
                                  headers={**AUTH, "content-type": "application/json"}))

    senders = [threading.Thread(target=send_big) for _ in range(3)]
    for t in senders:
        t.start()
    with httpx.Client(timeout=2) as probe:  # the kubelet's probe gives up after timeoutSeconds
        while any(t.is_alive() for t in senders):
            assert probe.get(srv.url + "/health").status_code == 200
    for t in senders:
        t.join()
    assert [(r.status_code, r.json()["error"]["param"], r.json()["error"]["code"]) for r in answers] == [
        (400, "messages", "context_length_exceeded")] * 3
