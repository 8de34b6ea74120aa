"""The kopf glue: settings keep kopf's state out of annotations, and the handlers are registered."""

from __future__ import annotations

import asyncio
import logging

import kopf
from llmfleet.operator.handlers import kopf_handlers


def test_startup_keeps_kopf_state_in_status_and_posts_only_our_events(monkeypatch):
    monkeypatch.setattr(kopf_handlers.KubeClient, "from_environment", classmethod(lambda cls: object()))
    monkeypatch.setattr(kopf_handlers.metrics, "serve", lambda address, port: None)
    settings = kopf.OperatorSettings()
    asyncio.run(kopf_handlers.configure(settings=settings, logger=logging.getLogger("test")))
    assert isinstance(settings.persistence.progress_storage, kopf.StatusProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.StatusDiffBaseStorage)
    assert settings.persistence.progress_storage.field == ("status", "kopf", "progress")
    assert settings.persistence.finalizer == "llmfleet.dev/operator"
    assert settings.posting.loggers is False
    assert kopf_handlers.Runtime.reconciler is not None


def test_handlers_cover_services_children_and_references():
    registry = kopf.get_default_registry()
    resources = {(h.selector.plural or h.selector.any_name, type(h).__name__, h.id)
                 for reg in (registry._changing, registry._watching, registry._spawning)
                 for h in reg.get_all_handlers()}
    plurals = {r[0] for r in resources}
    assert {"llmservices", "deployments", "pods", "autoscalepolicies", "spotpools"} <= plurals
    assert any(r[0] == "llmservices" and r[1] == "DaemonHandler" for r in resources)
