"""`make bench`: serve a ~100M-parameter random Llama and drive it with an async load generator.

Prints requests/s, output tokens/s and TTFT/TPOT p50/p95/p99 for
  1. mixed: Poisson arrivals, mixed prompt and output lengths;
  2. shared-prefix: a long shared system prompt, short unique questions, with prefix
     caching on and off;
  3. single: one request at a time (batch-1 decode speed);
and, in the same run, the same requests through Hugging Face `transformers`
`generate` batched as a simple server would (static batches, padded, each batch
running to its longest request), with our figures as ratios of it.

Nothing is downloaded: the checkpoint is written locally (random weights; speed
does not depend on the values). Numbers vary ±10-15% on a shared machine: compare
ratios from one run, not absolute figures across runs.

    python -m benchmarks.bench [--threads 2] [--requests 48] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field

CACHE = pathlib.Path(os.environ.get("LLMFLEET_CACHE", pathlib.Path.home() / ".cache" / "llmfleet"))


@dataclass
class Req:
    prompt: list[int]
    max_tokens: int
    arrival: float = 0.0


@dataclass
class Result:
    ttft: list[float] = field(default_factory=list)
    tpot: list[float] = field(default_factory=list)
    out_tokens: int = 0
    failed: int = 0
    wall: float = 0.0
    n: int = 0

    def summary(self) -> dict:
        return {"requests": self.n, "failed": self.failed, "wall_s": round(self.wall, 2),
                "req_per_s": round(self.n / self.wall, 2), "out_tok_per_s": round(self.out_tokens / self.wall, 1),
                **pct("ttft_ms", self.ttft), **pct("tpot_ms", self.tpot)}


def pct(name: str, xs: list[float]) -> dict:
    if not xs:
        return {}
    s = sorted(xs)

    def q(p: float) -> float:
        return round(1000 * s[min(len(s) - 1, int(p * len(s)))], 1)

    return {f"{name}_p50": q(0.5), f"{name}_p95": q(0.95), f"{name}_p99": q(0.99)}


def bench_model(threads: int) -> pathlib.Path:
    from tools.tinymodel import TinySpec, make_tiny_model

    path = CACHE / "models" / "bench-llama-100m-v2"
    if not (path / "model.safetensors").exists():
        # vocabulary = the tokenizer's, so every generated token decodes to text and streams out
        spec = TinySpec(vocab_size=8192, hidden_size=768, intermediate_size=2048, num_layers=12, num_heads=12,
                        num_kv_heads=12, max_position_embeddings=2048, init_std=0.02, seed=0)
        print(f"writing the benchmark checkpoint to {path} ...", flush=True)
        make_tiny_model(path, spec)
    return path


def workload_mixed(n: int, rate: float, seed: int = 0) -> list[Req]:
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate) if rate > 0 else 0.0
        out.append(Req([rng.randrange(300, 8000) for _ in range(rng.randint(32, 256))], rng.randint(32, 128), t))
    return out


def workload_shared_prefix(n: int, seed: int = 1) -> list[Req]:
    rng = random.Random(seed)
    system = [rng.randrange(300, 8000) for _ in range(512)]
    reqs, t = [], 0.0
    for _ in range(n):
        t += rng.expovariate(2.0)
        reqs.append(Req(system + [rng.randrange(300, 8000) for _ in range(rng.randint(8, 24))], 16, t))
    return reqs


# -- the llmfleet server -------------------------------------------------------------------------
class Server:
    """`llmfleet-engine serve` on a loopback port; `code` is a PYTHONPATH entry holding another
    revision's llmfleet package (the "before" engine), or None for this checkout's (`child_env`).

    Records `ready_s` (process start to /ready 200) and, with `--compile` among the flags,
    `compiled_s` (process start to llmfleet_engine_decode_compiled 1); with `wait_compiled` the
    workload starts only once decode steps run compiled. Without `--compile` the engine's default
    applies (compiled on CUDA, eager on CPU) and the server counts as started once ready."""

    def __init__(self, model: pathlib.Path, threads: int, *extra: str, code: pathlib.Path | None = None,
                 wait_compiled: bool = True):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmfleet.engine.cli", "serve", "--model", str(model), "--host", "127.0.0.1",
             "--port", str(self.port), "--threads", str(threads), "--max-model-len", "1024", "--max-num-seqs", "32",
             "--max-waiting", "1024", "--log-level", "warning", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **child_env(code))
        import httpx

        self.ready_s = self.compiled_s = None
        deadline = started + 1800
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(err[-2000:])
            try:
                if self.ready_s is None and httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    self.ready_s = time.monotonic() - started
                if self.ready_s is not None:
                    if not wait_compiled or "--compile" not in extra or code is not None:
                        return
                    if self.metric("llmfleet_engine_decode_compiled") == 1:
                        self.compiled_s = time.monotonic() - started
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("server did not become ready")

    def metric(self, name: str) -> float:
        import httpx

        for line in httpx.get(self.url + "/metrics", timeout=5).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def child_env(code: pathlib.Path | None) -> dict:
    """`env` and `cwd` for a child process that imports llmfleet: from `code` (a `git_tree` folder), or
    this checkout's when None. The child runs in `code`: `python -m` and `-c` put the working directory
    first on sys.path, and from the repository root this checkout's llmfleet/ would shadow the
    revision's (the editable install then resolves llmfleet.engine to this checkout)."""
    env = dict(os.environ)
    if code is None:
        return {"env": env, "cwd": None}
    env["PYTHONPATH"] = os.pathsep.join([str(code), *filter(None, [env.get("PYTHONPATH")])])
    return {"env": env, "cwd": str(code)}


def git_tree(rev: str, dest: pathlib.Path) -> tuple[str, pathlib.Path]:
    """`git archive` of rev's llmfleet package laid out for PYTHONPATH (it goes before the editable
    install's finder, so the server runs that revision's engine). Returns (commit, directory)."""
    import io
    import shutil
    import tarfile

    root = pathlib.Path(__file__).resolve().parent.parent
    sha = subprocess.run(["git", "-C", str(root), "rev-parse", rev], capture_output=True, text=True,
                         check=True).stdout.strip()
    pkg = dest / sha[:12]
    if not (pkg / "llmfleet" / "engine").is_dir():
        tar = subprocess.run(["git", "-C", str(root), "archive", sha, "llmfleet", "engine"], capture_output=True,
                             check=True).stdout
        src = dest / f"src-{sha[:12]}"
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            t.extractall(src, filter="data")
        shutil.copytree(src / "llmfleet", pkg / "llmfleet")
        shutil.copytree(src / "engine" / "llmfleet" / "engine", pkg / "llmfleet" / "engine")
    return sha, pkg


def machine_line() -> str:
    """The CPU (model, logical CPUs, the flags that decide kernels and dtype) and the load on it."""
    from llmfleet.engine.cpu_features import preferred_cpu_dtype, read_cpu_info

    info = read_cpu_info()
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"CPU: {info.describe()}; engine dtype on this CPU (auto): {preferred_cpu_dtype(info)}; "
            f"load average (1/5/15 min): {load}")


async def _one(client, url: str, req: Req, t0: float, res: Result) -> None:
    await asyncio.sleep(max(0.0, t0 + req.arrival - time.monotonic()))
    start = time.monotonic()
    first = None
    n = 0
    body = {"prompt": req.prompt, "max_tokens": req.max_tokens, "ignore_eos": True, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    try:
        async with client.stream("POST", url + "/v1/completions", json=body) as r:
            if r.status_code != 200:
                res.failed += 1
                return
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    n = chunk["usage"]["completion_tokens"]
                elif first is None and chunk["choices"]:
                    first = time.monotonic()
    except Exception:
        res.failed += 1
        return
    end = time.monotonic()
    if first is None:
        first = end
    res.ttft.append(first - start)
    if n > 1:
        res.tpot.append((end - first) / (n - 1))
    res.out_tokens += n


async def _drive(url: str, reqs: list[Req]) -> Result:
    import httpx

    res = Result(n=len(reqs))
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=256)) as client:
        t0 = time.monotonic()
        await asyncio.gather(*(_one(client, url, r, t0, res) for r in reqs))
        res.wall = time.monotonic() - t0
    return res


def run_llmfleet(model, threads, reqs, *extra, code: pathlib.Path | None = None) -> Result:
    srv = Server(model, threads, *extra, code=code)
    try:
        # one short warm-up request so first-call costs are not charged to the run
        asyncio.run(_drive(srv.url, [Req([700, 800, 900], 4)]))
        return asyncio.run(_drive(srv.url, reqs))
    finally:
        srv.stop()


# -- the transformers baseline -------------------------------------------------------------------
class FirstTokenTimer:
    """A generate() streamer that notes when the first new token comes out (put #1 is the prompt)."""

    def __init__(self):
        self.calls = 0
        self.at: float | None = None

    def put(self, value) -> None:
        self.calls += 1
        if self.calls == 2:
            self.at = time.monotonic()

    def end(self) -> None:
        pass


def run_transformers(model, threads: int, reqs: list[Req], batch: int) -> Result:
    """Static batches in arrival order, left-padded, each generating its longest request's tokens."""
    import torch
    import transformers

    torch.set_num_threads(threads)
    hf = transformers.AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    res = Result(n=len(reqs))
    t0 = time.monotonic()
    for i in range(0, len(reqs), batch):
        group = reqs[i:i + batch]
        # a simple server cannot start a batch before its last request arrives
        wait = t0 + max(r.arrival for r in group) - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        longest = max(len(r.prompt) for r in group)
        ids = torch.tensor([[0] * (longest - len(r.prompt)) + r.prompt for r in group])
        mask = torch.tensor([[0] * (longest - len(r.prompt)) + [1] * len(r.prompt) for r in group])
        new = max(r.max_tokens for r in group)
        first_token = FirstTokenTimer()
        with torch.inference_mode():
            hf.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                        pad_token_id=0, eos_token_id=None, streamer=first_token)
        end = time.monotonic()
        for r in group:
            first = first_token.at or end
            res.ttft.append(first - (t0 + r.arrival))
            res.tpot.append((end - first) / max(1, new - 1))
            res.out_tokens += r.max_tokens  # only the tokens a client asked for count as output
    res.wall = time.monotonic() - t0
    return res


def ratio(a: dict, b: dict, key: str, invert: bool = False) -> str:
    if key not in a or key not in b or not a[key] or not b[key]:
        return "n/a"
    r = b[key] / a[key] if invert else a[key] / b[key]
    return f"{r:.2f}x"


def startup(model: pathlib.Path, threads: int, before: pathlib.Path | None, compiled: bool = True) -> dict:
    """Seconds from process start to /ready and to decode compiled: eager with an empty cache (the CPU
    kernels built: a new node), again with that cache (a restart or a second replica on the volume),
    and without the CPU kernels; compiled with an empty cache, and again with it."""
    import tempfile

    out: dict[str, float | None] = {}
    print("\n== start-up: process start -> /ready (-> decode compiled)", flush=True)
    with (tempfile.TemporaryDirectory(prefix="bench-compile-") as fresh,
          tempfile.TemporaryDirectory(prefix="bench-kernels-") as kernels):
        runs = [("eager_first", ("--no-compile", "--compile-cache-dir", kernels), None),
                ("eager_cached", ("--no-compile", "--compile-cache-dir", kernels), None),
                ("eager_no_kernels", ("--no-compile", "--no-cpu-kernels"), None),
                ("compiled_first", ("--compile", "--compile-cache-dir", fresh), None),
                ("compiled_cached", ("--compile", "--compile-cache-dir", fresh), None)]
        if not compiled:  # each compiled start costs minutes of CPU on a small machine
            runs = [r for r in runs if not r[0].startswith("compiled")]
        if before:
            runs.append(("before", (), before))
        for name, extra, code in runs:
            srv = Server(model, threads, *extra, code=code)
            srv.stop()
            out[f"{name}_ready_s"] = round(srv.ready_s or 0, 2)
            if srv.compiled_s is not None:
                out[f"{name}_compiled_s"] = round(srv.compiled_s, 2)
            print(f"{name:<16} ready {srv.ready_s:.1f} s" +
                  (f", decode compiled {srv.compiled_s:.1f} s" if srv.compiled_s is not None else ""), flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="llmfleet engine benchmark")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--rate", type=float, default=8.0, help="Poisson arrival rate (req/s) of the mixed workload")
    ap.add_argument("--batch", type=int, default=16, help="static batch size of the transformers baseline")
    ap.add_argument("--quick", action="store_true", help="a smaller run (a few minutes)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--before", metavar="REV",
                    help="also run the engine of this git revision (e.g. origin/main) in the same run: the "
                         "'before' rows of the mixed, single and start-up figures")
    ap.add_argument("--startup", action=argparse.BooleanOptionalAction, default=True,
                    help="measure start-up: load -> ready (and -> decode compiled), first start with an empty "
                         "compile cache and a second start reusing it")
    ap.add_argument("--startup-only", action="store_true", help="only the start-up figures")
    ap.add_argument("--startup-compiled", action=argparse.BooleanOptionalAction, default=True,
                    help="the compiled start-up rows too (minutes of compiling on a small CPU)")
    ap.add_argument("--llama-cpp", action=argparse.BooleanOptionalAction, default=None,
                    help="also run the llama.cpp baseline (default: when llama_cpp imports; benchmarks/bench_llamacpp.py)")
    args = ap.parse_args(argv)
    if args.quick:
        args.requests = 24
    model = bench_model(args.threads)
    figures: dict[str, dict] = {}
    print(machine_line(), flush=True)
    compile_dir = CACHE / "compile"  # the after-engine's compile cache for the workloads (warm after its first start)
    after = ("--compile-cache-dir", str(compile_dir))
    before: pathlib.Path | None = None
    if args.before:
        sha, before = git_tree(args.before, CACHE / "bench-trees")
        print(f"before: {args.before} = {sha[:12]} (git archive into {before})", flush=True)
    if args.startup or args.startup_only:
        figures["startup"] = startup(model, args.threads, before, args.startup_compiled)
    if args.startup_only:
        print(machine_line(), flush=True)
        return
    from benchmarks import bench_llamacpp

    lcpp, skipped = bench_llamacpp.setup(model, args.threads, args.llama_cpp)
    if lcpp is None:
        print(f"llama.cpp baseline SKIPPED: {skipped}", flush=True)

    mixed = workload_mixed(args.requests, args.rate)
    print(f"\n== mixed: {len(mixed)} requests, Poisson {args.rate}/s, prompts 32-256, outputs 32-128, "
          f"{args.threads} threads", flush=True)
    figures["mixed_llmfleet"] = run_llmfleet(model, args.threads, mixed, *after).summary()
    print("llmfleet     ", figures["mixed_llmfleet"], flush=True)
    if before:
        figures["mixed_before"] = run_llmfleet(model, args.threads, mixed, code=before).summary()
        print("llmfleet before", figures["mixed_before"], flush=True)
    figures["mixed_transformers"] = run_transformers(model, args.threads, mixed, args.batch).summary()
    print(f"transformers (static batches of {args.batch})", figures["mixed_transformers"], flush=True)
    if lcpp:
        figures["mixed_llamacpp"] = lcpp.mixed(mixed, args.batch)
        print(f"llama.cpp    (continuous batching, {args.batch} sequences)", figures["mixed_llamacpp"], flush=True)

    single = [Req([random.Random(i).randrange(300, 8000) for _ in range(128)], 128, 0.0) for i in range(3)]
    print("\n== single: batch-1 decode, prompt 128, 128 new tokens, 3 requests one after another", flush=True)

    def sequential(fn):
        parts = [fn([r]) for r in single]
        res = Result(n=len(single), wall=sum(p.wall for p in parts), out_tokens=sum(p.out_tokens for p in parts))
        res.ttft = [x for p in parts for x in p.ttft]
        res.tpot = [x for p in parts for x in p.tpot]
        return res

    def single_llmfleet(*extra: str, code: pathlib.Path | None = None) -> dict:
        srv = Server(model, args.threads, *extra, code=code)
        try:
            asyncio.run(_drive(srv.url, [Req([700, 800], 4)]))
            return sequential(lambda rs: asyncio.run(_drive(srv.url, rs))).summary()
        finally:
            srv.stop()

    # this checkout: defaults (dtype by CPU; compiled on CUDA, eager on CPU), then fp32 (transformers' and
    # llama.cpp's dtype), then the decode step compiled in the default dtype
    for key, label, extra in (("single_llmfleet", "llmfleet (defaults)", after),
                              ("single_llmfleet_fp32", "llmfleet --dtype float32", (*after, "--dtype", "float32")),
                              ("single_llmfleet_compiled", "llmfleet --compile", (*after, "--compile"))):
        figures[key] = single_llmfleet(*extra)
        print(f"{label:<28}", figures[key], flush=True)
    if before:
        figures["single_before"] = single_llmfleet(code=before)
        print(f"{'llmfleet before':<28}", figures["single_before"], flush=True)
    figures["single_transformers"] = sequential(lambda rs: run_transformers(model, args.threads, rs, 1)).summary()
    print("transformers ", figures["single_transformers"], flush=True)
    if lcpp:
        figures["single_llamacpp"] = lcpp.single(single)
        print("llama.cpp    ", figures["single_llamacpp"], flush=True)
        print("\n".join(f"llama.cpp sanity {line}" for line in lcpp.sanity()), flush=True)

    shared = workload_shared_prefix(max(16, args.requests // 2))
    print(f"\n== shared prefix: {len(shared)} requests, 512-token shared system prompt, 8-24 token questions, "
          "16 new tokens, Poisson 2/s", flush=True)
    figures["prefix_on"] = run_llmfleet(model, args.threads, shared, *after).summary()
    print("prefix caching on ", figures["prefix_on"], flush=True)
    figures["prefix_off"] = run_llmfleet(model, args.threads, shared, *after, "--no-enable-prefix-caching").summary()
    print("prefix caching off", figures["prefix_off"], flush=True)

    m, t = figures["mixed_llmfleet"], figures["mixed_transformers"]
    s, st = figures["single_llmfleet"], figures["single_transformers"]
    on, off = figures["prefix_on"], figures["prefix_off"]
    print("\n== ratios (same run)")
    print(f"mixed output tok/s       llmfleet / transformers: {ratio(m, t, 'out_tok_per_s')}   (goal >= 2x)")
    print(f"mixed TTFT p50           transformers / llmfleet: {ratio(m, t, 'ttft_ms_p50', invert=True)}")
    print(f"single decode tok/s      llmfleet / transformers: {ratio(s, st, 'out_tok_per_s')}   (goal >= 1.5x)")
    print(f"shared-prefix TTFT p50   off / on:                {ratio(on, off, 'ttft_ms_p50', invert=True)}"
          "   (goal >= 3x)")
    for key, label in (("single_llmfleet_fp32", "llmfleet fp32"), ("single_llmfleet_compiled", "llmfleet --compile")):
        print(f"single decode tok/s      {label} / transformers: {ratio(figures[key], st, 'out_tok_per_s')}")
    print(f"single decode tok/s      --compile / defaults (same dtype): "
          f"{ratio(figures['single_llmfleet_compiled'], s, 'out_tok_per_s')}")
    if before:
        print(f"mixed output tok/s       after / before: {ratio(m, figures['mixed_before'], 'out_tok_per_s')}")
        print(f"single decode tok/s      after / before: {ratio(s, figures['single_before'], 'out_tok_per_s')}")
    if lcpp:
        print("\n".join(bench_llamacpp.ratio_lines(figures, ratio)))
    else:
        print(f"llama.cpp baseline SKIPPED: {skipped}")
    print(machine_line())
    failed = sum(v.get("failed", 0) for v in figures.values())
    print(f"failed requests: {failed}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=2))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
