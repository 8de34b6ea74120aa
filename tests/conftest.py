"""Shared fixtures: tiny checkpoints written locally (nothing is downloaded) and a served engine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EngineProcess:
    """A real `llmfleet-engine serve` process on a loopback port."""

    def __init__(self, model_dir, *extra: str, wait: bool = True):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "llmfleet.engine.cli", "serve", "--model", str(model_dir),
               "--host", "127.0.0.1", "--port", str(self.port), "--threads", "1", "--device", "cpu",
               "--served-model-name", "tiny", "--max-model-len", "512", *extra]
        self.log_path = f"{model_dir}/../engine-{self.port}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited with {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"engine not ready after {timeout}s: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()[-4000:]

    def metric(self, name: str) -> float:
        text = httpx.get(self.url + "/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(name)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def engine_server(tiny_llama):
    srv = EngineProcess(tiny_llama)
    yield srv
    srv.stop()
