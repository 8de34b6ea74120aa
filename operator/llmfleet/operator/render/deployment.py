"""The engine Deployment of an LLMService (one per capacity: `any`, or `ondemand` and `spot`).

Rolling updates surge one pod and never drop one below the count (maxUnavailable 0):
the new pod loads its model and turns ready before an old one drains, so editing engine
args rolls the fleet without failing a request. The replica count comes from the context
(fixed, autoscaler or spot split): the operator owns it, never the user's spec.
"""

from __future__ import annotations

from typing import Any

from llmfleet.operator.api.llmservice import LLMService

from .context import RenderContext
from .labels import deployment_name, deployment_selector, object_meta
from .pod import render_pod_template

# Extra time for the rollout deadline beyond the startup probe: image pull and hf:// download.
ROLLOUT_EXTRA_SECONDS = 600


def render_deployment(service: LLMService, ctx: RenderContext) -> dict[str, Any]:
    name = service.metadata.name
    meta = object_meta(service, deployment_name(name, ctx.capacity))
    meta["labels"] = {**meta["labels"], **deployment_selector(name, ctx.capacity)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": ctx.replicas,
            "selector": {"matchLabels": deployment_selector(name, ctx.capacity)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "revisionHistoryLimit": 3,
            # Past this, the Deployment reports Progressing=False/ProgressDeadlineExceeded,
            # which the status logic turns into a reason users can read.
            "progressDeadlineSeconds": service.spec.engine.startup_timeout_seconds + ROLLOUT_EXTRA_SECONDS,
            "template": render_pod_template(service, ctx),
        },
    }
