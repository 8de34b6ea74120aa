"""`make bench-router`: llmfleet-router against a random pick per request, in the same run.

1. Prefix routing: `--replicas` engine processes (a small random Llama, one thread each) on
   loopback; a multi-tenant workload (`--tenants` long system prompts, short questions,
   Poisson arrivals at `--rate`/s), streamed. Arm "router" sends every request through
   llmfleet-router; arm "random" sends each to a replica picked at random (what a Service's
   kube-proxy does). Each arm has system prompts of its own (same lengths), so neither warms
   the other's prefix cache. Reported: prefix-cache hit rate (engine counters: prompt tokens
   found / looked up) and TTFT p50/p95.
2. The router's own cost: a fake engine answering at once; latency p50/p99 of small requests
   straight to it and through the router (interleaved), and requests/s through one router
   process with 32 concurrent clients against the same straight to the fake; since that
   client shares the machine, also the router's CPU time per request (what one router
   process carries on one full core), next to the fake engine's own.

The router runs in a process of its own over a fixed fleet (no cluster). Figures vary a lot
on a shared machine: compare the two arms of one run, not runs.

    python -m benchmarks.bench_router [--replicas 3] [--tenants 4] [--requests 80] [--rate 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

QUESTIONS = ["What does {} do?", "How do I use {} safely?", "Show an example of {}.", "Is {} thread-safe?",
             "What replaced {}?", "When should I avoid {}?"]
TOPICS = ["json.dumps", "os.path.join", "asyncio.gather", "functools.lru_cache", "re.compile", "pathlib.Path",
          "subprocess.run", "itertools.groupby", "dataclasses.field", "collections.deque"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def system_prompt(tenant: str, words: int) -> str:
    rng = random.Random(tenant)
    vocab = ["answer", "briefly", "python", "library", "module", "function", "example", "careful", "always",
             "never", "explain", "standard", "code", "return", "value", "error", "string", "list", "dict"]
    return f"You are the assistant of {tenant}. " + " ".join(rng.choice(vocab) for _ in range(words))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# --- the router process -----------------------------------------------------------------


def serve_router(port: int, model: str, urls: list[str]) -> None:
    """llmfleet-router over a fixed fleet: no cluster, the same app and poller."""
    import uvicorn
    from llmfleet.router.app import RouterApp
    from llmfleet.router.config import RouterConfig
    from llmfleet.router.fleet import Fleet, Replica, ServiceInfo
    from llmfleet.router.poller import run_poller

    config = RouterConfig(port=port)
    fleet = Fleet()
    service = ServiceInfo("bench", model, model)
    fleet.set_service(service)
    fleet.set_keys(service.id, None)
    for i, url in enumerate(urls):
        fleet.set_replica(Replica("bench", f"replica-{i}", model, url, True))
    app = RouterApp(config, fleet)
    app.background = (lambda: run_poller(fleet, app.client, config, app.metrics),)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


def start_router(model: str, urls: list[str]) -> tuple[str, subprocess.Popen]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_router", "--serve-router", str(port), model,
                             ",".join(urls)])
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/ready", proc)
    return url, proc


# --- 1. prefix routing ------------------------------------------------------------------


async def one_stream(client: httpx.AsyncClient, url: str, body: dict) -> float | None:
    """TTFT in seconds of one streamed chat request; None when it failed."""
    started = time.perf_counter()
    try:
        async with client.stream("POST", url + "/v1/chat/completions", json=body) as resp:
            if resp.status_code != 200:
                return None
            async for line in resp.aiter_lines():
                if line.startswith("data: {") and '"content"' in line:
                    return time.perf_counter() - started
    except httpx.HTTPError:
        return None
    return None


def engine_counter(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(name + " "))


async def run_arm(arm: str, send_to, engines: list[str], args, model: str) -> dict:
    rng = random.Random(7)  # the same arrivals and questions in both arms
    tenants = [f"{arm}-tenant-{t}" for t in range(args.tenants)]
    prompts = {t: system_prompt(t, args.system_words) for t in tenants}
    before = [(engine_counter(e, "llmfleet_engine_prefix_cache_hits_total"),
               engine_counter(e, "llmfleet_engine_prefix_cache_queries_total")) for e in engines]
    ttfts: list[float] = []
    failed = 0
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=None)) as client:
        tasks = []
        for i in range(args.requests):
            await asyncio.sleep(rng.expovariate(args.rate))
            tenant = rng.choice(tenants)
            question = rng.choice(QUESTIONS).format(rng.choice(TOPICS)) + f" (#{i})"
            body = {"model": model, "max_tokens": 16, "temperature": 0, "stream": True,
                    "messages": [{"role": "system", "content": prompts[tenant]},
                                 {"role": "user", "content": question}]}
            tasks.append(asyncio.create_task(one_stream(client, send_to(), body)))
        for ttft in await asyncio.gather(*tasks):
            if ttft is None:
                failed += 1
            else:
                ttfts.append(ttft)
    after = [(engine_counter(e, "llmfleet_engine_prefix_cache_hits_total"),
              engine_counter(e, "llmfleet_engine_prefix_cache_queries_total")) for e in engines]
    hits = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
    queried = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
    return {"arm": arm, "hit_rate": hits / queried if queried else float("nan"), "ttft_p50": percentile(ttfts, 0.5),
            "ttft_p95": percentile(ttfts, 0.95), "ok": len(ttfts), "failed": failed}


def prefix_routing(args) -> list[dict]:
    from tools.tinymodel import TinySpec, make_tiny_model

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="bench-router-"))
    spec = TinySpec(hidden_size=256, intermediate_size=768, num_layers=6, num_heads=8, num_kv_heads=4, seed=3,
                    max_position_embeddings=2048)
    model_dir = make_tiny_model(workdir / "model", spec)
    engines, procs = [], []
    try:
        for _ in range(args.replicas):
            port = free_port()
            log = open(workdir / f"engine-{port}.log", "w")  # noqa: SIM115 (closed with the process)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "llmfleet.engine.cli", "serve", "--model", str(model_dir), "--host", "127.0.0.1",
                 "--port", str(port), "--threads", "1", "--device", "cpu", "--served-model-name", "bench",
                 "--max-model-len", "2048"], stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "OMP_NUM_THREADS": "1"}))
            engines.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(engines, procs, strict=True):
            wait_ready(url + "/ready", proc)
        router, rproc = start_router("bench", engines)
        procs.append(rproc)
        rng = random.Random(11)
        arms = [("router", lambda: router), ("random", lambda: rng.choice(engines))]
        if args.random_first:
            arms.reverse()
        return [asyncio.run(run_arm(name, pick, engines, args, "bench")) for name, pick in arms]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


# --- 2. the router's own cost -------------------------------------------------------------


def serve_fake(port: int) -> None:
    import uvicorn

    answer = json.dumps({"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}).encode()
    metrics = b"llmfleet_engine_requests_waiting 0\nllmfleet_engine_requests_running 0\n"

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        body = metrics if scope["path"] == "/metrics" else answer
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")


async def latencies(urls: list[str], n: int) -> dict[str, list[float]]:
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}
    out: dict[str, list[float]] = {u: [] for u in urls}
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(n):
            for url in urls:  # interleaved: both see the same moments of machine load
                started = time.perf_counter()
                resp = await client.post(url + "/v1/chat/completions", json=body)
                resp.raise_for_status()
                out[url].append(time.perf_counter() - started)
    return out


async def throughput(url: str, seconds: float, concurrency: int = 32) -> tuple[float, int]:
    """(requests/s, requests answered) with `concurrency` clients for `seconds`."""
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}
    done = 0
    stop = time.perf_counter() + seconds

    async def worker(client):
        nonlocal done
        while time.perf_counter() < stop:
            resp = await client.post(url + "/v1/chat/completions", json=body)
            if resp.status_code == 200:
                done += 1

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=None)) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return done / (time.perf_counter() - started), done


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _best_rps(direct: str, router: str, seconds: float, router_pid: int, engine_pid: int) -> dict:
    """Requests/s straight and through the router (alternated, best of two: the machine's load
    changes between slices), and the CPU each process spent per request through the router:
    the client shares the machine, so requests/s is bounded by it as much as by the router,
    while CPU per request says what one router process carries on one full core."""
    rounds, router_cpu, engine_cpu, served = [], 0.0, 0.0, 0
    for _ in range(2):
        d, _ = asyncio.run(throughput(direct, seconds))
        r0, e0 = cpu_seconds(router_pid), cpu_seconds(engine_pid)
        r, n = asyncio.run(throughput(router, seconds))
        router_cpu += cpu_seconds(router_pid) - r0
        engine_cpu += cpu_seconds(engine_pid) - e0
        served += n
        rounds.append((d, r))
    return {"direct_rps": max(d for d, _ in rounds), "router_rps": max(r for _, r in rounds),
            "router_cpu_per_request": router_cpu / served, "engine_cpu_per_request": engine_cpu / served}


def router_cost(args) -> dict:
    port = free_port()
    fake = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_router", "--serve-fake", str(port)])
    procs = [fake]
    try:
        direct = f"http://127.0.0.1:{port}"
        wait_ready(direct + "/metrics", fake)
        router, rproc = start_router("fake", [direct])
        procs.append(rproc)
        lat = asyncio.run(latencies([direct, router], args.latency_requests))
        return {
            "direct_p50": percentile(lat[direct], 0.5), "direct_p99": percentile(lat[direct], 0.99),
            "router_p50": percentile(lat[router], 0.5), "router_p99": percentile(lat[router], 0.99),
            "added_p50": statistics.median(r - d for r, d in zip(lat[router], lat[direct], strict=True)),
            # alternated, best of two each: the machine's load changes between slices
            **_best_rps(direct, router, args.throughput_seconds, rproc.pid, fake.pid),
        }
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-router":
        serve_router(int(sys.argv[2]), sys.argv[3], sys.argv[4].split(","))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-fake":
        serve_fake(int(sys.argv[2]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--tenants", type=int, default=4)
    p.add_argument("--system-words", type=int, default=300, help="words per system prompt (~1.5 tokens each)")
    p.add_argument("--requests", type=int, default=80, help="requests per arm")
    p.add_argument("--rate", type=float, default=2.0, help="Poisson arrivals per second")
    p.add_argument("--random-first", action="store_true", help="run the random arm first")
    p.add_argument("--latency-requests", type=int, default=300)
    p.add_argument("--throughput-seconds", type=float, default=10.0)
    p.add_argument("--skip-prefix", action="store_true")
    args = p.parse_args()
    if not args.skip_prefix:
        arms = prefix_routing(args)
        print(f"\nprefix routing: {args.replicas} replicas, {args.tenants} tenants, {args.requests} requests per arm "
              f"at {args.rate:g}/s (streamed, 16 tokens)")
        print("| arm | prefix-cache hit rate | TTFT p50 | TTFT p95 | ok | failed |")
        print("| --- | --- | --- | --- | --- | --- |")
        for a in arms:
            print(f"| {a['arm']} | {a['hit_rate']:.0%} | {a['ttft_p50'] * 1000:.0f} ms | {a['ttft_p95'] * 1000:.0f} ms "
                  f"| {a['ok']} | {a['failed']} |")
    cost = router_cost(args)
    print(f"\nrouter cost against a fake engine that answers at once ({args.latency_requests} requests each, "
          "interleaved; requests/s: 32 concurrent clients in one Python process, best of two alternated rounds, "
          "so bounded by the client as much as by the router):")
    print("| path | latency p50 | latency p99 | requests/s |")
    print("| --- | --- | --- | --- |")
    print(f"| straight to the engine | {cost['direct_p50'] * 1000:.2f} ms | {cost['direct_p99'] * 1000:.2f} ms "
          f"| {cost['direct_rps']:.0f} |")
    print(f"| through llmfleet-router | {cost['router_p50'] * 1000:.2f} ms | {cost['router_p99'] * 1000:.2f} ms "
          f"| {cost['router_rps']:.0f} |")
    print(f"added by the router, p50 of paired differences: {cost['added_p50'] * 1000:.2f} ms")
    print(f"CPU per request through the router: router {cost['router_cpu_per_request'] * 1000:.2f} ms, the fake engine "
          f"behind it {cost['engine_cpu_per_request'] * 1000:.2f} ms: one router process at one full core carries "
          f"~{1 / cost['router_cpu_per_request']:.0f} requests/s (the fake engine ~"
          f"{1 / cost['engine_cpu_per_request']:.0f}/s)")


if __name__ == "__main__":
    main()
