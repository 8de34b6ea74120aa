"""The Kubernetes API as the handlers need it: get, list, server-side apply, merge patches, delete.

Objects go in and out as plain dicts in wire form (camelCase, as `kubectl get -o json`),
so the pure modules and the unit tests never see client classes. Every call is the
synchronous `kubernetes` client run in a worker thread (kopf's loop must not block).

Applies are server-side under the field manager `llmfleet-operator` with force=True:
the operator is the only writer of what it renders, and a conflict (someone edited a
generated Deployment) is resolved in its favour, as a controller must. A 404 on get is
None; other API errors are raised as `KubeError` with the server's message.

`list_blocking` / `watch_blocking` are for a watch loop in a thread of its own (the Node
Events in `default`, handlers/node_events.py); kopf does every other watch.
"""

from __future__ import annotations

import asyncio
import builtins
import json
from collections.abc import Iterator
from typing import Any, Protocol

FIELD_MANAGER = "llmfleet-operator"

# kind -> (plural, namespaced); enough for what the operator reads and writes.
KINDS: dict[str, tuple[str, bool]] = {
    "Deployment": ("deployments", True),
    "Service": ("services", True),
    "PodDisruptionBudget": ("poddisruptionbudgets", True),
    "Pod": ("pods", True),
    "Secret": ("secrets", True),
    "LLMService": ("llmservices", True),
    "AutoscalePolicy": ("autoscalepolicies", True),
    "SpotPool": ("spotpools", False),
    "Node": ("nodes", False),
    "Event": ("events", True),
    "InferencePool": ("inferencepools", True),
}

API_VERSIONS = {
    "Deployment": "apps/v1",
    "Service": "v1",
    "PodDisruptionBudget": "policy/v1",
    "Pod": "v1",
    "Secret": "v1",
    "LLMService": "llmfleet.dev/v1alpha1",
    "AutoscalePolicy": "llmfleet.dev/v1alpha1",
    "SpotPool": "llmfleet.dev/v1alpha1",
    "Node": "v1",
    "Event": "v1",
    "InferencePool": "inference.networking.k8s.io/v1",
}


class KubeError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def object_path(kind: str, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
    api_version = API_VERSIONS[kind]
    plural, namespaced = KINDS[kind]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespaced:
        if not namespace:
            raise ValueError(f"{kind} is namespaced: a namespace is required")
        base += f"/namespaces/{namespace}"
    path = f"{base}/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


def _message(data: Any, default: str) -> str:
    """The API server's Status message, else the HTTP reason."""
    try:
        return str(json.loads(data).get("message") or default)
    except (TypeError, ValueError, AttributeError):
        return default


class Kube(Protocol):
    """What the handlers call; `KubeClient` talks to a cluster, the tests pass a fake."""

    async def get(self, kind: str, namespace: str | None, name: str) -> dict | None: ...

    async def list(self, kind: str, namespace: str | None, label_selector: str = "") -> list[dict]: ...

    async def apply(self, obj: dict) -> dict: ...

    async def patch(
        self, kind: str, namespace: str | None, name: str, patch: dict, subresource: str | None = None
    ) -> dict: ...

    async def delete(self, kind: str, namespace: str | None, name: str, grace_seconds: int | None = None) -> None: ...

    async def evict(self, namespace: str, name: str, grace_seconds: int) -> str: ...


class KubeClient:
    """`Kube` over a kubernetes.client.ApiClient."""

    def __init__(self, api_client: Any, request_timeout: float = 30.0):
        self.api = api_client
        self.timeout = request_timeout

    @classmethod
    def from_environment(cls) -> KubeClient:
        """In-cluster service account, else $KUBECONFIG / ~/.kube/config (as kopf's own login does)."""
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        return cls(client.ApiClient())

    def _call(self, method: str, path: str, *, body: Any = None, query: list | None = None,
              content_type: str | None = None) -> dict:
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            method, url, headers, body, post = self.api.param_serialize(
                method, path, query_params=query or [], header_params=headers, body=body,
                auth_settings=["BearerToken"],
            )
            resp = self.api.call_api(method, url, header_params=headers, body=body, post_params=post,
                                     _request_timeout=self.timeout)
            data = resp.read()
        except ApiException as exc:
            raise KubeError(exc.status or 0, _message(exc.body, exc.reason or "")) from None
        if resp.status >= 400:
            raise KubeError(resp.status, _message(data, resp.reason or ""))
        return json.loads(data) if data else {}

    async def _run(self, verb: str, *args: Any, **kwargs: Any) -> dict:
        from llmfleet.operator.metrics import API_REQUESTS

        API_REQUESTS.labels(verb=verb).inc()
        return await asyncio.to_thread(self._call, *args, **kwargs)

    async def get(self, kind: str, namespace: str | None, name: str) -> dict | None:
        try:
            return await self._run("get", "GET", object_path(kind, namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, kind: str, namespace: str | None, label_selector: str = "") -> list[dict]:
        query = [("labelSelector", label_selector)] if label_selector else []
        out = await self._run("list", "GET", object_path(kind, namespace), query=query)
        items = out.get("items") or []
        for item in items:  # list items come without apiVersion/kind
            item.setdefault("apiVersion", API_VERSIONS[kind])
            item.setdefault("kind", kind)
        return items

    async def apply(self, obj: dict) -> dict:
        meta = obj["metadata"]
        return await self._run(
            "apply",
            "PATCH",
            object_path(obj["kind"], meta.get("namespace"), meta["name"]),
            body=obj,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )

    async def patch(self, kind: str, namespace: str | None, name: str, patch: dict,
                    subresource: str | None = None) -> dict:
        return await self._run(
            "patch",
            "PATCH",
            object_path(kind, namespace, name, subresource),
            body=patch,
            query=[("fieldManager", FIELD_MANAGER)],
            content_type="application/merge-patch+json",
        )

    async def delete(self, kind: str, namespace: str | None, name: str, grace_seconds: int | None = None) -> None:
        body: dict = {"propagationPolicy": "Background"}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        try:
            await self._run("delete", "DELETE", object_path(kind, namespace, name), body=body)
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def evict(self, namespace: str, name: str, grace_seconds: int) -> str:
        """POST a policy/v1 Eviction for a pod: "Evicted", "TooManyRequests" (429: a
        PodDisruptionBudget refused it), "NotFound" (already gone) or "Error: <message>"."""
        body = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": name, "namespace": namespace},
                "deleteOptions": {"gracePeriodSeconds": grace_seconds}}
        try:
            await self._run("evict", "POST", object_path("Pod", namespace, name, "eviction"), body=body)
        except KubeError as exc:
            if exc.status == 429:
                return "TooManyRequests"
            if exc.status == 404:
                return "NotFound"
            return f"Error: HTTP {exc.status}: {exc.message}"
        return "Evicted"

    # --- list + watch, blocking: for a watch loop in a thread of its own ------------------

    def list_blocking(self, kind: str, namespace: str | None, field_selector: str = "") -> tuple[builtins.list[dict], str]:
        """The items and the list's resourceVersion (to watch from)."""
        query = [("fieldSelector", field_selector)] if field_selector else []
        out = self._call("GET", object_path(kind, namespace), query=query)
        return out.get("items") or [], str((out.get("metadata") or {}).get("resourceVersion") or "")

    def watch_blocking(self, kind: str, namespace: str | None, *, field_selector: str = "",
                       resource_version: str = "", timeout_seconds: int = 300) -> Iterator[dict]:
        """Watch events (`{"type", "object"}`, bookmarks included) until the server ends the watch
        after `timeout_seconds`; an ERROR event (410 Gone: the version is too old) is yielded too."""
        from kubernetes.client.exceptions import ApiException

        query = [("watch", "true"), ("allowWatchBookmarks", "true"), ("timeoutSeconds", str(timeout_seconds))]
        if field_selector:
            query.append(("fieldSelector", field_selector))
        if resource_version:
            query.append(("resourceVersion", resource_version))
        try:
            method, url, headers, body, post = self.api.param_serialize(
                "GET", object_path(kind, namespace), query_params=query,
                header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
            )
            resp = self.api.call_api(method, url, header_params=headers, body=body, post_params=post,
                                     _request_timeout=(self.timeout, timeout_seconds + 30))
        except ApiException as exc:
            raise KubeError(exc.status or 0, _message(exc.body, exc.reason or "")) from None
        raw = resp.response  # urllib3's response, not read yet: the watch streams
        try:
            if resp.status >= 400:
                raise KubeError(resp.status, _message(raw.read(), resp.reason or ""))
            pending = b""
            for chunk in raw.stream(amt=None, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
            if pending.strip():
                yield json.loads(pending)
        finally:
            raw.release_conn()
