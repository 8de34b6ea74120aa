"""The chart's RBAC is exactly what the code calls: every verb the operator uses is granted,
and every verb granted is used (or is on the short list below, each with its reason).

What the code calls is read from the code itself: the `kube.<method>("<Kind>", ...)` calls in
the operator package (an AST scan; a call whose kind is not a literal must be listed in
DYNAMIC with the kinds it can take), the blocking list/watch of the Node Event watch, and
the resources kopf's registered handlers watch or change."""

from __future__ import annotations

import ast
from collections import Counter

import kopf
from llmfleet.operator.adapters.kube import API_VERSIONS, KINDS
from llmfleet.operator.handlers import kopf_handlers  # noqa: F401 - registers the handlers
from packaging_helpers import ROOT, by_kind, render

OPERATOR = ROOT / "operator" / "llmfleet" / "operator"

# KubeClient method -> the verbs it needs on the kind's resource (evict: on pods/eviction).
VERBS = {"get": {"get"}, "exists": {"get"}, "list": {"list"}, "apply": {"create", "patch"}, "patch": {"patch"},
         "delete": {"delete"}}

# Calls whose kind is computed: (file, method) -> (how many such call sites, the kinds they take).
DYNAMIC = {
    ("handlers/observe.py", "get"): (1, {"AutoscalePolicy", "SpotPool"}),  # references, without kopf's indexes
    ("handlers/executor.py", "get"): (1, {"Deployment", "Service", "PodDisruptionBudget"}),  # the name check
    ("handlers/executor.py", "apply"): (3, {"Deployment", "Service", "PodDisruptionBudget", "Secret"}),
    ("inference_pool.py", "apply"): (1, {"InferencePool"}),
}

# Granted but not called by our code or kopf's handlers, each for a reason the code cannot show.
EXTRAS = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): ({"get", "list", "watch"}, "kopf's resource scanning"),
    ("llmfleet.dev", "llmservices/finalizers"): ({"update"}, "OwnerReferencesPermissionEnforcement: "
                                                 "blockOwnerDeletion on the children's owner references"),
    ("", "events"): ({"create"}, "kopf.event posts every decision"),
}


def resource(kind: str, subresource: str | None = None) -> tuple[str, str]:
    version = API_VERSIONS[kind]
    group = version.split("/")[0] if "/" in version else ""
    plural = KINDS[kind][0]
    return group, f"{plural}/{subresource}" if subresource else plural


def code_calls() -> dict[tuple[str, str], set[str]]:
    needed: dict[tuple[str, str], set[str]] = {}
    dynamic: Counter = Counter()
    for path in sorted(OPERATOR.rglob("*.py")):
        rel = path.relative_to(OPERATOR).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            if not (isinstance(owner, ast.Attribute) and owner.attr == "kube"
                    or isinstance(owner, ast.Name) and owner.id == "kube"):
                continue
            method = node.func.attr
            if method == "evict":
                needed.setdefault(("", "pods/eviction"), set()).add("create")
                continue
            if method not in VERBS:
                continue
            sub = next((k.value.value for k in node.keywords if k.arg == "subresource"
                        and isinstance(k.value, ast.Constant)), None)
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                kinds = {first.value}
            else:
                dynamic[(rel, method)] += 1
                kinds = DYNAMIC[(rel, method)][1]
            for kind in kinds:
                needed.setdefault(resource(kind, sub), set()).update(VERBS[method])
    assert dict(dynamic) == {k: v[0] for k, v in DYNAMIC.items()}, "a new computed-kind call: list it in DYNAMIC"
    return needed


def kopf_needs() -> dict[tuple[str, str], set[str]]:
    registry = kopf.get_default_registry()
    needed: dict[tuple[str, str], set[str]] = {}
    for reg in (registry._watching, registry._changing, registry._spawning, registry._indexing):
        for h in reg.get_all_handlers():
            needed.setdefault((h.selector.group or "", h.selector.any_name), set()).update({"list", "watch"})
    for reg in (registry._changing, registry._spawning):  # finalizer on the object, progress in status
        for h in reg.get_all_handlers():
            needed[(h.selector.group, h.selector.any_name)].add("patch")
            needed.setdefault((h.selector.group, f"{h.selector.any_name}/status"), set()).add("patch")
    return needed


def required() -> dict[tuple[str, str], set[str]]:
    need = code_calls()
    for key, verbs in kopf_needs().items():
        need.setdefault(key, set()).update(verbs)
    need.setdefault(("", "events"), set()).update({"list", "watch"})  # NodeEventWatch (list_blocking/watch)
    return need


def granted(docs: list[dict]) -> dict[tuple[str, str], set[str]]:
    """The operator's roles (the router's are its own, test_router_chart.py)."""
    table: dict[tuple[str, str], set[str]] = {}
    for role in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
        if (role["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "router":
            continue
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for res in rule["resources"]:
                    table.setdefault((group, res), set()).update(rule["verbs"])
    return table


def test_every_verb_the_code_uses_is_granted_and_every_grant_is_used(helm):
    # readSecrets on: the Secret check is part of the code; the default drops it (and the check)
    have = granted(render(helm, "rbac.readSecrets=true"))
    need = required()
    missing = {k: v - have.get(k, set()) for k, v in need.items() if v - have.get(k, set())}
    assert not missing, f"the code calls these without RBAC: {missing}"
    unused = {k: left for k, v in have.items() if (left := v - need.get(k, set()) - EXTRAS.get(k, (set(), ""))[0])}
    assert not unused, f"granted but never used: {unused}"


def test_the_scan_sees_the_calls_it_should():
    need = code_calls()
    assert need[("", "pods/eviction")] == {"create"}
    assert need[("llmfleet.dev", "spotpools/status")] == {"patch"}
    assert "get" in need[("", "secrets")]  # KubeClient.exists: a metadata GET

