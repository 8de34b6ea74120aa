"""Pure rendering of an LLMService into the objects the operator applies (no cluster access).

| module        | question it answers                                              |
| ------------- | ---------------------------------------------------------------- |
| context       | what rendering needs besides the LLMService (replicas, pool, images) |
| labels        | names, labels, selectors, owner references                       |
| model_source  | where the weights come from: volume, mount, init container, path |
| engine        | how each engine kind starts, is probed and stops                 |
| pod           | the hardened pod template and its placement                      |
| drain_token   | the per-service drain credential (derived) and its Secret        |
| deployment, service, pdb | the three applied objects                             |
| inference_pool | the optional Gateway API Inference Extension InferencePool    |
"""

from .context import Capacity, Images, RenderContext
from .deployment import render_deployment
from .drain_token import derive_drain_token, drain_secret_name, render_drain_secret, uses_drain_token
from .engine import served_model_name, termination_grace_seconds
from .inference_pool import render_inference_pool, wants_inference_pool
from .labels import deployment_name, endpoint_url, selector_labels, selector_string
from .pdb import render_pdb
from .service import render_service

__all__ = [
    "Capacity",
    "Images",
    "RenderContext",
    "deployment_name",
    "derive_drain_token",
    "drain_secret_name",
    "endpoint_url",
    "render_deployment",
    "render_drain_secret",
    "render_inference_pool",
    "render_pdb",
    "render_service",
    "selector_labels",
    "selector_string",
    "served_model_name",
    "termination_grace_seconds",
    "uses_drain_token",
    "wants_inference_pool",
]
