"""The reconciler stories of test_handlers.py and test_spot_handlers.py again, reading kopf's
indexes as production does (handlers/store.py) instead of the API server.

Left out: the stories about when the API-reading path reads (they count API reads, which the
index path does not make; test_handlers_indexed.py asserts it makes none).
"""

from __future__ import annotations

import inspect

import fakes
import pytest
import test_handlers
import test_spot_handlers

API_READ_STORIES = {
    "test_waiting_on_a_reference_does_not_poll_the_api_every_tick",
    "test_a_quiet_periodic_sync_reads_nothing_but_the_engines",
    "test_pooled_syncs_read_nodes_from_the_watch_not_a_list_each_time",
    "test_a_taint_the_watch_delivers_during_the_node_list_is_not_lost",
}
STORIES = [(module, name) for module in (test_handlers, test_spot_handlers)
           for name, fn in sorted(vars(module).items())
           if name.startswith("test_") and inspect.isfunction(fn) and fn.__module__ == module.__name__
           and name not in API_READ_STORIES and not hasattr(fn, "pytestmark")]


@pytest.mark.parametrize("module, name", STORIES, ids=[f"{m.__name__}::{n}" for m, n in STORIES])
def test_story_on_indexes(module, name, monkeypatch):
    monkeypatch.setattr(fakes.World, "indexed", True)
    getattr(module, name)()
