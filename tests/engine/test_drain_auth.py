"""/drain is not for everyone: only the drain token drains (never an API key, never the peer
address: these tests run on loopback), and a drain that no SIGTERM follows heals itself."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
from engine_process import EngineProcess

TOKEN = "0123456789abcdef-drain"
KEY = "sk-inference-key"
EXPIRY = 3.0


@pytest.fixture
def srv(tiny_llama, tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "keys").write_text(KEY + "\n")
    s = EngineProcess(tiny_llama, "--drain-token-file", str(tmp_path / "token"), "--api-key-file",
                      str(tmp_path / "keys"), "--drain-grace-seconds", "0.5", "--drain-expiry-seconds", str(EXPIRY))
    s.token_file = tmp_path / "token"
    yield s
    s.stop()


def drain(srv, credential: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    return httpx.post(srv.url + "/drain", headers=headers)


def test_only_the_drain_token_drains(srv):
    for credential in (None, KEY, "not-the-token-at-all"):
        r = drain(srv, credential)
        assert r.status_code == 401, credential
        assert r.json()["error"]["type"] == "authentication_error"
        assert httpx.get(srv.url + "/ready").status_code == 200  # still serving
    assert httpx.get(srv.url + "/drain").json()["draining"] is False  # polling needs no token
    r = drain(srv, TOKEN)
    assert r.status_code == 200 and r.json()["draining"] is True
    assert httpx.get(srv.url + "/ready").status_code == 503


def test_a_drain_that_no_sigterm_follows_heals_itself(srv):
    assert drain(srv, TOKEN).status_code == 200
    assert httpx.get(srv.url + "/ready").status_code == 503

    def admitted() -> bool:
        r = httpx.post(srv.url + "/v1/completions", json={"prompt": "a", "max_tokens": 1},
                       headers={"Authorization": f"Bearer {KEY}"})
        return r.status_code == 200

    assert wait_for(lambda: httpx.get(srv.url + "/drain").json()["accepting"] is False, timeout=EXPIRY)
    assert not admitted()  # past the grace: refused
    assert wait_for(lambda: httpx.get(srv.url + "/ready").status_code == 200, timeout=EXPIRY + 10)
    assert admitted()
    assert srv.metric("llmfleet_engine_drains_expired_total") == 1
    assert srv.metric("llmfleet_engine_draining") == 0
    assert "drain expired without SIGTERM" in srv.output()


def test_the_prestop_command_drains_with_the_rotated_token_file(srv):
    def prestop(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "llmfleet.engine.cli", "drain", "--host", "127.0.0.1",
                               "--port", str(srv.port), "--wait-seconds", "0", *extra],
                              capture_output=True, text=True, timeout=60)

    refused = prestop()  # no token: refused, and the kubelet hears of it (FailedPreStopHook)
    assert refused.returncode == 1 and '"refused"' in refused.stderr
    assert httpx.get(srv.url + "/ready").status_code == 200
    # the Secret is rotated: the server reads the new token from the same file, the old one fails
    tmp = srv.token_file.with_name("token.new")
    tmp.write_text("the-new-drain-token-value\n")
    tmp.replace(srv.token_file)
    assert drain(srv, TOKEN).status_code == 401
    done = prestop("--token-file", str(srv.token_file))
    assert done.returncode == 0 and '"draining":true' in done.stdout
    assert httpx.get(srv.url + "/ready").status_code == 503


def test_without_a_token_file_drain_is_forbidden(tiny_llama):
    s = EngineProcess(tiny_llama)
    try:
        r = httpx.post(s.url + "/drain")
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
        assert httpx.get(s.url + "/ready").status_code == 200
    finally:
        s.stop()


def wait_for(pred, timeout: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    return False
