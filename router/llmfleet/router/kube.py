"""A small async Kubernetes reader over httpx: get, list and watch, nothing that writes.

The router only reads (LLMServices, Pods, the Secrets its services name), so it needs no
more than this; credentials come from the in-cluster service account or $KUBECONFIG, loaded
by the `kubernetes` package as the operator does. The service-account token is read again
for every request (it is rotated on disk)."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import AsyncIterator

import httpx

log = logging.getLogger("llmfleet.router")


class KubeError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class _ConfigAuth(httpx.Auth):
    """The bearer token of a kubernetes.client.Configuration, asked afresh each request (its
    refresh hook re-reads the in-cluster token file)."""

    def __init__(self, configuration):
        self.configuration = configuration

    def auth_flow(self, request):
        # auth_settings() runs the refresh hook and knows where this client version keeps the
        # token (api_key["BearerToken"] now, api_key["authorization"] in older releases)
        for setting in self.configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                request.headers[setting.get("key") or "Authorization"] = setting["value"]
        yield request


def client_from_environment() -> httpx.AsyncClient:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    c = client.Configuration.get_default_copy()
    verify: ssl.SSLContext | bool = False
    if c.verify_ssl:
        verify = ssl.create_default_context(cafile=c.ssl_ca_cert) if c.ssl_ca_cert else True
    if isinstance(verify, ssl.SSLContext) and c.cert_file:
        verify.load_cert_chain(c.cert_file, c.key_file)
    return httpx.AsyncClient(base_url=c.host, verify=verify, auth=_ConfigAuth(c), trust_env=False,
                             timeout=httpx.Timeout(30.0))


async def get(api: httpx.AsyncClient, path: str) -> dict | None:
    """An object, or None on 404."""
    resp = await api.get(path)
    if resp.status_code == 404:
        return None
    if resp.status_code >= 400:
        raise KubeError(resp.status_code, _message(resp.content))
    return resp.json()


async def list_objects(api: httpx.AsyncClient, path: str, params: dict) -> tuple[list[dict], str]:
    resp = await api.get(path, params=params)
    if resp.status_code >= 400:
        raise KubeError(resp.status_code, _message(resp.content))
    body = resp.json()
    return body.get("items") or [], str((body.get("metadata") or {}).get("resourceVersion") or "")


async def watch(api: httpx.AsyncClient, path: str, params: dict, resource_version: str,
                timeout_seconds: int = 300) -> AsyncIterator[dict]:
    """Watch events from `resource_version` until the server ends the watch; bookmarks are
    yielded too. 410 Gone (too old a version) is raised as KubeError(410)."""
    query = {**params, "watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_seconds),
             "resourceVersion": resource_version}
    async with api.stream("GET", path, params=query,
                          timeout=httpx.Timeout(10.0, read=timeout_seconds + 30)) as resp:
        if resp.status_code >= 400:
            raise KubeError(resp.status_code, _message(await resp.aread()))
        async for line in resp.aiter_lines():
            if not line.strip():
                continue
            event = json.loads(line)
            if event.get("type") == "ERROR":
                status = event.get("object") or {}
                raise KubeError(int(status.get("code") or 500), str(status.get("message") or "watch error"))
            yield event


def _message(data: bytes) -> str:
    try:
        return str(json.loads(data).get("message") or data[:200])
    except (ValueError, AttributeError):
        return data[:200].decode("utf-8", errors="replace")
