"""The admin's allow-lists: host paths for file://, image prefixes, priority classes, toleration
keys. A spec outside them is Failed with reason NotAllowed naming the field, an event says so,
and nothing is rendered."""

from __future__ import annotations

import pytest
from fakes import World, status, sync
from llmfleet.operator.api.llmservice import LLMServiceSpec
from llmfleet.operator.policy import AdmissionRules, check_service

STRICT = AdmissionRules(host_path_prefixes=("/var/lib/llmfleet/models/",), image_prefixes=("registry.corp/llm/",),
                        priority_classes=("inference",), toleration_keys=("nvidia.com/gpu",))
OPEN = AdmissionRules(host_path_prefixes=("/",))  # development: any host path, no other list


def spec(uri="file:///var/lib/llmfleet/models/tiny", **fields) -> LLMServiceSpec:
    return LLMServiceSpec.model_validate({"model": {"uri": uri}, **fields})


# (case, spec, rules) → the fields refused
CASES = [
    ("a model under the allowed directory", spec(), STRICT, []),
    ("the allowed directory itself", spec("file:///var/lib/llmfleet/models"), STRICT, []),
    ("the node's /etc", spec("file:///etc"), STRICT, ["spec.model.uri"]),
    ("a sibling sharing the prefix's letters", spec("file:///var/lib/llmfleet/models-evil"), STRICT,
     ["spec.model.uri"]),
    ("climbing out with ..", spec("file:///var/lib/llmfleet/models/../../../etc"), STRICT, ["spec.model.uri"]),
    ("no host path allowed by default", spec(), AdmissionRules(), ["spec.model.uri"]),
    # not normalized: no rule spelled /proc or /tmp matches, the CRD's own included (even with every
    # host path allowed, /proc stays the CRD's to refuse, and //proc is the node's /proc)
    ("the node's /proc spelled //proc", spec("file:////proc"), OPEN, ["spec.model.uri"]),
    ("the pod's /tmp spelled /tmp/", spec("file:///tmp/"), OPEN, ["spec.model.uri"]),
    ("an empty component under the allowed directory", spec("file:///var/lib/llmfleet/models//tiny"), STRICT,
     ["spec.model.uri"]),
    ("hf:// needs no host path", spec("hf://Qwen/Qwen2.5-0.5B"), AdmissionRules(), []),
    ("pvc:// needs no host path", spec("pvc://weights/tiny"), AdmissionRules(), []),
    ("an image from the allowed registry", spec(engine={"image": "registry.corp/llm/engine:1"}), STRICT, []),
    ("an image from elsewhere", spec(engine={"image": "evil.io/llm/engine:1"}), STRICT, ["spec.engine.image"]),
    ("any image when no prefix is set", spec(engine={"image": "evil.io/x"}), OPEN, []),
    ("the default image is the operator's own", spec(), STRICT, []),
    ("an allowed PriorityClass", spec(scheduling={"priorityClassName": "inference"}), STRICT, []),
    ("system-node-critical", spec(scheduling={"priorityClassName": "system-node-critical"}), STRICT,
     ["spec.scheduling.priorityClassName"]),
    ("the GPU taint", spec(scheduling={"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}),
     STRICT, []),
    ("every taint (no key, Exists)",
     spec(scheduling={"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}, {"operator": "Exists"}]}),
     STRICT, ["spec.scheduling.tolerations[1].key"]),
    ("the control plane's taint",
     spec(scheduling={"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}),
     STRICT, ["spec.scheduling.tolerations[0].key"]),
    ("anything goes with no lists but /", spec("file:///etc", scheduling={"tolerations": [{"operator": "Exists"}],
                                                                          "priorityClassName": "x"}), OPEN, []),
]


@pytest.mark.parametrize("case, service, rules, refused", CASES, ids=[c[0] for c in CASES])
def test_allow_lists(case, service, rules, refused):
    assert [v.field for v in check_service(service, rules)] == refused


def test_a_service_outside_the_rules_fails_with_not_allowed_and_renders_nothing():
    world = World()
    rec = world.reconciler()
    world.service(model={"uri": "file:///etc"})
    sync(world, rec)
    st = status(world)
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert st["phase"] == "Failed"
    assert ready["status"] == "False" and ready["reason"] == "NotAllowed"
    assert "spec.model.uri" in ready["message"] and "/etc" in ready["message"]
    assert ("Warning", "NotAllowed") in [(t, r) for t, r, _ in world.events]
    assert not world.kube.writes("apply")  # no Deployment, Service or PDB
    sync(world, rec)  # the next sync does not repeat the event
    assert [r for _, r, _ in world.events].count("NotAllowed") == 1
