"""The demo's model: a tiny Llama trained for a minute or two on this machine.

Nothing is downloaded. The training text is question/answer pairs made from the
docstrings of Python's standard library ("What does json.dumps do?" → its
docstring), read from source with `ast` (no module is imported), wrapped in the
ChatML template the engine serves. The result is a ~4M-parameter model that
answers in the style of Python documentation: fluent-looking, often wrong. It
shows the whole path (tokenizer, weights, chat template, serving) working on
text a person can read, which random weights cannot.

The checkpoint is cached (LLMFLEET_CACHE, default ~/.cache/llmfleet) and reused.

    python -m tools.demo_model [OUT_DIR] [--steps 400]
"""

from __future__ import annotations

import argparse
import ast
import os
import pathlib
import random
import sysconfig
import time

CACHE = pathlib.Path(os.environ.get("LLMFLEET_CACHE", pathlib.Path.home() / ".cache" / "llmfleet"))
DEFAULT_DIR = CACHE / "models" / "demo-chat-v2"


def docstring_pairs(limit_files: int = 400) -> list[tuple[str, str]]:
    """(question, answer) pairs from the first paragraph of stdlib docstrings."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    pairs = []
    for f in sorted(root.glob("*.py"))[:limit_files]:
        try:
            tree = ast.parse(f.read_text(errors="ignore"))
        except SyntaxError:
            continue
        mod = f.stem
        doc = ast.get_docstring(tree)
        if doc:
            pairs.append((f"What is the {mod} module?", doc.split("\n\n")[0]))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                d = ast.get_docstring(node)
                if d and 20 < len(d) < 600:
                    pairs.append((f"What does {mod}.{node.name} do?", d.split("\n\n")[0]))
    return pairs


def chat_text(q: str, a: str) -> str:
    return f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>\n"


def train(out_dir: pathlib.Path, steps: int = 400, max_seconds: float = 300.0, seed: int = 0) -> pathlib.Path:
    """A fixed number of steps, so the model is the same on a fast or a busy machine (capped in time)."""
    import torch
    import transformers

    from tools.tinymodel import TinySpec, hf_config, write_tokenizer

    torch.manual_seed(seed)
    rng = random.Random(seed)
    pairs = docstring_pairs()
    texts = [chat_text(q, a) for q, a in pairs]
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = write_tokenizer(out_dir, 2048, text="\n".join(texts))
    eos, pad = tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")
    spec = TinySpec(vocab_size=2048, hidden_size=128, intermediate_size=384, num_layers=3, num_heads=4,
                    num_kv_heads=2, max_position_embeddings=512, tie_word_embeddings=True, init_std=0.02)
    model = transformers.AutoModelForCausalLM.from_config(hf_config(spec, eos, pad), dtype=torch.float32)
    ids = [t for text in texts for t in tok.encode(text).ids]
    data = torch.tensor(ids)
    seq, batch = 96, 16
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    print(f"training a {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M-parameter Llama on "
          f"{len(pairs)} docstring Q/A pairs ({len(ids)} tokens), {steps} steps ...", flush=True)
    start, step, loss = time.monotonic(), 0, None
    model.train()
    while step < steps and time.monotonic() - start < max_seconds:
        offsets = [rng.randrange(0, len(data) - seq - 1) for _ in range(batch)]
        x = torch.stack([data[o:o + seq] for o in offsets])
        out = model(input_ids=x, labels=x)
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss = out.loss.item()
        step += 1
        if step % 50 == 0:
            print(f"  step {step}: loss {loss:.2f}", flush=True)
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    (out_dir / "generation_config.json").write_text(f'{{"eos_token_id": [{eos}], "do_sample": false}}')
    (out_dir / "TRAINING.txt").write_text(
        f"Trained locally by tools.demo_model: {step} steps of batch {batch} x {seq} tokens in "
        f"{time.monotonic() - start:.0f}s, final loss {loss:.2f}, on {len(pairs)} Q/A pairs from Python stdlib "
        "docstrings.\n")
    print(f"done: {step} steps, final loss {loss:.2f}", flush=True)
    return out_dir


def ensure_demo_model(out_dir: pathlib.Path = DEFAULT_DIR, steps: int = 400) -> pathlib.Path:
    if (out_dir / "model.safetensors").exists() and (out_dir / "TRAINING.txt").exists():
        return out_dir
    tmp = out_dir.with_name(out_dir.name + ".partial")
    train(tmp, steps)
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", default=str(DEFAULT_DIR))
    ap.add_argument("--steps", type=int, default=400)
    args = ap.parse_args(argv)
    print(ensure_demo_model(pathlib.Path(args.out_dir), args.steps))


if __name__ == "__main__":
    main()
