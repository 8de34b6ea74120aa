"""The node agent in the chart: absent by default; when enabled, a least-privilege DaemonSet
on spot nodes with its own ServiceAccount, bound to get/patch on nodes and nothing else."""

from __future__ import annotations

import pytest
from packaging_helpers import CHART, by_kind, render, run_helm

ON = "nodeAgent.enabled=true"

# The node agent's whole permission set: (apiGroup, resource) → verbs.
NODE_AGENT_RULES = {("", "nodes"): {"get", "patch"}}


def agent_docs(helm, *sets):
    return [d for d in render(helm, ON, *sets) if d["metadata"]["name"].endswith("node-agent")]


def test_off_by_default(helm):
    docs = render(helm)
    assert by_kind(docs, "DaemonSet") == []
    assert not [d for d in docs if "node-agent" in d["metadata"]["name"]]


@pytest.mark.parametrize(
    "sets", [[ON], [ON, "operator.watchNamespaces={team-a}", "replicaCount=2"], [ON, "rbac.create=false"]]
)
def test_lint_strict_with_the_agent(helm, sets):
    args = [a for s in sets for a in ("--set", s)]
    done = run_helm(helm, "lint", str(CHART), "--strict", *args)
    assert done.returncode == 0 and "[WARNING]" not in done.stdout, done.stdout + done.stderr


def test_rbac_is_its_own_and_only_nodes_get_patch(helm):
    docs = render(helm, ON)
    (role,) = [r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"] == "llmfleet-node-agent"]
    table: dict = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                table.setdefault((group, resource), set()).update(rule["verbs"])
    assert table == NODE_AGENT_RULES
    (binding,) = [
        b for b in by_kind(docs, "ClusterRoleBinding") if b["roleRef"]["name"] == "llmfleet-node-agent"
    ]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "llmfleet-node-agent", "namespace": "llmfleet-system"}
    ]
    # No other binding hands the agent's role out, and the operator's roles do not gain node patch.
    others = [
        b for b in by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding") if b is not binding
    ]
    assert all(s["name"] != "llmfleet-node-agent" for b in others for s in b["subjects"])
    operator_roles = [r for r in by_kind(docs, "ClusterRole") if r is not role]
    assert all(
        "patch" not in rule["verbs"]
        for r in operator_roles
        for rule in r["rules"]
        if "nodes" in rule["resources"]
    )


def test_daemonset_runs_on_spot_nodes_with_least_privilege(helm):
    (ds,) = by_kind(render(helm, ON), "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "llmfleet-node-agent"
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["nodeSelector"] == {"karpenter.sh/capacity-type": "spot"}
    tolerated = {t["key"] for t in spec["tolerations"]}
    assert {
        "llmfleet.dev/interruption",
        "aws-node-termination-handler/spot-itn",
        "aws-node-termination-handler/rebalance-recommendation",
        "karpenter.sh/disrupted",
    } <= tolerated
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    assert container["command"] == ["llmfleet-operator"]
    assert container["args"] == ["node-agent", "--imds-url=http://169.254.169.254", "--interval=5"]
    assert container["env"] == [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    ]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]} and "privileged" not in sc
    assert "ports" not in container and "volumes" not in spec
    # Its pods are not selected by the operator's Deployment or Service.
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "node-agent"


def test_values_reach_the_daemonset(helm):
    (ds,) = by_kind(
        render(
            helm,
            ON,
            "nodeAgent.intervalSeconds=2",
            "nodeAgent.imdsUrl=http://127.0.0.1:1338",
            "nodeAgent.nodeSelector.eks\\.amazonaws\\.com/capacityType=SPOT",
            "nodeAgent.priorityClassName=system-node-critical",
        ),
        "DaemonSet",
    )
    spec = ds["spec"]["template"]["spec"]
    assert spec["containers"][0]["args"][1:] == ["--imds-url=http://127.0.0.1:1338", "--interval=2"]
    assert spec["nodeSelector"]["eks.amazonaws.com/capacityType"] == "SPOT"
    assert spec["priorityClassName"] == "system-node-critical"


@pytest.mark.parametrize(
    "bad", ["nodeAgent.intervalSeconds=0", "nodeAgent.imdsUrl=169.254.169.254", "nodeAgent.typo=1"]
)
def test_schema_rejects_bad_values(helm, bad):
    done = run_helm(helm, "template", "llmfleet", str(CHART), "--set", ON, "--set", bad)
    assert done.returncode != 0 and "schema" in done.stderr.lower(), done.stderr


def test_without_rbac_create_the_agent_keeps_its_service_account(helm):
    docs = agent_docs(helm, "rbac.create=false")
    assert sorted(d["kind"] for d in docs) == ["DaemonSet", "ServiceAccount"]
