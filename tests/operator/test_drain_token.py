"""The drain credential end to end on the operator's side: derived per service, held in a
Secret the pod mounts, presented by the preStop hook and by the operator's drain call."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
from llmfleet.operator.adapters.drain_key import DrainKey
from llmfleet.operator.adapters.engine_drain import call_drain
from llmfleet.operator.api.llmservice import LLMService
from llmfleet.operator.render import RenderContext, derive_drain_token, render_deployment, render_drain_secret

KEY = b"0123456789abcdef0123456789abcdef"
TOKEN_FILE = "/var/run/secrets/llmfleet-drain/token"


def service(name="chat", namespace="team-a", **spec) -> LLMService:
    return LLMService.model_validate({"metadata": {"name": name, "namespace": namespace, "uid": "u-1"},
                                      "spec": {"model": {"uri": "file:///models/tiny"}, **spec}})


def test_each_service_has_its_own_token_and_only_the_key_derives_it():
    token = derive_drain_token(KEY, "team-a", "chat")
    assert token == derive_drain_token(KEY, "team-a", "chat")  # stable: a restart needs no state
    others = {derive_drain_token(KEY, "team-b", "chat"), derive_drain_token(KEY, "team-a", "chat2"),
              derive_drain_token(KEY, "team-a\0chat", ""), derive_drain_token(b"another key of 32 bytes!!!!!!!!!",
                                                                             "team-a", "chat")}
    assert token not in others and len(others) == 4
    assert len(token) >= 32
    with pytest.raises(ValueError):
        derive_drain_token(b"short", "team-a", "chat")


def test_the_secret_is_owned_by_the_service_and_holds_the_token():
    svc = service()
    secret = render_drain_secret(svc, "the-token")
    assert secret["metadata"]["name"] == "chat-drain-token"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "u-1"  # garbage-collected with the service
    assert secret["metadata"]["labels"]["llmfleet.dev/secret"] == "drain-token"
    assert base64.b64decode(secret["data"]["token"]) == b"the-token"
    assert "stringData" not in secret  # never stored by the API server: SSA would see a change every time


def pod(svc: LLMService) -> dict:
    return render_deployment(svc, RenderContext(replicas=1))["spec"]["template"]["spec"]


def test_the_embedded_pod_mounts_the_token_and_both_the_engine_and_prestop_read_it():
    spec = pod(service())
    (container,) = spec["containers"]
    args = container["args"]
    assert args[args.index("--drain-token-file") + 1] == TOKEN_FILE
    assert int(args[args.index("--drain-expiry-seconds") + 1]) > int(args[args.index("--drain-grace-seconds") + 1])
    hook = container["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:2] == ["llmfleet-engine", "drain"] and hook[hook.index("--token-file") + 1] == TOKEN_FILE
    mount = next(m for m in container["volumeMounts"] if m["name"] == "drain-token")
    assert mount == {"name": "drain-token", "mountPath": "/var/run/secrets/llmfleet-drain", "readOnly": True}
    volume = next(v for v in spec["volumes"] if v["name"] == "drain-token")
    assert volume["secret"]["secretName"] == "chat-drain-token"
    assert "subPath" not in mount  # a directory mount: a rotated token reaches the pod


def test_vllm_has_no_drain_token():
    spec = pod(service(engine={"kind": "vllm"}))
    assert "drain-token" not in json.dumps(spec)
    assert spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"


def test_the_drain_key_is_read_from_its_file_and_reread_on_change(tmp_path):
    f = tmp_path / "drain-key"
    f.write_bytes(KEY)
    key = DrainKey(str(f))
    assert key.token("team-a", "chat") == derive_drain_token(KEY, "team-a", "chat")
    rotated = tmp_path / "new"
    rotated.write_bytes(b"a rotated drain key, long enough")
    rotated.replace(f)
    assert key.token("team-a", "chat") == derive_drain_token(b"a rotated drain key, long enough", "team-a", "chat")
    f.write_bytes(b"tiny")  # a broken rotation keeps the last good key
    assert key.token("team-a", "chat") == derive_drain_token(b"a rotated drain key, long enough", "team-a", "chat")
    with pytest.raises(ValueError, match="16 bytes"):
        DrainKey(str(f))
    # no key file (an optional Secret nobody made): a random key, stable for this process
    random_key = DrainKey(str(tmp_path / "missing"))
    assert random_key.token("team-a", "chat") == random_key.token("team-a", "chat")
    assert random_key.token("team-a", "chat") != DrainKey(None).token("team-a", "chat")


class _Engine(BaseHTTPRequestHandler):
    """An engine's /drain that accepts only its token, recording what each call presented."""

    token = "the-service-token"
    seen: list[tuple[str, str | None]] = []

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self.seen.append(("GET", self.headers.get("Authorization")))
        self._answer(200, {"draining": False, "in_flight": 0})

    def do_POST(self):  # noqa: N802
        self.seen.append(("POST", self.headers.get("Authorization")))
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self._answer(401, {"error": {"message": "invalid drain token", "type": "authentication_error",
                                         "param": None, "code": "invalid_drain_token"}})
            return
        self._answer(200, {"draining": True, "in_flight": 0})

    def log_message(self, *args):
        pass


def test_the_operator_drain_call_presents_the_token_and_polls_without_it():
    server = HTTPServer(("127.0.0.1", 0), _Engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    timeout = httpx.Timeout(5.0)
    _Engine.seen = []
    try:
        assert asyncio.run(call_drain("127.0.0.1", port, True, "the-service-token", timeout)) == {
            "draining": True, "in_flight": 0}
        assert asyncio.run(call_drain("127.0.0.1", port, True, "another-service-token", timeout)) is None
        assert asyncio.run(call_drain("127.0.0.1", port, False, "the-service-token", timeout))["draining"] is False
    finally:
        server.shutdown()
    assert _Engine.seen == [("POST", "Bearer the-service-token"), ("POST", "Bearer another-service-token"),
                            ("GET", None)]  # polling sends no credential
