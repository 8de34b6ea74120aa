"""Discovery against a scripted API server (httpx.MockTransport): lists, watch events, 410
relists and key Secrets end up in the fleet as the proxy needs them."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
from llmfleet.router.config import RouterConfig
from llmfleet.router.discovery import Discovery
from llmfleet.router.fleet import Fleet


def llms(name, served=None, key_secret=None):
    spec = {"model": {"uri": "file:///m", **({"servedName": served} if served else {})}}
    if key_secret:
        spec["apiKeySecretRef"] = {"name": key_secret, "key": "api-key"}
    return {"metadata": {"name": name, "namespace": "team-a", "resourceVersion": "5"}, "spec": spec}


def pod(name, ip, service="chat", annotations=None, ready=True):
    return {"metadata": {"name": name, "namespace": "team-a", "resourceVersion": "6", "annotations": annotations or {},
                         "labels": {"app.kubernetes.io/name": "llmfleet-engine", "llmfleet.dev/service": service}},
            "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8000}]}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


class ApiServer:
    """Answers lists from `objects`, streams each queued watch batch once, then 410 (relist)."""

    def __init__(self):
        self.objects = {"llmservices": [llms("chat", key_secret="keys")],
                        "pods": [pod("chat-1", "10.0.0.1"), pod("chat-2", "10.0.0.2")]}
        self.watch_batches = {"llmservices": [], "pods": []}
        self.lists = {"llmservices": 0, "pods": 0}
        self.secret = {"data": {"api-key": base64.b64encode(b"k1\nk2\n").decode()}}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/v1/namespaces/team-a/secrets/keys":
            return httpx.Response(200, json=self.secret)
        kind = "pods" if path.endswith("/pods") else "llmservices"
        if kind == "pods":
            assert request.url.params["labelSelector"] == "app.kubernetes.io/name=llmfleet-engine"
        if request.url.params.get("watch") == "true":
            if self.watch_batches[kind]:
                batch = self.watch_batches[kind].pop(0)
                for event in batch:  # the store changes as the events say: a later list agrees
                    if event["type"] == "MODIFIED":
                        name = event["object"]["metadata"]["name"]
                        self.objects[kind] = [o if o["metadata"]["name"] != name else event["object"]
                                              for o in self.objects[kind]]
                lines = "\n".join(json.dumps(e) for e in batch)
                return httpx.Response(200, content=lines.encode())
            return httpx.Response(410, json={"message": "too old resource version"})
        self.lists[kind] += 1
        return httpx.Response(200, json={"metadata": {"resourceVersion": "1"}, "items": self.objects[kind]})


async def until(check, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not reached"
        await asyncio.sleep(0.01)


async def test_lists_watch_events_and_keys_reach_the_fleet():
    server = ApiServer()
    drained = pod("chat-1", "10.0.0.1", annotations={"llmfleet.dev/drain-started": "2026-01-01T00:00:00Z"})
    server.watch_batches["pods"] = [[{"type": "MODIFIED", "object": drained},
                                     {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}]]
    fleet = Fleet()
    api = httpx.AsyncClient(transport=httpx.MockTransport(server), base_url="https://api")
    discovery = Discovery(api, fleet, RouterConfig(namespaces=("team-a",)))
    task = asyncio.create_task(discovery.run())
    try:
        await until(discovery.synced)
        (service,) = fleet.services_for("chat")
        await until(lambda: fleet.keys.get(service.id) == ("k1", "k2"))
        # the drain mark came by the watch: chat-1 is out of rotation before any endpoint change
        await until(lambda: [r.pod for r in fleet.serving_replicas(service)] == ["chat-2"])
        # a 410 relists; a pod gone from the list is gone from the fleet
        server.objects["pods"] = [pod("chat-2", "10.0.0.2")]
        await until(lambda: server.lists["pods"] >= 3 and ("team-a", "chat-1") not in fleet.replicas)
        server.objects["llmservices"] = []
        await until(lambda: not fleet.services_for("chat"))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await api.aclose()


async def test_a_missing_key_secret_fails_closed():
    server = ApiServer()
    server.secret = None
    fleet = Fleet()

    def handler(request):
        if "/secrets/" in request.url.path:
            return httpx.Response(404, json={"message": "not found"})
        return server(request)

    api = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="https://api")
    discovery = Discovery(api, fleet, RouterConfig(namespaces=("team-a",)))
    task = asyncio.create_task(discovery.run())
    try:
        await until(lambda: ("team-a", "chat") in fleet.key_errors)
        assert fleet.keys[("team-a", "chat")] == ()
        assert "not found" in fleet.key_errors[("team-a", "chat")]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await api.aclose()


async def test_a_key_secret_the_router_may_not_read_leaves_the_key_to_the_engine():
    """403 on the Secret (router.readSecrets=false): not an error that refuses the service, but
    a service whose engines check the key; once the router may read it, it checks again itself."""
    server = ApiServer()
    forbidden = True

    def handler(request):
        if "/secrets/" in request.url.path and forbidden:
            return httpx.Response(403, json={"message": 'secrets "keys" is forbidden'})
        return server(request)

    fleet = Fleet()
    api = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="https://api")
    discovery = Discovery(api, fleet, RouterConfig(namespaces=("team-a",), key_refresh_seconds=0.05))
    task = asyncio.create_task(discovery.run())
    try:
        await until(lambda: ("team-a", "chat") in fleet.engine_checks_keys)
        assert ("team-a", "chat") not in fleet.keys and ("team-a", "chat") not in fleet.key_errors
        forbidden = False  # the grant arrives: the next refresh reads the keys
        await until(lambda: fleet.keys.get(("team-a", "chat")) == ("k1", "k2"))
        assert ("team-a", "chat") not in fleet.engine_checks_keys
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await api.aclose()
