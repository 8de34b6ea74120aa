"""Gateway API users: the InferencePool an LLMService renders is accepted by the real CRD,
and the operator applies it (owned by the service) once the CRD is installed.

The CRD is the extension's own, at the version e2e/bed/versions.env pins, read from its Go
module (e2e/bed/inference_crd.sh caches it; no network once cached). Not being able to get
it fails the test: skipping would hide that the pool was never checked against the schema.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from bedkit import wait_until
from kubernetes import client
from kubernetes.client.rest import ApiException
from llmfleet.operator.api.llmservice import LLMService
from llmfleet.operator.render import render_inference_pool
from llmfleet.operator.render.inference_pool import INFERENCE_POOL_CRD
from operator_support import OPERATOR_NS, llmfleet_operator_fixture  # noqa: F401  (the chart, installed for this module)

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "inference.networking.k8s.io", "v1", "inferencepools"


def inference_pool_crd() -> dict:
    out = subprocess.run(["bash", str(ROOT / "e2e" / "bed" / "inference_crd.sh")],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        pytest.fail(f"the InferencePool CRD could not be fetched: {out.stderr.strip()}", pytrace=False)
    return yaml.safe_load(Path(out.stdout.strip()).read_text())


def install_crd(cluster: Any) -> str:
    crd = inference_pool_crd()
    ext = client.ApiextensionsV1Api(cluster.api)
    try:
        ext.create_custom_resource_definition(crd)
    except ApiException as exc:
        if exc.status != 409:
            raise
    name = crd["metadata"]["name"]

    def established() -> bool:
        conds = ext.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    wait_until(f"CRD {name} established", established, timeout=60, interval=0.5)
    return name


def remove_crd(cluster: Any) -> None:
    ext = client.ApiextensionsV1Api(cluster.api)
    try:
        ext.delete_custom_resource_definition(INFERENCE_POOL_CRD)
    except ApiException as exc:
        if exc.status != 404:
            raise

    def gone() -> bool:
        try:
            ext.read_custom_resource_definition(INFERENCE_POOL_CRD)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_until(f"CRD {INFERENCE_POOL_CRD} gone", gone, timeout=60, interval=0.5)


@pytest.fixture(scope="module")
def pool_crd(cluster: Any) -> str:
    return install_crd(cluster)


def service(namespace: str, pool: dict, name: str = "chat") -> LLMService:
    return LLMService.model_validate({
        "metadata": {"name": name, "namespace": namespace, "uid": "6b1f0c0e-0000-4000-8000-0000000000aa"},
        "spec": {"model": {"uri": "file:///var/lib/llmfleet/models/tiny-chat"}, "replicas": 1, "inferencePool": pool},
    })


def test_without_the_crd_the_service_is_served_and_the_pool_follows_the_crd(
        llmfleet_operator: Any, namespace: str) -> None:
    """Given no InferencePool CRD, an LLMService asking for a pool still gets its Deployment, and a
    condition and a Warning say what is missing; once the CRD is installed, the next apply makes the pool."""
    remove_crd(llmfleet_operator)  # a reused bed may have it from an earlier run
    api = client.CustomObjectsApi(llmfleet_operator.api)
    body = {"apiVersion": "llmfleet.dev/v1alpha1", "kind": "LLMService",
            "metadata": {"name": "chat", "namespace": namespace},
            "spec": {"model": {"uri": "file:///var/lib/llmfleet/models/tiny-chat"}, "replicas": 1,
                     "inferencePool": {}}}
    api.create_namespaced_custom_object("llmfleet.dev", "v1alpha1", namespace, "llmservices", body)

    def reason() -> str | None:
        obj = api.get_namespaced_custom_object("llmfleet.dev", "v1alpha1", namespace, "llmservices", "chat")
        c = next((c for c in (obj.get("status") or {}).get("conditions") or []
                  if c["type"] == "InferencePoolReady"), None)
        return c and f"{c['status']}/{c['reason']}"

    assert wait_until("InferencePoolReady", reason, timeout=60, interval=0.5) == "False/CRDNotInstalled"
    assert client.AppsV1Api(llmfleet_operator.api).read_namespaced_deployment("chat", namespace).spec.replicas == 1
    events = llmfleet_operator.kubectl("get", "events", "-n", namespace, "--field-selector", "type=Warning")
    assert "CRDNotInstalled" in events and INFERENCE_POOL_CRD in events

    install_crd(llmfleet_operator)
    api.patch_namespaced_custom_object(  # any edit re-applies (so does the periodic re-apply)
        "llmfleet.dev", "v1alpha1", namespace, "llmservices", "chat",
        {"spec": {"inferencePool": {"endpointPickerRef": {"name": "chat-epp", "port": {"number": 9002}}}}})
    wait_until("InferencePoolReady True", lambda: reason() == "True/Applied", timeout=60, interval=0.5)
    pool = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chat")
    assert pool["spec"]["endpointPickerRef"]["name"] == "chat-epp"


@pytest.mark.parametrize("pool", [
    {},
    {"endpointPickerRef": {"name": "chat-epp", "port": {"number": 9002}}},
    {"endpointPickerRef": {"name": "chat-epp", "port": {"number": 9002}, "failureMode": "FailOpen"}},
    {"endpointPickerRef": {"name": "picker", "kind": "Picker", "group": "example.com"}},
], ids=["no-picker", "picker-service", "fail-open", "custom-kind"])
def test_the_rendered_pool_is_accepted_by_the_real_crd(cluster: Any, namespace: str, pool_crd: str,
                                                       pool: dict) -> None:
    obj = render_inference_pool(service(namespace, pool))
    obj["metadata"].pop("ownerReferences")  # its owner does not exist here; the operator scenario has one
    api = client.CustomObjectsApi(cluster.api)
    created = api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, obj)
    assert created["spec"]["selector"] == obj["spec"]["selector"]
    assert created["spec"]["targetPorts"] == [{"number": 8000}]


def test_the_operator_applies_the_pool_with_selector_port_and_owner_and_shows_the_router(
        llmfleet_operator: Any, namespace: str, pool_crd: str) -> None:
    api = client.CustomObjectsApi(llmfleet_operator.api)
    body = {"apiVersion": "llmfleet.dev/v1alpha1", "kind": "LLMService",
            "metadata": {"name": "chat", "namespace": namespace},
            "spec": {"model": {"uri": "file:///var/lib/llmfleet/models/tiny-chat"}, "replicas": 1,
                     "inferencePool": {"endpointPickerRef": {"name": "chat-epp", "port": {"number": 9002}}}}}
    svc = api.create_namespaced_custom_object("llmfleet.dev", "v1alpha1", namespace, "llmservices", body)

    def pool() -> dict | None:
        try:
            return api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chat")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    found = wait_until("the InferencePool chat", pool, timeout=60, interval=0.5)
    assert found["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "llmfleet-engine", "app.kubernetes.io/instance": "chat",
        "llmfleet.dev/service": "chat"}
    assert found["spec"]["targetPorts"] == [{"number": 8000}]
    assert found["spec"]["endpointPickerRef"]["port"] == {"number": 9002}
    owner = found["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "LLMService", "chat", svc["metadata"]["uid"], True)

    def condition() -> dict | None:
        obj = api.get_namespaced_custom_object("llmfleet.dev", "v1alpha1", namespace, "llmservices", "chat")
        return next((c for c in (obj.get("status") or {}).get("conditions") or []
                     if c["type"] == "InferencePoolReady"), None)

    cond = wait_until("the InferencePoolReady condition", condition, timeout=60, interval=0.5)
    assert (cond["status"], cond["reason"]) == ("True", "Applied")

    # kubectl get llms: the ROUTER column, the chart's llmfleet-router Service in its namespace.
    router = f"http://llmfleet-router.{OPERATOR_NS}.svc.cluster.local/v1"
    obj = api.get_namespaced_custom_object("llmfleet.dev", "v1alpha1", namespace, "llmservices", "chat")
    assert obj["status"]["router"] == {"url": router, "model": "chat"}
    header, row = llmfleet_operator.kubectl("get", "llms", "-n", namespace).rstrip().splitlines()
    start = header.index("ROUTER")  # columns are aligned: an empty cell (SPOT here) cannot shift it
    assert row[start:].split()[0] == router
