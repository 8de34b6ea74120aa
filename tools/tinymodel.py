"""Write small Llama-family checkpoints for tests, the demo and benchmarks.

Nothing is downloaded: the tokenizer is a byte-level BPE trained here on text
that ships with Python, and the weights are random (seeded) unless the demo
trains them. The files follow the Hugging Face layout the engine loads:
config.json, generation_config.json, model.safetensors, tokenizer.json,
tokenizer_config.json (with a ChatML chat template).

Needs `transformers` (a dev dependency), used only to write the checkpoint so
that the engine is checked against an independent implementation.

    python -m tools.tinymodel OUT_DIR [--arch llama|qwen2|qwen3|mistral] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
from dataclasses import dataclass
from typing import Any

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass
class TinySpec:
    """Shape of a tiny checkpoint. Defaults make a ~1M-parameter model that loads in a blink."""

    arch: str = "llama"
    vocab_size: int = 512
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int | None = None  # None: hidden_size // num_heads (Qwen3 sets it apart from the hidden size)
    max_position_embeddings: int = 1024
    tie_word_embeddings: bool = False
    rope_scaling: dict | None = None
    init_std: float = 0.1  # larger than HF's 0.02 so greedy choices are not near-ties
    seed: int = 0
    shards: int = 1


def corpus_text() -> str:
    """Plain English text that every Python install carries (docstrings of the stdlib)."""
    import codecs
    import collections
    import contextlib
    import http.server
    import io
    import json as json_mod
    import textwrap

    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen
        import this
    zen = codecs.decode(this.s, "rot13")
    docs = [zen]
    for mod in (textwrap, json_mod, http.server, collections, argparse, pathlib):
        if mod.__doc__:
            docs.append(mod.__doc__)
    return "\n".join(docs)


def stdlib_source_text(max_bytes: int = 4_000_000) -> str:
    """Python source of the standard library: megabytes of text for a larger tokenizer."""
    import sysconfig

    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    parts, size = [], 0
    for f in sorted(root.glob("*.py")):
        text = f.read_text(errors="ignore")
        parts.append(text)
        size += len(text)
        if size >= max_bytes:
            break
    return "\n".join(parts)


def train_tokenizer(vocab_size: int, text: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(text.splitlines(), trainer=trainer)
    return tok


def write_tokenizer(out: pathlib.Path, vocab_size: int, text: str | None = None, separate_template: bool = False):
    tok = train_tokenizer(vocab_size, text or corpus_text())
    tok.save(str(out / "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 1024,
        "clean_up_tokenization_spaces": False,
    }
    if separate_template:
        (out / "chat_template.jinja").write_text(CHATML_TEMPLATE)
    else:
        cfg["chat_template"] = CHATML_TEMPLATE
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    return tok


def hf_config(spec: TinySpec, eos_id: int, pad_id: int):
    import transformers

    common: dict[str, Any] = dict(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_word_embeddings,
        initializer_range=spec.init_std,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=None,
    )
    if spec.head_dim is not None:
        common["head_dim"] = spec.head_dim
    if spec.arch == "llama":
        if spec.rope_scaling:
            common["rope_scaling"] = spec.rope_scaling
        return transformers.LlamaConfig(**common)
    if spec.arch == "qwen2":
        return transformers.Qwen2Config(**common)
    if spec.arch == "qwen3":
        return transformers.Qwen3Config(**common)
    if spec.arch == "mistral":
        return transformers.MistralConfig(sliding_window=None, **common)
    raise ValueError(f"unknown arch {spec.arch!r}: use llama, qwen2, qwen3 or mistral")


def make_tiny_model(out_dir: str | os.PathLike, spec: TinySpec | None = None, *, separate_template: bool = False,
                    state_dict: dict | None = None) -> pathlib.Path:
    """Write a random-initialised (or given) tiny checkpoint and tokenizer to out_dir; return its path."""
    import torch
    import transformers

    spec = spec or TinySpec()
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # a vocabulary beyond what the docstrings support is trained on the stdlib's source instead
    text = stdlib_source_text() if spec.vocab_size > 1024 else None
    tok = write_tokenizer(out, spec.vocab_size, text=text, separate_template=separate_template)
    eos_id = tok.token_to_id("<|im_end|>")
    pad_id = tok.token_to_id("<|endoftext|>")
    config = hf_config(spec, eos_id, pad_id)
    torch.manual_seed(spec.seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        if state_dict is not None:
            model.load_state_dict(state_dict)
        else:
            for name, p in model.named_parameters():
                if name.endswith("norm.weight"):
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))  # non-trivial norms catch a missing weight
                else:
                    p.normal_(0.0, spec.init_std)
    shard = f"{max(1, (sum(p.numel() for p in model.parameters()) * 4) // spec.shards // 1024 + 1)}KB"
    model.save_pretrained(out, safe_serialization=True, max_shard_size=shard if spec.shards > 1 else "10GB")
    gen = {"eos_token_id": [eos_id, pad_id], "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(gen))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--arch", default="llama", choices=["llama", "qwen2", "qwen3", "mistral"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden-size", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--max-position", type=int, default=1024, help="max_position_embeddings (the longest context)")
    args = ap.parse_args(argv)
    spec = TinySpec(arch=args.arch, seed=args.seed, hidden_size=args.hidden_size, num_layers=args.layers,
                    intermediate_size=2 * args.hidden_size, max_position_embeddings=args.max_position)
    path = make_tiny_model(args.out_dir, spec)
    print(path)


if __name__ == "__main__":
    main()
