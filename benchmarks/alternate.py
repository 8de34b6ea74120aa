"""The mixed and single workloads of bench.py again, configurations alternated round by round.

On a shared machine a configuration measured once, after another, mostly measures the neighbours
of that minute. Here every configuration (this checkout, --before REV, llama.cpp) runs in turn,
and round 2 runs them in reverse order, so each pair is measured both ways round. No transformers
baseline and no start-up (bench.py has them).

    python -m benchmarks.alternate --before origin/main [--rounds 2] [--threads 1] [--requests 24] [--mixed-only]

--mixed-only runs the mixed workload alone, adding this checkout with --no-cpu-kernels (its batched steps
are the same code either way, so the two "after" rows show the spread between runs of one engine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time


def main(argv: list[str] | None = None) -> None:
    from benchmarks import bench_llamacpp
    from benchmarks.bench import (
        CACHE,
        Req,
        Result,
        Server,
        _drive,
        bench_model,
        git_tree,
        machine_line,
        run_llmfleet,
        workload_mixed,
    )

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", metavar="REV", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--mixed-only", action="store_true")
    args = ap.parse_args(argv)
    model = bench_model(args.threads)
    _sha, before = git_tree(args.before, CACHE / "bench-trees")
    print(machine_line(), flush=True)
    lcpp, why = bench_llamacpp.setup(model, args.threads, None)
    if lcpp is None:
        print(f"llama.cpp baseline SKIPPED: {why}", flush=True)
    mixed = workload_mixed(args.requests, 8.0)
    single = [Req([random.Random(i).randrange(300, 8000) for _ in range(128)], 128, 0.0) for i in range(3)]
    after = ("--compile-cache-dir", str(CACHE / "compile"))

    def single_server(*extra: str, code=None) -> dict:
        srv = Server(model, args.threads, *extra, code=code)
        try:
            asyncio.run(_drive(srv.url, [Req([700, 800], 4)]))
            parts = [asyncio.run(_drive(srv.url, [r])) for r in single]
            res = Result(n=len(single), wall=sum(p.wall for p in parts), out_tokens=sum(p.out_tokens for p in parts))
            res.ttft = [x for p in parts for x in p.ttft]
            res.tpot = [x for p in parts for x in p.tpot]
            return res.summary()
        finally:
            srv.stop()

    configs = [
        ("mixed after", lambda: run_llmfleet(model, args.threads, mixed, *after).summary()),
        ("mixed before", lambda: run_llmfleet(model, args.threads, mixed, code=before).summary()),
        ("single after", lambda: single_server(*after)),
        ("single after fp32", lambda: single_server(*after, "--dtype", "float32")),
        ("single before", lambda: single_server(code=before)),
    ]
    if lcpp is not None:
        configs[2:2] = [("mixed llama.cpp", lambda: lcpp.mixed(mixed, 16))]
        configs.append(("single llama.cpp", lambda: lcpp.single(single)))
    if args.mixed_only:
        configs = [c for c in configs if c[0].startswith("mixed")]
        configs.insert(1, ("mixed after no-kernels",
                           lambda: run_llmfleet(model, args.threads, mixed, *after, "--no-cpu-kernels").summary()))
    for r in range(args.rounds):
        for name, fn in configs if r % 2 == 0 else configs[::-1]:
            fig = fn()
            keep = {k: fig.get(k) for k in ("out_tok_per_s", "ttft_ms_p50", "tpot_ms_p50", "tpot_ms_p95", "wall_s",
                                            "failed")}
            print(f"round {r + 1} {name:<18} {json.dumps(keep)} {time.strftime('%H:%M:%S')}", flush=True)
    print(machine_line(), flush=True)


if __name__ == "__main__":
    main()
