"""The Helm chart: lint and template clean across its value combinations, least-privilege RBAC,
a hardened operator Deployment, and standalone vs peered operation."""

from __future__ import annotations

import pytest
from llmfleet.operator.handlers.scope import scanning_disabled
from packaging_helpers import CHART, by_kind, render, run_helm

# Value combinations a user can pick; each must lint with --strict and render.
VARIANTS = {
    "defaults": [],
    "peered": ["replicaCount=2"],
    "namespaced": ["operator.watchNamespaces={team-a,team-b}"],
    "namespaced-peered": ["operator.watchNamespaces={team-a,llmfleet-system}", "replicaCount=3"],
    "namespaced-default": ["operator.watchNamespaces={team-a,default}"],
    "monitoring": [
        "metrics.serviceMonitor.enabled=true",
        "metrics.podMonitor.enabled=true",
        "prometheusRule.enabled=true",
        "grafanaDashboard.namespace=monitoring",
    ],
    "minimal": [
        "rbac.readSecrets=false",
        "grafanaDashboard.enabled=false",
        "metrics.service.enabled=false",
        "serviceAccount.create=false",
        "serviceAccount.name=ops",
    ],
}

# The operator's whole permission set with default values: (apiGroup, resource) → verbs.
# A change here is a change to what the operator may do in every cluster: review it as such.
EXPECTED_RULES = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    ("llmfleet.dev", "spotpools"): {"get", "list", "watch", "patch"},
    ("llmfleet.dev", "spotpools/status"): {"patch"},
    ("", "nodes"): {"get", "list", "watch"},
    ("llmfleet.dev", "llmservices"): {"get", "list", "watch", "patch"},
    ("llmfleet.dev", "autoscalepolicies"): {"get", "list", "watch", "patch"},
    ("llmfleet.dev", "llmservices/status"): {"patch"},
    ("llmfleet.dev", "autoscalepolicies/status"): {"patch"},
    ("llmfleet.dev", "llmservices/finalizers"): {"update"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "services"): {"get", "list", "watch", "create", "patch"},
    ("policy", "poddisruptionbudgets"): {"get", "list", "watch", "create", "patch"},
    ("inference.networking.k8s.io", "inferencepools"): {"create", "patch", "delete"},  # spec.inferencePool
    ("", "pods"): {"get", "list", "watch", "patch", "delete"},  # delete: a spot drain past its last safe moment
    ("", "pods/eviction"): {"create"},
    ("", "events"): {"create", "patch", "list", "watch"},  # list/watch: Karpenter's Events on Nodes
    ("events.k8s.io", "events"): {"create", "patch"},
    ("", "secrets"): {"get", "list", "watch", "create", "patch"},  # create/patch: the drain-token Secrets
}


def rules_of(docs: list[dict]) -> dict[tuple[str, str], set[str]]:
    table: dict[tuple[str, str], set[str]] = {}
    for role in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    table.setdefault((group, resource), set()).update(rule["verbs"])
    return table


def operator_only(docs: list[dict]) -> list[dict]:
    """The chart's objects without the router's (tests/packaging/test_router_chart.py has those)."""
    return [d for d in docs if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") != "router"]


def operator_container(docs: list[dict]) -> dict:
    (deployment,) = by_kind(operator_only(docs), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("name", list(VARIANTS))
def test_helm_lint_strict_is_clean(helm, name):
    sets = [a for s in VARIANTS[name] for a in ("--set", s)]
    done = run_helm(helm, "lint", str(CHART), "--strict", *sets)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout, done.stdout


@pytest.mark.parametrize("name", list(VARIANTS))
def test_template_renders_objects_that_parse(helm, name):
    docs = render(helm, *VARIANTS[name])
    assert by_kind(docs, "Deployment")
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], doc
        # Every object the chart installs is findable by the chart's labels.
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "llmfleet", doc["metadata"]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_rbac_has_no_wildcards(helm, name):
    for role in by_kind(render(helm, *VARIANTS[name]), "ClusterRole") + by_kind(
        render(helm, *VARIANTS[name]), "Role"
    ):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], (role["metadata"]["name"], rule)
            assert "resourceNames" not in rule or "*" not in rule["resourceNames"]
            assert "nonResourceURLs" not in rule, rule


def test_rbac_grants_exactly_the_documented_verbs(helm):
    assert rules_of(render(helm)) == EXPECTED_RULES


def test_rbac_without_secrets_access(helm):
    docs = render(helm, "rbac.readSecrets=false")
    assert rules_of(docs)[("", "secrets")] == {"create", "patch"}  # the drain-token Secrets, never read
    # ...and the operator is told not to watch them (a forbidden watch would retry forever).
    assert "--no-secret-check" in operator_container(docs)["args"]
    assert "--no-secret-check" not in operator_container(render(helm))["args"]


def test_namespaced_install_binds_roles_only_in_watched_namespaces(helm):
    docs = operator_only(render(helm, "operator.watchNamespaces={team-a,team-b}"))
    cluster_bound = {b["roleRef"]["name"] for b in by_kind(docs, "ClusterRoleBinding")}
    assert cluster_bound == {"llmfleet-cluster-scoped"}
    bindings = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in by_kind(docs, "RoleBinding")}
    assert bindings == {
        ("team-a", "llmfleet-namespaced"),
        ("team-b", "llmfleet-namespaced"),
        ("team-a", "llmfleet-secrets"),
        ("team-b", "llmfleet-secrets"),
        # kopf posts SpotPool events into the operator's own namespace.
        ("llmfleet-system", "llmfleet-events"),
        # Events about Nodes (Karpenter's spot notices) are stored in default, which is not watched.
        ("default", "llmfleet-node-events"),
    }
    args = operator_container(docs)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args and "--all-namespaces" not in args
    assert "--node-events-namespace=default" in args


@pytest.mark.parametrize("watch, crds", [
    ("", True),  # all namespaces: kopf scans, and watches CRDs to notice new ones
    ("{team-a,team-b}", False),  # names (the schema admits nothing else): no scanning, CRDs go unread
])
def test_crds_are_readable_only_when_kopf_scans_for_them(helm, watch, crds):
    docs = render(helm, *([f"operator.watchNamespaces={watch}"] if watch else []))
    assert (("apiextensions.k8s.io", "customresourcedefinitions") in rules_of(docs)) is crds
    args = operator_container(docs)["args"]
    names = [a.removeprefix("--namespace=") for a in args if a.startswith("--namespace=")]
    assert scanning_disabled(names) is (not crds)  # the chart and the operator decide alike


def _node_events_roles(docs: list[dict]) -> list[dict]:
    return [r for r in by_kind(docs, "Role") if r["metadata"]["name"] == "llmfleet-node-events"]


def test_node_events_are_readable_where_they_are_stored_and_nowhere_else(helm):
    docs = render(helm, "operator.watchNamespaces={team-a,team-b}")
    (role,) = _node_events_roles(docs)
    assert role["metadata"]["namespace"] == "default"
    assert rules_of([role]) == {("", "events"): {"list", "watch"}}
    (binding,) = [b for b in by_kind(docs, "RoleBinding") if b["metadata"]["name"] == "llmfleet-node-events"]
    assert binding["metadata"]["namespace"] == "default"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "llmfleet-node-events"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "llmfleet", "namespace": "llmfleet-system"}]

    # Another namespace for them: the Role goes there, and the operator is told.
    docs = render(helm, "operator.watchNamespaces={team-a}", "operator.nodeEventsNamespace=kube-events")
    assert [r["metadata"]["namespace"] for r in _node_events_roles(docs)] == ["kube-events"]
    assert "--node-events-namespace=kube-events" in operator_container(docs)["args"]


@pytest.mark.parametrize("settings", [
    [],  # all namespaces: the namespaced ClusterRole (events list/watch) is bound cluster-wide
    ["operator.watchNamespaces={team-a,default}"],  # default is watched: its RoleBinding covers it
    ["operator.watchNamespaces={team-a}", "operator.nodeEventsNamespace="],  # turned off
])
def test_no_node_events_role_when_not_needed(helm, settings):
    docs = render(helm, *settings)
    assert _node_events_roles(docs) == []
    args = operator_container(docs)["args"]
    if not settings:
        assert not any(a.startswith("--node-events-namespace") for a in args)


def test_one_replica_runs_standalone_and_recreates(helm):
    docs = operator_only(render(helm))
    (deployment,) = by_kind(docs, "Deployment")
    args = operator_container(docs)["args"]
    assert args[0] == "run" and "--standalone" in args and "--all-namespaces" in args
    assert not any(a.startswith("--peering") for a in args)
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not [d for d in docs if d["apiVersion"].startswith("kopf.dev/")]


def test_two_replicas_peer_cluster_wide(helm):
    docs = operator_only(render(helm, "replicaCount=2"))
    (deployment,) = by_kind(docs, "Deployment")
    args = operator_container(docs)["args"]
    assert "--peering=llmfleet" in args and "--standalone" not in args
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    (peering,) = by_kind(docs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "llmfleet"
    assert rules_of(docs)[("kopf.dev", "clusterkopfpeerings")] == {"get", "list", "watch", "patch"}
    assert ("kopf.dev", "kopfpeerings") not in rules_of(docs)


def test_peered_namespaced_install_has_a_peering_per_namespace(helm):
    docs = render(helm, "replicaCount=2", "operator.watchNamespaces={team-a,team-b}")
    assert {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in by_kind(docs, "KopfPeering")} == {
        ("team-a", "llmfleet"),
        ("team-b", "llmfleet"),
    }
    assert not by_kind(docs, "ClusterKopfPeering")
    assert rules_of(docs)[("kopf.dev", "kopfpeerings")] == {"get", "list", "watch", "patch"}


def test_operator_pod_is_hardened_and_probed(helm):
    docs = operator_only(render(helm))
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = operator_container(docs)
    assert container["image"] == "ghcr.io/llmfleet/llmfleet:0.1.0"
    assert container["command"] == ["llmfleet-operator"]
    assert "--liveness=http://$(POD_IP):8081/healthz" in container["args"]
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in container["env"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 8080, "health": 8081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    (service,) = by_kind(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_monitoring_objects_are_off_by_default(helm):
    kinds = {d["kind"] for d in render(helm)}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def test_monitoring_objects_when_enabled(helm):
    docs = operator_only(render(helm, *VARIANTS["monitoring"]))
    (sm,) = by_kind(docs, "ServiceMonitor")
    assert (
        sm["spec"]["endpoints"][0]["port"] == "metrics" and sm["spec"]["endpoints"][0]["honorLabels"] is True
    )
    (pm,) = by_kind(docs, "PodMonitor")
    assert pm["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "llmfleet-engine"}
    endpoint = pm["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    assert {r["targetLabel"] for r in endpoint["relabelings"]} == {"llmfleet_service", "llmfleet_capacity"}
    (rule,) = by_kind(docs, "PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == {
        "LLMFleetQueueGrowingWithoutScaleUp",
        "LLMFleetHighTimeToFirstToken",
        "LLMFleetKVCacheNearlyFull",
        "LLMFleetEnginePodsNotReady",
        "LLMFleetOperatorReconcileErrors",
    }
    (dashboard,) = by_kind(docs, "ConfigMap")
    assert dashboard["metadata"]["namespace"] == "monitoring"


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("replicaCont=2", "additional properties 'replicaCont' not allowed"),
        ("operator.watchNamespace={team-a}", "additional properties 'watchNamespace' not allowed"),
        ("prometheusRule.kvCacheUsageRatio=2", "maximum"),
        ("operator.logFlag=--loud", "operator/logFlag"),
        ("operator.nodeEventsNamespace=Default_NS", "operator/nodeEventsNamespace"),
    ],
)
def test_values_schema_refuses_misspelt_or_impossible_values(helm, setting, complaint):
    done = run_helm(helm, "template", "llmfleet", str(CHART), "--set", setting)
    assert done.returncode != 0 and complaint in done.stderr, done.stderr


def _drain_key_volume(docs: list[dict]) -> dict:
    (deployment,) = by_kind(operator_only(docs), "Deployment")
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    return next(v for v in volumes if v["name"] == "drain-key")


def test_the_operator_gets_a_random_drain_key_of_its_own(helm):
    docs = render(helm)
    (secret,) = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"].endswith("-drain-key")]
    key = secret["data"]["drain-key"]
    assert len(key) >= 32 and key != by_kind(render(helm), "Secret")[0]["data"]["drain-key"]  # random per install
    assert _drain_key_volume(docs)["secret"]["secretName"] == secret["metadata"]["name"]
    env = {e["name"]: e.get("value") for e in operator_container(docs)["env"]}
    mount = next(m for m in operator_container(docs)["volumeMounts"] if m["name"] == "drain-key")
    assert env["LLMFLEET_DRAIN_KEY_FILE"] == mount["mountPath"] + "/drain-key" and mount["readOnly"]


def test_a_drain_key_secret_of_ones_own_is_mounted_and_none_is_made(helm):
    docs = render(helm, "operator.drainKeySecret=my-drain-key")
    assert not [s for s in by_kind(docs, "Secret") if "drain-key" in s["metadata"]["name"]]
    assert _drain_key_volume(docs)["secret"]["secretName"] == "my-drain-key"
