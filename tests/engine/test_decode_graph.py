"""The compiled decode's plumbing: batch buckets, the compile cache directory, the flags."""

from __future__ import annotations

import os

import pytest
from llmfleet.engine import decode_graph
from llmfleet.engine.cli import build_parser, config_from_args


def test_buckets_cover_every_batch_up_to_max_num_seqs():
    assert decode_graph.batch_buckets(64) == [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]
    assert decode_graph.batch_buckets(20) == [1, 2, 4, 8, 16, 20]
    assert decode_graph.batch_buckets(1) == [1]
    buckets = decode_graph.batch_buckets(20)
    for n in range(1, 21):
        b = decode_graph.bucket_for(n, buckets)
        assert b is not None and b >= n and all(x < n for x in buckets if x < b)
    assert decode_graph.bucket_for(21, buckets) is None


def test_default_cache_dir_is_on_the_pods_cache_volume(monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/llmfleet")
    assert str(decode_graph.default_cache_dir()) == "/var/cache/llmfleet/llmfleet/compile"


def _unset(monkeypatch, *names: str) -> None:
    """Unset for this test and restored after, whether or not they were set before."""
    for name in names:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_unwritable_cache_dir_falls_back_to_a_private_one(tmp_path, monkeypatch):
    _unset(monkeypatch, "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")
    blocker = tmp_path / "file"
    blocker.write_text("")
    used = decode_graph.configure_cache(blocker / "compile")  # a path under a regular file
    assert used != blocker / "compile" and used.is_dir()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(used / "inductor")


def test_configure_cache_keeps_an_inductor_dir_the_operator_of_the_pod_chose(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/chosen")
    _unset(monkeypatch, "TRITON_CACHE_DIR")
    decode_graph.configure_cache(tmp_path)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/chosen"
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "triton")


@pytest.mark.parametrize("argv,compile,wait", [([], None, False), (["--no-compile"], False, False),
                                              (["--compile", "--compile-wait"], True, True)])
def test_compile_flags(argv, compile, wait):
    cfg = config_from_args(build_parser().parse_args(["serve", "--model", "m", *argv]))
    assert (cfg.compile, cfg.compile_wait) == (compile, wait)


def test_server_turns_ready_eagerly_then_decodes_compiled_with_the_same_tokens(tiny_llama, compile_cache,
                                                                               monkeypatch):
    import time

    import httpx
    from engine_process import EngineProcess

    _unset(monkeypatch, "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")  # in-process compiles set them for the session
    body = {"prompt": [5, 9, 77, 300, 41], "max_tokens": 24, "temperature": 0, "ignore_eos": True}
    # float32 on both sides: the default dtype follows the CPU, and bf16 rounding may flip a near-tie
    srv = EngineProcess(tiny_llama, "--dtype", "float32")
    try:
        eager = httpx.post(srv.url + "/v1/completions", json=body, timeout=60).json()
    finally:
        srv.stop()
    srv = EngineProcess(tiny_llama, "--dtype", "float32", "--compile", "--compile-cache-dir", str(compile_cache))
    try:
        # ready before compiling is done: the compile runs in the background on CPU
        deadline = time.monotonic() + 1200  # a cold compile on a loaded 2-core machine took 5 min; not a speed assert
        while srv.metric("llmfleet_engine_decode_compiled") != 1:
            assert srv.proc.poll() is None, srv.output()
            assert time.monotonic() < deadline, srv.output()
            time.sleep(0.5)
        assert srv.metric("llmfleet_engine_compile_seconds") > 0
        compiled = httpx.post(srv.url + "/v1/completions", json=body, timeout=60).json()
    finally:
        srv.stop()
    assert compiled["choices"][0]["text"] == eager["choices"][0]["text"]
    assert any((compile_cache / "inductor").iterdir())  # artefacts went to the chosen directory
