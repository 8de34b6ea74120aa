"""The router's two ports: the API port (what the Service publishes, what an Ingress exposes)
never answers /metrics or /demand, which name every namespace and service the router serves;
the admin port (pod IPs: the operator, Prometheus) never proxies a request to an engine."""

from __future__ import annotations

import pytest
from llmfleet.router.cli import parse_args
from router_fakes import open_bench


@pytest.fixture
async def bench():
    async with open_bench() as b:
        yield b


async def test_the_api_port_does_not_reveal_other_tenants(bench):
    service = bench.service(name="secret-project", served="other-model", namespace="team-b")
    await bench.engine(service)
    await bench.client.post("/v1/chat/completions", json={"model": "other-model", "messages": [
        {"role": "user", "content": "hi"}]})
    for path in ("/metrics", "/demand"):
        resp = await bench.client.get(path)
        assert resp.status_code == 404, path
        assert "team-b" not in resp.text and "other-model" not in resp.text
        assert resp.json()["error"]["message"] == f"no route GET {path}"
    # the same facts are on the admin port, for the operator and Prometheus
    metrics = (await bench.admin.get("/metrics")).text
    assert 'model="other-model"' in metrics
    assert (await bench.admin.get("/demand")).status_code == 200


async def test_the_admin_port_serves_no_api(bench):
    service = bench.service()
    fake = await bench.engine(service)
    resp = await bench.admin.post("/v1/chat/completions", json={"model": "chat", "messages": [
        {"role": "user", "content": "hi"}]})
    assert resp.status_code == 404
    assert (await bench.admin.get("/v1/models")).status_code == 404
    assert fake.requests == []  # nothing reached the engine
    # both ports answer the probes
    for client in (bench.client, bench.admin):
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/ready")).status_code == 200


def test_the_admin_port_must_be_a_port_of_its_own(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--port", "8080", "--admin-port", "8080"])
    assert "--admin-port must differ from --port" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--admin-port", "70000"])
    assert "--admin-port must be a TCP port" in capsys.readouterr().err
    assert parse_args([]).admin_port == 9090
