"""The chart's llmfleet-router: on by default, two replicas behind a Service named
`llmfleet-router`, a PDB, read-only RBAC of its own, scoped like the operator's."""

from __future__ import annotations

from packaging_helpers import by_kind, render


def router_objects(docs: list[dict]) -> list[dict]:
    return [d for d in docs if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "router"]


def rules(docs: list[dict]) -> dict[tuple[str, str], set[str]]:
    (role,) = by_kind(router_objects(docs), "ClusterRole")
    return {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}


def test_router_is_installed_by_default(helm):
    docs = router_objects(render(helm))
    (deployment,) = by_kind(docs, "Deployment")
    (service,) = by_kind(docs, "Service")
    (pdb,) = by_kind(docs, "PodDisruptionBudget")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["llmfleet-router"]
    assert container["image"] == "ghcr.io/llmfleet/llmfleet-operator:0.1.0"  # the operator image: no torch
    assert not any(a.startswith("--namespace") for a in container["args"])  # every namespace
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["serviceAccountName"] == "llmfleet-router"  # not the operator's account
    assert service["metadata"]["name"] == "llmfleet-router"
    assert service["metadata"]["namespace"] == "llmfleet-system"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP",
                                         "appProtocol": "http"}]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == pdb["spec"]["selector"]["matchLabels"] == selector
    assert selector["app.kubernetes.io/component"] == "router"
    assert pdb["spec"]["maxUnavailable"] == 1


def test_router_rbac_is_read_only_and_cluster_wide_by_default(helm):
    docs = render(helm)
    assert rules(docs) == {
        ("llmfleet.dev", "llmservices"): {"list", "watch"},
        ("", "pods"): {"list", "watch"},
        ("", "secrets"): {"get"},  # by name, the key Secret an LLMService names; never list
    }
    (binding,) = by_kind(router_objects(docs), "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "llmfleet-router",
                                    "namespace": "llmfleet-system"}]


def test_router_follows_the_operators_namespaces(helm):
    docs = router_objects(render(helm, "operator.watchNamespaces={team-a,team-b}"))
    assert not by_kind(docs, "ClusterRoleBinding")
    bound = {b["metadata"]["namespace"] for b in by_kind(docs, "RoleBinding") if b["roleRef"]["kind"] == "ClusterRole"}
    assert bound == {"team-a", "team-b"}
    (deployment,) = by_kind(docs, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    own = router_objects(render(helm, "operator.watchNamespaces={team-a}", "router.namespaces={team-c}"))
    assert {b["metadata"]["namespace"] for b in by_kind(own, "RoleBinding")
            if b["roleRef"]["kind"] == "ClusterRole"} == {"team-c"}


def test_router_without_secret_access_or_disabled(helm):
    assert ("", "secrets") not in rules(render(helm, "router.readSecrets=false"))
    assert router_objects(render(helm, "router.enabled=false")) == []


def test_router_metrics_are_scraped_with_the_operators(helm):
    docs = router_objects(render(helm, "metrics.serviceMonitor.enabled=true"))
    (monitor,) = by_kind(docs, "PodMonitor")
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "admin"
    assert monitor["spec"]["podMetricsEndpoints"][0]["path"] == "/metrics"


def test_the_router_service_publishes_only_the_api(helm):
    """/metrics and /demand name every tenant's services: an Ingress or Gateway in front of the
    llmfleet-router Service must not be able to expose them."""
    docs = router_objects(render(helm))
    (service,) = by_kind(docs, "Service")
    assert [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]] == [("http", "http")]
    (deployment,) = by_kind(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "admin": 9090}
    assert "--port=8080" in container["args"] and "--admin-port=9090" in container["args"]


def test_the_operator_can_find_the_routers_held_requests(helm):
    """Scale from zero: the operator is told which pods are routers, and may list them."""
    docs = render(helm)
    operator = next(d for d in by_kind(docs, "Deployment") if d not in router_objects(docs))
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LLMFLEET_ROUTER_SELECTOR"] == "app.kubernetes.io/instance=llmfleet,app.kubernetes.io/component=router"
    # all namespaces: the operator's pods rule covers the release namespace; listed ones: a Role there
    assert not by_kind(router_objects(docs), "Role")
    (role,) = by_kind(router_objects(render(helm, "operator.watchNamespaces={team-a}")), "Role")
    assert role["metadata"]["namespace"] == "llmfleet-system"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    off = render(helm, "router.enabled=false")
    operator = by_kind(off, "Deployment")[0]
    assert "LLMFLEET_ROUTER_SELECTOR" not in {e["name"] for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}


def operator_env(docs: list[dict]) -> dict[str, str | None]:
    operator = next(d for d in by_kind(docs, "Deployment") if d not in router_objects(docs))
    return {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_operator_is_told_the_router_url_for_kubectl_get_llms(helm):
    env = operator_env(render(helm, namespace="serving"))
    assert env["LLMFLEET_ROUTER_URL"] == "http://llmfleet-router.serving.svc.cluster.local/v1"
    env = operator_env(render(helm, "router.service.port=8080"))
    assert env["LLMFLEET_ROUTER_URL"] == "http://llmfleet-router.llmfleet-system.svc.cluster.local:8080/v1"
    assert "LLMFLEET_ROUTER_URL" not in operator_env(render(helm, "router.enabled=false"))
