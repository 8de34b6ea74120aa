"""What the operator reads: a Secret's existence by its metadata only (never its data), lists
in pages, and no watch of tenant-writable kinds it does not need (Events elsewhere than
`default`, Secrets)."""

from __future__ import annotations

import asyncio
import json

import kopf
from fakes import NS, World, cond, sync
from llmfleet.operator.adapters.kube import LIST_PAGE_SIZE, KubeClient
from llmfleet.operator.handlers import kopf_handlers  # noqa: F401 - registers the kopf handlers


class Answer:
    def __init__(self, status: int, body: dict) -> None:
        self.status, self.reason, self.body = status, "", json.dumps(body).encode()

    def read(self) -> bytes:
        return self.body


class RecordingApi:
    """kubernetes.client.ApiClient as KubeClient uses it: answers scripted per call."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict, list]] = []

    def param_serialize(self, method, path, query_params, header_params, auth_settings, body=None):
        self.calls.append((path, dict(header_params), list(query_params)))
        return method, path, header_params, body, None

    def call_api(self, method, url, header_params, body, post_params, _request_timeout):
        return self.answers.pop(0)


def test_a_secret_is_checked_by_its_metadata_only():
    api = RecordingApi([Answer(200, {"kind": "PartialObjectMetadata", "metadata": {"name": "k"}}),
                        Answer(404, {"kind": "Status", "message": "not found"})])
    kube = KubeClient(api)
    assert asyncio.run(kube.exists("Secret", NS, "k")) is True
    assert asyncio.run(kube.exists("Secret", NS, "gone")) is False
    for _, headers, _ in api.calls:
        assert headers["Accept"].startswith("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")


def test_lists_are_read_in_pages():
    api = RecordingApi([Answer(200, {"items": [{"metadata": {"name": "a"}}], "metadata": {"continue": "t1"}}),
                        Answer(200, {"items": [{"metadata": {"name": "b"}}], "metadata": {}})])
    items = asyncio.run(KubeClient(api).list("Pod", NS, "llmfleet.dev/service=chat"))
    assert [i["metadata"]["name"] for i in items] == ["a", "b"]
    first, second = (dict(q) for _, _, q in api.calls)
    assert first["limit"] == str(LIST_PAGE_SIZE) and "continue" not in first
    assert second["continue"] == "t1" and second["labelSelector"] == "llmfleet.dev/service=chat"


def test_blocking_lists_are_read_in_pages_and_keep_the_version():
    api = RecordingApi([Answer(200, {"items": [{"n": 1}], "metadata": {"continue": "t", "resourceVersion": "7"}}),
                        Answer(200, {"items": [{"n": 2}], "metadata": {"resourceVersion": "7"}})])
    items, version = KubeClient(api).list_blocking("Event", "default", "involvedObject.kind=Node")
    assert items == [{"n": 1}, {"n": 2}] and version == "7"
    assert ("continue", "t") in api.calls[1][2]


def test_the_reconciler_never_holds_a_secrets_data():
    world = World()
    world.kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chat-key", "namespace": NS},
                    "data": {"key": "c2VjcmV0"}})
    gets: list[str] = []
    plain_get = world.kube.get

    async def get(kind, namespace, name):
        gets.append(kind)
        return await plain_get(kind, namespace, name)

    world.kube.get = get
    rec = world.reconciler()
    world.service(replicas=1, apiKeySecretRef={"name": "chat-key", "key": "key"})
    sync(world, rec)
    assert cond(world, "Ready")[1] != "SecretNotFound"
    assert "Secret" not in gets
    assert "c2VjcmV0" not in repr(rec.services[(NS, "chat")].ref_cache)


def test_no_kopf_watch_of_events_or_secrets(monkeypatch):
    for attr in ("node_events_namespace", "check_secrets", "admission", "metrics_address", "metrics_port",
                 "namespaces", "scanning_disabled", "cluster_events_namespace", "images"):
        monkeypatch.setattr(kopf_handlers.Runtime, attr, getattr(kopf_handlers.Runtime, attr))
    kopf_handlers.configure_runtime(engine_image=None, check_secrets=True, metrics_address=None, metrics_port=8080)
    watched = {h.selector.any_name for h in kopf.get_default_registry()._watching.get_all_handlers()}
    assert watched.isdisjoint({"events", "secrets"})


def test_a_secrets_existence_costs_one_metadata_read_per_minute_on_the_indexes():
    world = World()
    world.indexed = True  # production: kopf's indexes, which hold no Secret
    checks: list[str] = []
    plain_exists = world.kube.exists

    async def exists(kind, namespace, name):
        checks.append(name)
        return await plain_exists(kind, namespace, name)

    world.kube.exists = exists
    rec = world.reconciler()
    world.service(replicas=1, apiKeySecretRef={"name": "chat-key", "key": "key"})
    sync(world, rec)
    assert cond(world, "Ready") == ("False", "SecretNotFound") and checks == ["chat-key"]
    world.kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chat-key", "namespace": NS},
                    "data": {"key": "c2VjcmV0"}})
    world.advance(61)  # no Secret watch wakes the service: the next re-read asks again
    sync(world, rec)
    assert cond(world, "Ready")[1] != "SecretNotFound" and len(checks) == 2
    for _ in range(5):  # found: not asked again within the minute, whatever else wakes the service
        world.advance(5)
        rec.mark_status(NS, "chat")
        sync(world, rec)
    assert len(checks) == 2
    world.advance(60)
    rec.mark_status(NS, "chat")
    sync(world, rec)
    assert len(checks) == 3
