"""Checkpoint loading: config variants and errors that name the file at fault."""

from __future__ import annotations

import json
import shutil

import pytest
from llmfleet.engine.cpu_features import preferred_cpu_dtype, read_cpu_info
from llmfleet.engine.errors import ModelLoadError
from llmfleet.engine.gpu import GpuMonitor
from llmfleet.engine.loader import load_model_config, resolve_model_path
from llmfleet.engine.model_runner import DTYPES, ModelRunner

from tools.tinymodel import TinySpec, make_tiny_model


def copy_with_config(src, dst, **changes):
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_older_rope_keys_are_read(tiny_llama, tmp_path):
    d = copy_with_config(tiny_llama, tmp_path / "m", rope_parameters=None, rope_theta=500000.0,
                         rope_scaling={"type": "linear", "factor": 2.0})
    cfg = load_model_config(d)
    assert cfg.rope_theta == 500000.0 and cfg.rope_scaling["rope_type"] == "linear"


def test_unsupported_architecture_and_rope_are_named(tiny_llama, tmp_path):
    d = copy_with_config(tiny_llama, tmp_path / "a", architectures=["GPT2LMHeadModel"])
    # names the refused architecture and lists what is supported
    with pytest.raises(ModelLoadError, match=r"GPT2LMHeadModel.*supported: .*'Qwen3ForCausalLM'"):
        load_model_config(d)
    d = copy_with_config(tiny_llama, tmp_path / "b", rope_parameters={"rope_type": "yarn", "factor": 4.0})
    with pytest.raises(ModelLoadError, match="yarn"):
        load_model_config(d)


def test_missing_key_and_tensor_are_named(tiny_llama, tmp_path):
    d = copy_with_config(tiny_llama, tmp_path / "a", hidden_size=None)
    with pytest.raises(ModelLoadError, match="hidden_size"):
        load_model_config(d)
    from safetensors.torch import load_file, save_file

    d = tmp_path / "b"
    shutil.copytree(tiny_llama, d)
    weights = load_file(d / "model.safetensors")
    del weights["model.layers.1.mlp.down_proj.weight"]
    save_file(weights, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="model.layers.1.mlp.down_proj.weight"):
        ModelRunner(d, device="cpu", max_model_len=64)


def test_qwen3_config_and_its_head_norm_weights(tmp_path):
    d = make_tiny_model(tmp_path / "m", TinySpec(arch="qwen3", head_dim=32, tie_word_embeddings=True))
    cfg = load_model_config(d)
    assert (cfg.architecture, cfg.qk_norm, cfg.attention_bias) == ("Qwen3ForCausalLM", True, False)
    assert (cfg.head_dim, cfg.sliding_window, cfg.tie_word_embeddings) == (32, None, True)
    from safetensors.torch import load_file, save_file

    weights = load_file(d / "model.safetensors")
    del weights["model.layers.1.self_attn.k_norm.weight"]
    save_file(weights, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="model.layers.1.self_attn.k_norm.weight"):
        ModelRunner(d, device="cpu", max_model_len=64)


def test_a_published_qwen3_config_is_read(tmp_path):
    """Qwen3-0.6B's config.json as published (written by transformers 4.51: rope_theta, no rope_parameters)."""
    d = tmp_path / "qwen3-0.6b"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({
        "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
        "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072, "max_position_embeddings": 40960,
        "max_window_layers": 28, "model_type": "qwen3", "num_attention_heads": 16, "num_hidden_layers": 28,
        "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000,
        "sliding_window": None, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "transformers_version": "4.51.0", "use_cache": True, "use_sliding_window": False, "vocab_size": 151936}))
    cfg = load_model_config(d)
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.hidden_size) == (16, 8, 128, 1024)
    assert (cfg.rope_theta, cfg.rope_scaling, cfg.sliding_window) == (1e6, None, None)
    assert cfg.qk_norm and cfg.tie_word_embeddings and not cfg.attention_bias
    assert cfg.eos_token_ids == [151645]


def test_file_uri_and_plain_path(tiny_llama):
    assert resolve_model_path(f"file://{tiny_llama}") == tiny_llama
    assert resolve_model_path(str(tiny_llama)) == tiny_llama


def test_max_model_len_beyond_the_model_is_refused(tiny_llama):
    with pytest.raises(ModelLoadError, match="exceeds"):
        ModelRunner(tiny_llama, device="cpu", max_model_len=10**6)


def test_kv_pool_smaller_than_one_sequence_is_refused(tiny_llama):
    with pytest.raises(ModelLoadError, match="cannot hold one"):
        ModelRunner(tiny_llama, device="cpu", max_model_len=128, num_kv_blocks=2, block_size=16)


def test_kv_pool_is_sized_from_the_memory_budget(tiny_llama):
    r = ModelRunner(tiny_llama, device="cpu", max_model_len=128, kv_cache_memory_mb=1)
    assert r.num_blocks == 2**20 // r.bytes_per_block()
    # auto dtype on CPU: what the CPU does natively (cpu_features.py), for the cache as for the weights
    assert r.kv_caches[0][0].dtype == DTYPES[preferred_cpu_dtype(read_cpu_info())] == r.dtype


def test_gpu_monitor_is_inert_on_cpu():
    mon = GpuMonitor("cpu")
    assert not mon.enabled and mon.problem() is None
    mon.export(None)  # no NVML calls, no metrics touched
