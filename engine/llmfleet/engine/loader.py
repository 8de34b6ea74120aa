"""Read a Hugging Face checkpoint directory: config.json and safetensors weights.

Every failure names the file at fault, so a bad `--model` is fixed without a debugger.
"""

from __future__ import annotations

import json
import os
import pathlib
from dataclasses import dataclass

from .errors import ModelLoadError

SUPPORTED_ARCHITECTURES = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"}
QK_NORM_ARCHITECTURES = {"Qwen3ForCausalLM"}  # an RMSNorm over each query and key head before rotary
SUPPORTED_ROPE_TYPES = {"default", "llama3", "linear"}


@dataclass
class ModelConfig:
    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict | None
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool
    eos_token_ids: list[int]
    sliding_window: int | None = None
    qk_norm: bool = False


def resolve_model_path(uri: str) -> pathlib.Path:
    """Map file://, plain paths and hf://org/name to a local directory."""
    if uri.startswith("file://"):
        return pathlib.Path(uri[len("file://"):])
    if uri.startswith("hf://"):
        repo = uri[len("hf://"):]
        try:
            from huggingface_hub import snapshot_download  # type: ignore[import-not-found]
        except ImportError as e:
            raise ModelLoadError(f"{uri}: hf:// needs the huggingface_hub package") from e
        try:
            return pathlib.Path(snapshot_download(repo_id=repo, cache_dir=os.environ.get("HF_HOME")))
        except Exception as e:  # network or auth: say so plainly
            raise ModelLoadError(f"{uri}: download failed: {e}") from e
    return pathlib.Path(uri)


def _read_json(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path}: not valid JSON ({e})") from None


def _as_list(v) -> list[int]:
    if v is None:
        return []
    return [int(x) for x in (v if isinstance(v, list) else [v])]


def load_model_config(model_dir: pathlib.Path) -> ModelConfig:
    if not model_dir.is_dir():
        raise ModelLoadError(f"{model_dir}: model directory does not exist")
    path = model_dir / "config.json"
    cfg = _read_json(path)
    archs = cfg.get("architectures") or []
    arch = next((a for a in archs if a in SUPPORTED_ARCHITECTURES), None)
    if arch is None:
        raise ModelLoadError(f"{path}: architectures {archs} not supported; "
                             f"supported: {sorted(SUPPORTED_ARCHITECTURES)}")
    # transformers >= 5 writes rope settings as `rope_parameters`; older checkpoints as rope_theta/rope_scaling.
    rope_params = cfg.get("rope_parameters") or {}
    rope_theta = float(rope_params.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    scaling = cfg.get("rope_scaling") or (rope_params if rope_params.get("rope_type", "default") != "default" else None)
    if scaling:
        rope_type = scaling.get("rope_type", scaling.get("type", "default"))
        if rope_type not in SUPPORTED_ROPE_TYPES:
            raise ModelLoadError(f"{path}: rope scaling type {rope_type!r} not supported "
                                 f"(supported: {sorted(SUPPORTED_ROPE_TYPES)})")
        scaling = {**scaling, "rope_type": rope_type}
        if rope_type == "default":
            scaling = None
    try:
        hidden = int(cfg["hidden_size"])
        heads = int(cfg["num_attention_heads"])
        eos = _as_list(cfg.get("eos_token_id"))
        gen_path = model_dir / "generation_config.json"
        if gen_path.exists():
            eos += [e for e in _as_list(_read_json(gen_path).get("eos_token_id")) if e not in eos]
        return ModelConfig(
            architecture=arch,
            vocab_size=int(cfg["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(cfg["intermediate_size"]),
            num_layers=int(cfg["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            rope_theta=rope_theta,
            rope_scaling=scaling,
            max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            # Qwen2 always has q/k/v biases; Llama-family configs say so with attention_bias.
            attention_bias=arch == "Qwen2ForCausalLM" or bool(cfg.get("attention_bias", False)),
            eos_token_ids=eos,
            sliding_window=cfg.get("sliding_window") if cfg.get("use_sliding_window", True) else None,
            qk_norm=arch in QK_NORM_ARCHITECTURES,
        )
    except KeyError as e:
        raise ModelLoadError(f"{path}: missing key {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"{path}: bad value ({e})") from None


def weight_files(model_dir: pathlib.Path) -> list[pathlib.Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        names = sorted(set(_read_json(index).get("weight_map", {}).values()))
        if not names:
            raise ModelLoadError(f"{index}: empty weight_map")
        files = [model_dir / n for n in names]
        for f in files:
            if not f.exists():
                raise ModelLoadError(f"{f}: listed in {index.name} but missing")
        return files
    single = model_dir / "model.safetensors"
    if single.exists():
        return [single]
    found = sorted(model_dir.glob("*.safetensors"))
    if found:
        return found
    raise ModelLoadError(f"{model_dir}: no model.safetensors or model.safetensors.index.json "
                         "(only safetensors checkpoints are supported)")


def iter_weights(model_dir: pathlib.Path):
    """Yield (name, tensor) from every safetensors file of the checkpoint."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    for f in weight_files(model_dir):
        try:
            with safe_open(str(f), framework="pt") as fh:
                for name in fh.keys():
                    yield name, fh.get_tensor(name)
        except (SafetensorError, OSError) as e:
            raise ModelLoadError(f"{f}: cannot read safetensors ({e})") from None
