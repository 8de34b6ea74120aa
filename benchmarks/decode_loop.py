"""Decode speed without HTTP: the engine's `generate` in-process, per configuration, in rounds.

Each configuration (dtype x compiled or eager, and optionally another revision's engine via
--before) runs in a child process of its own, one after another, for --rounds rounds, so
configurations measured in the same round saw about the same machine. Fresh prompts are
prefilled first (not timed: steps run until every sequence has its first token), so the figure
is decode: batch-1 and batch-16 output tokens per second.

    python -m benchmarks.decode_loop [--threads 1] [--rounds 2] [--before REV] [--no-compiled] [--llama-cpp]

--llama-cpp adds llama.cpp's batch-1 decode of the same checkpoint, as GGUF f32 and GGUF bf16
(bench_llamacpp.py: f32 and bf16 KV cache respectively, each run in its own child process): one
128-token prompt, the same number of new tokens, tok/s = 1 / TPOT. --no-kernels leaves out the
configurations that run a lone decode in the CPU kernels (one_token.py).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import subprocess
import sys
import time

CHILD = r"""
import json, random, sys, time, torch
from llmfleet.engine.config import EngineConfig
from llmfleet.engine.llm_engine import LLMEngine
from llmfleet.engine.sequence import SamplingParams
model, dtype, compiled, threads, new = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4]), int(sys.argv[5])
kernels = sys.argv[6] == "1"
torch.set_num_threads(threads)
kw = {"compile": compiled} if "compile" in EngineConfig.__dataclass_fields__ else {}  # older revisions: eager only
if "cpu_kernels" in EngineConfig.__dataclass_fields__:
    kw["cpu_kernels"] = kernels
cfg = EngineConfig(model=model, device="cpu", dtype=dtype, max_model_len=1024, max_num_seqs=32, **kw)
t = time.monotonic(); eng = LLMEngine(cfg); load = time.monotonic() - t
rng = random.Random(0)
import resource
out = {"load_s": round(load, 1), "rss_mb_after_load": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}
warm = [rng.randrange(300, 8000) for _ in range(128)]
eng.generate([warm], SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))
for b in (1, 16):
    params = SamplingParams(max_tokens=new + 1, temperature=0.0, ignore_eos=True)
    for i in range(b):  # fresh prompts: no prefix-cache hit, blocks as a new request gets them
        eng.add_request(f"b{b}-{i}", [rng.randrange(300, 8000) for _ in range(128)], params)
    started = set()
    while len(started) < b:  # prefill (not timed) until every sequence has its first token
        started.update(o.request_id for o in eng.step())
    t, tokens, steps = time.monotonic(), 0, []
    while eng.has_work:
        s = time.perf_counter()
        tokens += sum(len(o.new_token_ids) for o in eng.step())
        steps.append(time.perf_counter() - s)
    out[f"b{b}_tok_s"] = round(tokens / (time.monotonic() - t), 1)
    steps.sort()  # on a shared machine the fastest steps show the code's speed, the mean the neighbours'
    out[f"b{b}_step_ms_p10"] = round(1000 * steps[len(steps) // 10], 2)
    out[f"b{b}_step_ms_p50"] = round(1000 * steps[len(steps) // 2], 2)
print(json.dumps(out))
"""


def llama_cpp_batch1(model, outtype: str, threads: int, new_tokens: int) -> dict:
    """llama.cpp's batch-1 decode: one fresh 128-token prompt, tok/s from its TPOT (decode only)."""
    from benchmarks import bench_llamacpp
    from benchmarks.bench import Req

    base = bench_llamacpp.Baseline(pathlib.Path(model), threads, outtype)
    prompt = [random.Random(1).randrange(300, 8000) for _ in range(128)]
    fig = base.single([Req(prompt, new_tokens + 1, 0.0)])
    if "error" in fig:
        return fig
    return {"b1_tok_s": round(1000 / fig["tpot_ms_p50"], 1), "b1_step_ms_p50": fig["tpot_ms_p50"]}


def main(argv: list[str] | None = None) -> None:
    from benchmarks.bench import CACHE, bench_model, child_env, git_tree, machine_line

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--before", metavar="REV", help="also run this revision's engine (eager, fp32 and bf16)")
    ap.add_argument("--compiled", action=argparse.BooleanOptionalAction, default=True,
                    help="also the compiled configurations (each compiles for a minute or more on a small CPU)")
    ap.add_argument("--kernels", action=argparse.BooleanOptionalAction, default=True,
                    help="also the configurations with a lone decode in the CPU kernels (the default engine)")
    ap.add_argument("--batch16", action=argparse.BooleanOptionalAction, default=True, help="also batch 16")
    ap.add_argument("--llama-cpp", action="store_true", help="also llama.cpp batch 1, GGUF f32 and bf16")
    args = ap.parse_args(argv)
    model = str(bench_model(args.threads))
    print(machine_line(), flush=True)
    # (name, dtype, compiled, kernels, tree); tree None: this checkout; dtype "gguf-*": llama.cpp
    configs = [("after fp32 eager", "float32", "0", "0", None), ("after fp32 compiled", "float32", "1", "0", None),
               ("after bf16 eager", "bfloat16", "0", "0", None), ("after bf16 compiled", "bfloat16", "1", "0", None),
               ("after fp32 kernels", "float32", "0", "1", None), ("after bf16 kernels", "bfloat16", "0", "1", None)]
    if not args.compiled:
        configs = [c for c in configs if c[2] == "0"]
    if not args.kernels:
        configs = [c for c in configs if c[3] == "0"]
    if args.before:
        sha, tree = git_tree(args.before, CACHE / "bench-trees")
        configs[:0] = [(f"before {args.before} ({sha[:12]}) {name}", dtype, "0", "0", tree)
                       for name, dtype in (("fp32", "float32"), ("bf16", "bfloat16"))]
    if args.llama_cpp:
        configs += [("llama.cpp f32", "gguf-f32", "0", "0", None), ("llama.cpp bf16", "gguf-bf16", "0", "0", None)]
    child = CHILD if args.batch16 else CHILD.replace("for b in (1, 16):", "for b in (1,):")
    results: dict[str, list[dict]] = {}
    for r in range(args.rounds):
        for name, dtype, compiled, kernels, tree in random.Random(r).sample(configs, len(configs)):
            if dtype.startswith("gguf-"):
                fig = llama_cpp_batch1(model, dtype.removeprefix("gguf-"), args.threads, args.new_tokens)
                results.setdefault(name, []).append(fig)
                print(f"round {r + 1} {name:<32} {fig} ({time.strftime('%H:%M:%S')})", flush=True)
                continue
            out = subprocess.run([sys.executable, "-c", child, model, dtype, compiled, str(args.threads),
                                  str(args.new_tokens), kernels], capture_output=True, text=True, check=True,
                                 **child_env(tree))
            fig = json.loads(out.stdout.strip().splitlines()[-1])
            results.setdefault(name, []).append(fig)
            print(f"round {r + 1} {name:<32} {fig} ({time.strftime('%H:%M:%S')})", flush=True)
    print(machine_line())


if __name__ == "__main__":
    main()
