"""status.router: where clients reach a service through llmfleet-router (the ROUTER column).

The chart tells the operator the router's base URL ($LLMFLEET_ROUTER_URL, the release
namespace's `llmfleet-router` Service); without it (router disabled, or an operator run
outside the chart) status.router is absent and status.endpoint, the service's own
Service, is the only way in. A request names the model by `status.router.model`.
"""

from __future__ import annotations

import os

from llmfleet.operator.api.llmservice import LLMService
from llmfleet.operator.render import served_model_name

ROUTER_URL_ENV = "LLMFLEET_ROUTER_URL"


def router_url_from_environment() -> str | None:
    url = (os.environ.get(ROUTER_URL_ENV) or "").strip().rstrip("/")
    return url or None


def router_status(base_url: str | None, service: LLMService) -> dict | None:
    """The status.router block for `service`, None when no router fronts the fleet."""
    if not base_url:
        return None
    return {"url": base_url, "model": served_model_name(service)}
