"""status.router: the router endpoint and the model name `kubectl get llms` shows."""

from __future__ import annotations

import pytest
from fakes import World, status, sync
from llmfleet.operator.api.llmservice import LLMService
from llmfleet.operator.router_endpoint import ROUTER_URL_ENV, router_status, router_url_from_environment

URL = "http://llmfleet-router.llmfleet-system.svc.cluster.local/v1"


def svc(**model) -> LLMService:
    return LLMService.model_validate({"metadata": {"name": "chat", "namespace": "team-a"},
                                      "spec": {"model": {"uri": "file:///m", **model}}})


@pytest.mark.parametrize(("base", "model", "expected"), [
    (URL, {}, {"url": URL, "model": "chat"}),  # served name defaults to the service name
    (URL, {"servedName": "qwen-chat"}, {"url": URL, "model": "qwen-chat"}),
    (None, {}, None),  # no router: no block, status.endpoint only
    ("", {}, None),
])
def test_router_status(base, model, expected):
    assert router_status(base, svc(**model)) == expected


@pytest.mark.parametrize(("value", "expected"), [(URL + "/", URL), ("  ", None), (None, None)])
def test_router_url_from_environment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(ROUTER_URL_ENV, raising=False)
    else:
        monkeypatch.setenv(ROUTER_URL_ENV, value)
    assert router_url_from_environment() == expected


def test_the_service_status_names_the_router_and_the_model():
    world = World()
    world.service(replicas=1, model={"uri": "file:///models/tiny", "servedName": "tiny-chat"})
    rec = world.reconciler()
    rec.router_url = URL
    sync(world, rec, force_apply=True)
    assert status(world)["router"] == {"url": URL, "model": "tiny-chat"}
    assert status(world)["endpoint"] == "http://chat.team-a.svc/v1"  # the direct way in stays

    rec.router_url = None  # the router was turned off: the block goes
    world.advance(1)
    sync(world, rec, force_apply=True)
    assert "router" not in status(world)
