"""Shared fixtures: tiny checkpoints written locally (nothing is downloaded) and a served engine."""

from __future__ import annotations

import os

import pytest
from engine_process import EngineProcess

os.environ.setdefault("OMP_NUM_THREADS", "1")  # two cores are shared by everything on CI machines


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    from tools.tinymodel import TinySpec, make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama"), TinySpec(arch="llama"))


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory):
    from tools.tinymodel import TinySpec, make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), TinySpec(arch="qwen2", tie_word_embeddings=True,
                                                                           seed=1), separate_template=True)


@pytest.fixture(scope="session")
def slow_llama(tmp_path_factory):
    """Big enough (~4M parameters) that a 400-token request takes a few seconds on one CPU thread."""
    from tools.tinymodel import TinySpec, make_tiny_model

    spec = TinySpec(hidden_size=256, intermediate_size=768, num_layers=6, num_heads=8, num_kv_heads=4, seed=3)
    return make_tiny_model(tmp_path_factory.mktemp("slow-llama"), spec)


@pytest.fixture(scope="module")
def engine_server(tiny_llama):
    srv = EngineProcess(tiny_llama)
    yield srv
    srv.stop()
