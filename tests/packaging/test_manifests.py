"""The packaged copies stay in step with their sources, the kustomize base builds, the
examples are valid objects of the generated CRDs, and the Argo CD Application is sound.

When a test here fails on drift, `make chart-crds` (python3 manifests/sync.py) rewrites the copies.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging_helpers import CHART, ROOT, sync

KINDS = {"LLMService", "AutoscalePolicy", "SpotPool"}
EXAMPLES = ROOT / "manifests" / "examples"
APPLICATION = ROOT / "manifests" / "argocd" / "application.yaml"


def source_crds() -> dict[str, dict]:
    """kind → CRD, from crds/ (written by `make crds` from operator/api)."""
    crds = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "crds").glob("*.yaml"))]
    return {c["spec"]["names"]["kind"]: c for c in crds}


def test_crds_exist_for_every_kind():
    assert set(source_crds()) == KINDS, "run `make crds` (operator/api) and then `make chart-crds`"


def test_chart_and_base_carry_the_same_crds(helm):
    drift = [
        str(p.relative_to(ROOT))
        for p, text in sync.expected_files().items()
        if not p.exists() or p.read_text() != text
    ]
    drift += [str(p.relative_to(ROOT)) for p in sync.stale_files()]
    assert not drift, f"out of date (run `make chart-crds`): {drift}"


def test_chart_ships_kopf_peering_crds_next_to_the_api_crds():
    names = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert names == sorted([*sync.source_crds(), "kopf.dev_peerings.yaml"])
    peering = list(yaml.safe_load_all((CHART / "crds" / "kopf.dev_peerings.yaml").read_text()))
    assert {c["metadata"]["name"] for c in peering} == {
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }


def test_kustomize_base_builds(kubectl):
    done = subprocess.run(
        [str(kubectl), "kustomize", str(ROOT / "manifests" / "base")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    kinds = [d["kind"] for d in docs]
    for kind in ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"):
        assert kind in kinds, kinds
    crd_kinds = {d["spec"]["names"]["kind"] for d in docs if d["kind"] == "CustomResourceDefinition"}
    assert crd_kinds == set(source_crds())
    for doc in docs:
        if doc["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
                               "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
            # the one exception: reading Events about Nodes where the API server stores them
            where = "default" if doc["metadata"]["name"].endswith("-node-events") else "llmfleet-system"
            assert doc["metadata"]["namespace"] == where, doc["metadata"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kustomize"


def strict(schema: dict) -> dict:
    """The CRD schema as the API server applies it to an example: a field the schema does not
    declare would be pruned silently (and `kubectl diff` would show it forever), so refuse it."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def schema_of(kind: str) -> dict:
    crd = source_crds()[kind]
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    return strict(version["schema"]["openAPIV3Schema"])


def example_paths() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yaml"))


def test_one_example_per_kind():
    kinds = sorted(yaml.safe_load(p.read_text())["kind"] for p in example_paths())
    assert kinds == sorted(KINDS)


@pytest.mark.parametrize("path", example_paths(), ids=lambda p: p.name)
def test_example_validates_against_its_crd(path):
    # OpenAPI v3.0 schemas (boolean exclusiveMinimum) are JSON Schema draft 4 in this respect.
    # CEL rules (x-kubernetes-validations) are checked by the API server in the e2e suite.
    obj = yaml.safe_load(path.read_text())
    assert obj["apiVersion"] == "llmfleet.dev/v1alpha1"
    errors = [
        f"{'.'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft4Validator(schema_of(obj["kind"])).iter_errors(obj)
    ]
    assert not errors, errors


def test_schema_check_catches_a_misspelt_field():
    obj = yaml.safe_load((EXAMPLES / "llmservice.yaml").read_text())
    obj["spec"]["model"]["servedname"] = "chat"
    assert list(jsonschema.Draft4Validator(schema_of("LLMService")).iter_errors(obj))


def test_examples_reference_each_other():
    docs = {yaml.safe_load(p.read_text())["kind"]: yaml.safe_load(p.read_text()) for p in example_paths()}
    service = docs["LLMService"]
    assert service["spec"]["model"]["uri"].startswith("file:///")
    assert service["spec"]["autoscalePolicyRef"]["name"] == docs["AutoscalePolicy"]["metadata"]["name"]
    assert "replicas" not in service["spec"]  # exactly one writer of the count
    assert docs["AutoscalePolicy"]["spec"]["metric"]["type"] == "QueueDepth"


def test_argocd_application_server_side_applies_the_chart():
    app = yaml.safe_load(APPLICATION.read_text())
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
    source = app["spec"]["source"]
    assert (ROOT / source["path"] / "Chart.yaml").exists()


def render_application_chart(helm: Path) -> subprocess.CompletedProcess:
    """The chart as Argo CD's repo server renders it: `helm template`, no cluster (a `lookup` finds nothing)."""
    app = yaml.safe_load(APPLICATION.read_text())
    values = yaml.safe_dump(app["spec"]["source"]["helm"]["valuesObject"])
    return subprocess.run(
        [
            str(helm),
            "template",
            "llmfleet",
            str(CHART),
            "--namespace",
            app["spec"]["destination"]["namespace"],
            "--values",
            "-",
        ],
        input=values,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_argocd_application_values_render(helm):
    done = render_application_chart(helm)
    assert done.returncode == 0, done.stderr


def test_argocd_sees_no_drift_between_two_renders(helm):
    """Argo CD renders the chart again on every refresh; an object whose render changes (a value made
    at random when `lookup` finds nothing) is OutOfSync for ever, and self-heal would overwrite it.
    Every such field must be in the Application's ignoreDifferences, and respected on sync."""
    app = yaml.safe_load(APPLICATION.read_text())
    first, second = (
        {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(render_application_chart(helm).stdout) if o}
        for _ in range(2)
    )
    ignored = {
        (rule["kind"], rule.get("name")): rule.get("jsonPointers", [])
        for rule in app["spec"].get("ignoreDifferences", [])
    }
    for key, obj in first.items():
        changed = sorted(k for k in set(obj) | set(second[key]) if obj.get(k) != second[key].get(k))
        for field in changed:
            assert f"/{field}" in ignored.get(key, []), f"{key} {field} differs between two renders"
    if ignored:
        assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
