"""Rendering rules, one behaviour per test; the full objects are in the golden files."""

from __future__ import annotations

import copy

import pytest
from llmfleet.operator.api.llmservice import LLMService
from llmfleet.operator.api.spotpool import SpotPoolSpec
from llmfleet.operator.render import (
    RenderContext,
    endpoint_url,
    render_deployment,
    render_pdb,
    render_service,
    selector_string,
    termination_grace_seconds,
)
from llmfleet.operator.render.model_source import model_mount

POOL = SpotPoolSpec.model_validate(
    {
        "spot": {"nodeSelector": {"pool": "spot", "zone": "a"}, "tolerations": [{"key": "spot", "operator": "Exists"}]},
        "onDemand": {"nodeSelector": {"pool": "ondemand"}},
    }
)


def service(**spec) -> LLMService:
    return LLMService.model_validate(
        {
            "metadata": {"name": "chat", "namespace": "team-a", "uid": "uid-1"},
            "spec": {"model": {"uri": "file:///models/tiny"}, **spec},
        }
    )


def pod_spec(svc: LLMService, ctx: RenderContext | None = None) -> dict:
    return render_deployment(svc, ctx or RenderContext(replicas=1))["spec"]["template"]["spec"]


def engine(svc: LLMService, ctx: RenderContext | None = None) -> dict:
    return pod_spec(svc, ctx)["containers"][0]


@pytest.mark.parametrize(
    "uri, model_arg, volume, mount_path",
    [
        ("file:///models/tiny", "/models/tiny", {"hostPath": {"path": "/models/tiny", "type": "Directory"}}, "/models/tiny"),
        ("pvc://store/llama/8b", "/models/llama/8b", {"persistentVolumeClaim": {"claimName": "store", "readOnly": True}}, "/models"),
        ("pvc://store", "/models", {"persistentVolumeClaim": {"claimName": "store", "readOnly": True}}, "/models"),
        ("hf://Qwen/Qwen2.5-0.5B", "/var/cache/llmfleet/models/Qwen/Qwen2.5-0.5B", None, None),
    ],
)
def test_model_uri_becomes_volume_and_model_arg(uri, model_arg, volume, mount_path):
    svc = service(model={"uri": uri})
    container = engine(svc)
    args = container["args"]
    assert args[args.index("--model") + 1] == model_arg
    volumes = {v["name"]: v for v in pod_spec(svc)["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    if volume is None:
        assert "model" not in volumes
        init = pod_spec(svc)["initContainers"][0]
        assert init["command"][-3:] == ["Qwen/Qwen2.5-0.5B", "", model_arg]
    else:
        assert {k: v for k, v in volumes["model"].items() if k != "name"} == volume
        assert mounts["model"] == {"name": "model", "mountPath": mount_path, "readOnly": True}
        assert "initContainers" not in pod_spec(svc)


def test_hf_token_reaches_only_the_download():
    svc = service(model={"uri": "hf://org/m", "tokenSecretRef": {"name": "hf", "key": "token"}})
    init = pod_spec(svc)["initContainers"][0]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}} in init["env"]
    assert all(e["name"] != "HF_TOKEN" for e in engine(svc)["env"])


@pytest.mark.parametrize("kind", ["embedded", "vllm"])
def test_every_container_is_hardened(kind):
    spec = pod_spec(service(engine={"kind": kind}, model={"uri": "hf://org/m"}))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"] + spec["initContainers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
        assert {"/tmp", "/var/cache/llmfleet"} <= writable


@pytest.mark.parametrize(
    "grace, timeout, expected",
    [(5, 120, 135), (0, 1, 11), (30, 3600, 3640)],
)
def test_termination_grace_outlasts_drain(grace, timeout, expected):
    svc = service(drainGraceSeconds=grace, drainTimeoutSeconds=timeout)
    assert termination_grace_seconds(svc.spec) == expected
    spec = pod_spec(svc)
    assert spec["terminationGracePeriodSeconds"] == expected > grace + timeout
    args = spec["containers"][0]["args"]
    assert args[args.index("--shutdown-timeout") + 1] == str(timeout)
    assert args[args.index("--drain-grace-seconds") + 1] == str(grace)


def test_embedded_prestop_drains_and_vllm_sleeps():
    assert engine(service())["lifecycle"]["preStop"]["exec"]["command"] == [
        "llmfleet-engine", "drain", "--port", "8000", "--wait-seconds", "5",
        "--token-file", "/var/run/secrets/llmfleet-drain/token",
    ]
    assert engine(service(engine={"kind": "vllm"}))["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]


@pytest.mark.parametrize("kind, ready_path", [("embedded", "/ready"), ("vllm", "/health")])
def test_probes(kind, ready_path):
    c = engine(service(engine={"kind": kind, "startupTimeoutSeconds": 905}))
    assert c["readinessProbe"]["httpGet"] == {"path": ready_path, "port": "http"}
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 905


def test_api_key_embedded_is_a_read_only_file():
    svc = service(apiKeySecretRef={"name": "keys", "key": "chat"})
    c = engine(svc)
    assert c["args"][c["args"].index("--api-key-file") + 1] == "/var/run/secrets/llmfleet/api-key"
    assert {"name": "api-key", "mountPath": "/var/run/secrets/llmfleet", "readOnly": True} in c["volumeMounts"]
    secret = next(v for v in pod_spec(svc)["volumes"] if v["name"] == "api-key")["secret"]
    assert secret["secretName"] == "keys" and secret["items"] == [{"key": "chat", "path": "api-key"}]


def test_api_key_vllm_is_an_env_var_not_an_arg():
    c = engine(service(engine={"kind": "vllm"}, apiKeySecretRef={"name": "keys", "key": "chat"}))
    assert {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "chat"}}} in c["env"]
    assert not any("api-key" in a for a in c["args"])


@pytest.mark.parametrize(
    "engine_spec, expected",
    [
        ({}, []),
        ({"dtype": "bfloat16", "maxNumSeqs": 8, "blockSize": 16, "maxModelLen": 2048},
         ["--dtype", "bfloat16", "--max-num-seqs", "8", "--block-size", "16", "--max-model-len", "2048"]),
        ({"device": "cpu"}, ["--device", "cpu"]),
    ],
)
def test_engine_flags(engine_spec, expected):
    args = engine(service(engine=engine_spec))["args"]
    flags = args[args.index("--served-model-name") + 2 : args.index("--drain-grace-seconds")]
    assert flags == expected


def test_served_name_defaults_to_the_service_name():
    for svc, name in ((service(), "chat"), (service(model={"uri": "file:///m", "servedName": "m1"}), "m1")):
        args = engine(svc)["args"]
        assert args[args.index("--served-model-name") + 1] == name


def test_extra_args_come_last():
    assert engine(service(engine={"extraArgs": ["--seed", "1"]}))["args"][-2:] == ["--seed", "1"]


@pytest.mark.parametrize(
    "resources, expected",
    [
        ({}, {"requests": {"memory": "2Gi"}, "limits": {"memory": "16Gi"}}),  # the default memory bounds
        ({"gpus": 2}, {"requests": {"memory": "2Gi", "nvidia.com/gpu": "2"},
                       "limits": {"memory": "16Gi", "nvidia.com/gpu": "2"}}),
        ({"cpu": "500m", "memory": "8Gi"}, {"requests": {"cpu": "500m", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}),
    ],
)
def test_resources(resources, expected):
    assert engine(service(resources=resources))["resources"] == expected


def test_placement_merges_scheduling_with_the_pool_and_the_pool_wins():
    svc = service(
        scheduling={
            "nodeSelector": {"pool": "mine", "gpu": "l4"},
            "tolerations": [{"key": "spot", "operator": "Exists"}, {"key": "gpu", "operator": "Exists"}],
            "priorityClassName": "inference",
        }
    )
    spot = pod_spec(svc, RenderContext(replicas=1, capacity="spot", pool=POOL))
    assert spot["nodeSelector"] == {"gpu": "l4", "pool": "spot", "zone": "a"}
    assert spot["tolerations"] == [{"key": "spot", "operator": "Exists"}, {"key": "gpu", "operator": "Exists"}]
    assert spot["priorityClassName"] == "inference"
    assert "affinity" not in spot


def test_on_demand_pods_avoid_spot_nodes():
    spec = pod_spec(service(), RenderContext(replicas=1, capacity="ondemand", pool=POOL))
    assert spec["nodeSelector"] == {"pool": "ondemand"}
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [
        {"matchExpressions": [{"key": "pool", "operator": "NotIn", "values": ["spot"]}]},
        {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]},
    ]


def test_selectors():
    svc = service()
    contexts = [RenderContext(replicas=1, capacity=c, pool=POOL) for c in ("ondemand", "spot")]
    deployments = [render_deployment(svc, ctx) for ctx in contexts]
    assert [d["metadata"]["name"] for d in deployments] == ["chat-ondemand", "chat-spot"]
    selectors = [d["spec"]["selector"]["matchLabels"] for d in deployments]
    assert selectors[0] != selectors[1]  # the two Deployments never adopt each other's pods
    service_selector = render_service(svc)["spec"]["selector"]
    assert render_pdb(svc)["spec"]["selector"]["matchLabels"] == service_selector
    for d, sel in zip(deployments, selectors, strict=True):
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert sel.items() <= labels.items() and service_selector.items() <= labels.items()
    assert selector_string("chat") == ",".join(f"{k}={v}" for k, v in sorted(service_selector.items()))
    assert render_deployment(svc, RenderContext(replicas=1))["metadata"]["name"] == "chat"


def test_owner_reference_and_namespace_on_every_object():
    svc = service()
    for obj in (render_deployment(svc, RenderContext(replicas=2)), render_service(svc), render_pdb(svc)):
        assert obj["metadata"]["namespace"] == "team-a"
        assert obj["metadata"]["ownerReferences"] == [
            {"apiVersion": "llmfleet.dev/v1alpha1", "kind": "LLMService", "name": "chat", "uid": "uid-1",
             "controller": True, "blockOwnerDeletion": True}
        ]


def test_replicas_and_rollout_strategy():
    d = render_deployment(service(replicas=7), RenderContext(replicas=3))
    assert d["spec"]["replicas"] == 3  # the context's count (autoscaler/split), not spec.replicas
    assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_service_and_pdb():
    s = render_service(service())["spec"]
    assert s["type"] == "ClusterIP" and s["ports"][0]["port"] == 80 and s["ports"][0]["targetPort"] == "http"
    assert render_pdb(service())["spec"]["maxUnavailable"] == 1
    assert endpoint_url("chat", "team-a") == "http://chat.team-a.svc/v1"


def test_rendering_is_pure():
    svc = service(model={"uri": "hf://org/m"}, apiKeySecretRef={"name": "k", "key": "k"})
    before = copy.deepcopy(svc)
    ctx = RenderContext(replicas=2, capacity="spot", pool=POOL)
    first = render_deployment(svc, ctx)
    first["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = False
    assert render_deployment(svc, ctx) != first  # no shared mutable state between calls
    assert svc == before


@pytest.mark.parametrize(
    "kwargs",
    [{"replicas": -1}, {"replicas": 1, "capacity": "spot"}, {"replicas": 1, "capacity": "any", "pool": POOL}],
)
def test_context_rejects_inconsistent_inputs(kwargs):
    with pytest.raises(ValueError):
        RenderContext(**kwargs)


def test_model_mount_rejects_unknown_schemes():
    from llmfleet.operator.api.model_source import ModelSource

    with pytest.raises(ValueError):
        model_mount(ModelSource.model_construct(uri="s3://b/m"))
