"""Golden files: the exact objects an LLMService renders to, for a reviewer to read as YAML.

UPDATE_GOLDEN=1 python3 -m pytest tests/operator/test_render_golden.py rewrites them;
review the diff like any other change.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest
import yaml
from llmfleet.operator.api.llmservice import LLMService
from llmfleet.operator.api.spotpool import SpotPoolSpec
from llmfleet.operator.render import (
    RenderContext,
    derive_drain_token,
    render_deployment,
    render_drain_secret,
    render_inference_pool,
    render_pdb,
    render_service,
    uses_drain_token,
    wants_inference_pool,
)

GOLDEN = Path(__file__).parent / "golden"
DRAIN_KEY = b"a drain key for the golden files only"

POOL = SpotPoolSpec.model_validate(
    {
        "spot": {
            "nodeSelector": {"karpenter.sh/capacity-type": "spot"},
            "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
        },
        "onDemand": {"nodeSelector": {"karpenter.sh/capacity-type": "on-demand"}},
    }
)

# case name → (LLMService manifest, the render contexts of its Deployments)
CASES = {
    "file-embedded": (
        """
        metadata: {name: tiny, namespace: demo, uid: 6b1f0c0e-0000-4000-8000-000000000001}
        spec:
          model: {uri: "file:///var/lib/llmfleet/models/tiny-llama"}
          replicas: 2
          resources: {cpu: 2, memory: 4Gi}
        """,
        [RenderContext(replicas=2)],
    ),
    "hf-embedded-api-key": (
        """
        metadata: {name: chat, namespace: team-a, uid: 6b1f0c0e-0000-4000-8000-000000000002}
        spec:
          model:
            uri: hf://Qwen/Qwen2.5-0.5B-Instruct
            servedName: qwen-chat
            revision: main
            tokenSecretRef: {name: hf-token, key: token}
          engine: {kind: embedded, device: cuda, dtype: bfloat16, maxNumSeqs: 64, blockSize: 16, maxModelLen: 8192}
          resources: {gpus: 1, cpu: "4", memory: 24Gi}
          autoscalePolicyRef: {name: chat-policy}
          apiKeySecretRef: {name: chat-api-key, key: api-key}
          drainTimeoutSeconds: 300
          scheduling:
            nodeSelector: {gpu.nvidia.com/class: L4}
            tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
            priorityClassName: inference
        """,
        [RenderContext(replicas=3)],
    ),
    "vllm": (
        """
        metadata: {name: big, namespace: team-b, uid: 6b1f0c0e-0000-4000-8000-000000000003}
        spec:
          model: {uri: "pvc://model-store/llama-3.1-8b-instruct", servedName: llama-8b}
          engine: {kind: vllm, dtype: float16, maxModelLen: 16384, extraArgs: ["--enable-prefix-caching"]}
          resources: {gpus: 1, memory: 32Gi}
          replicas: 1
          apiKeySecretRef: {name: big-api-key, key: key}
        """,
        [RenderContext(replicas=1)],
    ),
    "spot": (
        """
        metadata: {name: chat, namespace: team-a, uid: 6b1f0c0e-0000-4000-8000-000000000004}
        spec:
          model: {uri: "pvc://models/qwen2.5-0.5b"}
          resources: {gpus: 1}
          replicas: 4
          spotPoolRef: {name: gpu-spot}
          scheduling:
            tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
        """,
        [
            RenderContext(replicas=1, capacity="ondemand", pool=POOL),
            RenderContext(replicas=3, capacity="spot", pool=POOL),
        ],
    ),
    "inference-pool": (
        """
        metadata: {name: chat, namespace: team-a, uid: 6b1f0c0e-0000-4000-8000-000000000005, generation: 3}
        spec:
          model: {uri: "pvc://models/qwen2.5-0.5b", servedName: chat}
          replicas: 2
          inferencePool:
            endpointPickerRef: {name: chat-epp, port: {number: 9002}, failureMode: FailOpen}
        """,
        [RenderContext(replicas=2)],
    ),
}


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data):  # noqa: ANN001
        return True


def render_case(name: str) -> str:
    manifest, contexts = CASES[name]
    service = LLMService.model_validate(yaml.safe_load(manifest))
    objects = [render_deployment(service, ctx) for ctx in contexts]
    objects += [render_service(service), render_pdb(service)]
    if wants_inference_pool(service):
        objects.append(render_inference_pool(service))
    if uses_drain_token(service):
        token = derive_drain_token(DRAIN_KEY, service.metadata.namespace, service.metadata.name)
        objects.append(render_drain_secret(service, token))
    return yaml.dump_all(objects, Dumper=_NoAliases, sort_keys=False, width=110)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name):
    path = GOLDEN / f"{name}.yaml"
    actual = render_case(name)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(actual)
    expected = path.read_text() if path.exists() else ""
    if actual != expected:
        diff = difflib.unified_diff(
            expected.splitlines(), actual.splitlines(), f"golden/{name}.yaml", "rendered", lineterm=""
        )
        pytest.fail("rendered objects differ from the golden file (UPDATE_GOLDEN=1 to accept):\n" + "\n".join(diff))
