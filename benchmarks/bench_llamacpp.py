"""The llama.cpp baseline of `make bench`: the same checkpoint, converted to GGUF f32, served through
llama-cpp-python's low-level batch API.

llama.cpp's bundled Python server answers one request at a time, so the batched baseline is written
here against the C API (`llama_batch_init` / `llama_decode`), as a simple continuous-batching server
would do it: up to `slots` requests run at once, each with its own `seq_id` (its own KV stream); every
step feeds each running request's last token and fills the rest of the step's token budget with prompt
chunks of requests that are still prefilling; the next token is the argmax of the logits (greedy);
a finished request's KV cells are dropped and its slot goes to the next arrival. Token ids are fed
directly: nothing is tokenized by llama.cpp (speed does not depend on the tokenizer).

The GGUF is written once, next to the checkpoint (`model-f32.gguf`), by `convert_hf_to_gguf.py` from
the llama-cpp-python source distribution (its vendored llama.cpp and gguf-py), run unmodified except
for two in-process patches, both about the tokenizer only:
  * our tokenizer is a byte-level BPE trained locally, whose pre-tokenizer hash the converter does not
    know (it raises "BPE pre-tokenizer was not recognized"): an unknown hash is written as "gpt-2",
    which is what it is (ByteLevel pre-tokenizer with the GPT-2 split regex);
  * the converter tries a SentencePiece vocabulary first and needs the `sentencepiece` package just to
    find out that there is no tokenizer.model: without that package, the missing file is reported as
    missing, which is what the converter expects.
The weights and hyper-parameters go through the converter as they are.

Each run happens in a child process (`python -m benchmarks.bench_llamacpp`), so that llama.cpp's
OpenMP threads never compete with torch's in one process and a crash in native code cannot take the
benchmark down. Installation: `make bench-deps` (compiles llama-cpp-python locally, once per machine,
and keeps its source distribution in the cache for the converter).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from benchmarks.bench import CACHE, Req, Result

GGUF_NAME = "model-f32.gguf"  # the default; `--outtype bf16` runs write model-bf16.gguf beside it
SRC_CACHE = CACHE / "llama-cpp"


class Skip(Exception):
    """The baseline cannot run here; the message says why, in a form that can be printed as is."""


# -- is it there? ----------------------------------------------------------------------------------
def importable() -> tuple[bool, str]:
    """Whether `llama_cpp` imports (in a child process: loading it must not touch this one)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return False, "llama-cpp-python is not installed (`make bench-deps` compiles it, ~10 minutes)"
    p = subprocess.run([sys.executable, "-c", "import llama_cpp"], capture_output=True, text=True)
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        return False, f"llama_cpp does not import: {last}"
    return True, ""


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama_cpp_python")
    except PackageNotFoundError as e:
        raise Skip("llama-cpp-python is not installed (`make bench-deps`)") from e


def converter_dir() -> pathlib.Path:
    """The vendored llama.cpp folder (convert_hf_to_gguf.py, conversion/, gguf-py/) of the sdist.

    Looks at $LLMFLEET_LLAMA_CPP_SRC (an sdist .tar.gz, or a folder holding convert_hf_to_gguf.py),
    then at the sdist `make bench-deps` downloads: <cache>/llama-cpp/llama_cpp_python-<version>.tar.gz
    for the installed version. Extracts only the converter's files, once.
    """
    env = os.environ.get("LLMFLEET_LLAMA_CPP_SRC")
    if env and pathlib.Path(env).is_dir():
        d = pathlib.Path(env)
        if (d / "convert_hf_to_gguf.py").exists():
            return d
        if (d / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py").exists():
            return d / "vendor" / "llama.cpp"
        raise Skip(f"no convert_hf_to_gguf.py under LLMFLEET_LLAMA_CPP_SRC={env}")
    if env:
        sdist = pathlib.Path(env)
    else:
        ver = _installed_version()
        sdist = SRC_CACHE / f"llama_cpp_python-{ver}.tar.gz"
    if not sdist.exists():
        raise Skip(f"the converter's source distribution {sdist} is missing (`make bench-deps` downloads it)")
    out = SRC_CACHE / sdist.name.removesuffix(".tar.gz")
    conv = out / "vendor" / "llama.cpp"
    if not (conv / "convert_hf_to_gguf.py").exists():
        wanted = ("vendor/llama.cpp/convert_hf_to_gguf.py", "vendor/llama.cpp/conversion/",
                  "vendor/llama.cpp/gguf-py/gguf/")
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers()
                       if any(m.name.split("/", 1)[-1].startswith(w) for w in wanted)]
            for m in members:  # paths inside as <top>/vendor/...: move them under `out`
                m.name = m.name.split("/", 1)[-1]
            tar.extractall(out, members=members, filter="data")
    return conv


# The converter, run as a script in a child process with the two tokenizer patches described above.
_CONVERT = r"""
import pathlib, runpy, sys
conv, outfile, model, outtype = sys.argv[1:5]
sys.path.insert(0, conv)
sys.path.insert(1, str(pathlib.Path(conv) / "gguf-py"))  # as the script itself does
import conversion.base as base

pre = base.TextModel.get_vocab_base_pre
def get_vocab_base_pre(self, tokenizer):
    try:
        return pre(self, tokenizer)
    except NotImplementedError:  # unknown pre-tokenizer hash: ours is byte-level BPE, GPT-2 regex
        print("llmfleet: unknown BPE pre-tokenizer hash, written as 'gpt-2'", file=sys.stderr)
        return "gpt-2"
base.TextModel.get_vocab_base_pre = get_vocab_base_pre

spm = base.TextModel._set_vocab_sentencepiece
def _set_vocab_sentencepiece(self, *a, **kw):
    if not (self.dir_model / "tokenizer.model").is_file():
        raise FileNotFoundError("no tokenizer.model")
    return spm(self, *a, **kw)
base.TextModel._set_vocab_sentencepiece = _set_vocab_sentencepiece

sys.argv = ["convert_hf_to_gguf.py", "--outtype", outtype, "--outfile", outfile, model]
runpy.run_path(str(pathlib.Path(conv) / "convert_hf_to_gguf.py"), run_name="__main__")
"""


def ensure_gguf(model: pathlib.Path, outtype: str = "f32") -> pathlib.Path:
    """<model>/model-<outtype>.gguf, converted from model.safetensors unless already there and newer."""
    out = model / f"model-{outtype}.gguf"
    src = model / "model.safetensors"
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    if importlib.util.find_spec("gguf") is None:
        raise Skip("the `gguf` package is missing (`make bench-deps` installs it)")
    conv = converter_dir()
    tmp = out.with_suffix(".gguf.tmp")
    print(f"converting {src} to GGUF {outtype} with {conv / 'convert_hf_to_gguf.py'} ...", flush=True)
    p = subprocess.run([sys.executable, "-c", _CONVERT, str(conv), str(tmp), str(model), outtype],
                       capture_output=True, text=True)
    if p.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise Skip("convert_hf_to_gguf.py failed: " + " | ".join(p.stderr.strip().splitlines()[-3:]))
    tmp.replace(out)
    return out


# -- scheduling (pure: no llama_cpp) ----------------------------------------------------------------
@dataclass
class Seq:
    """One request in flight. `fed` counts the tokens already in its KV stream."""

    index: int  # position of the request in the workload
    prompt: list[int]
    max_tokens: int
    arrival: float
    seq_id: int = -1
    fed: int = 0
    out: list[int] = field(default_factory=list)
    first_at: float | None = None

    @property
    def prefilling(self) -> bool:
        return self.fed < len(self.prompt)

    @property
    def done(self) -> bool:
        return len(self.out) >= self.max_tokens


@dataclass
class Entry:
    """A run of consecutive tokens of one sequence in a llama_batch."""

    seq: Seq
    tokens: list[int]
    pos: int  # position of tokens[0] in the sequence
    logits: bool  # whether the last token's logits are wanted


def admit(waiting: list[Seq], running: list[Seq], free_ids: list[int], now: float) -> None:
    """Move arrived requests (arrival order) from `waiting` into free slots; each gets a free seq_id."""
    while waiting and free_ids and waiting[0].arrival <= now:
        s = waiting.pop(0)
        s.seq_id = free_ids.pop(0)
        running.append(s)


def plan_step(running: Sequence[Seq], budget: int) -> list[Entry]:
    """The tokens of one llama_decode: each decoding sequence's last token first (decodes never wait
    behind a long prompt), then prompt chunks in admission order while the token budget lasts. Logits
    are asked for a decode token, and for a prompt chunk only when it ends the prompt."""
    entries = []
    for s in running:
        if not s.prefilling and s.out and not s.done:
            entries.append(Entry(s, [s.out[-1]], len(s.prompt) + len(s.out) - 1, True))
    left = budget - len(entries)
    for s in running:
        if left <= 0:
            break
        if s.prefilling:
            chunk = s.prompt[s.fed:s.fed + left]
            entries.append(Entry(s, chunk, s.fed, s.fed + len(chunk) == len(s.prompt)))
            left -= len(chunk)
    return entries


def step_done(entries: list[Entry]) -> None:
    """Account for a decoded step: the fed tokens are now in each sequence's KV stream."""
    for e in entries:
        e.seq.fed = e.pos + len(e.tokens)


# -- the runner (child process) ---------------------------------------------------------------------
class Engine:
    """A llama.cpp model and context driven through the low-level C API."""

    def __init__(self, gguf: str, threads: int, slots: int, ctx_per_seq: int, n_batch: int, kv_type: str = "f32"):
        import llama_cpp as L
        import numpy as np

        self.L, self.np = L, np
        L.llama_backend_init()
        self._quiet = L.llama_log_callback(lambda level, text, user: None)  # keep a reference
        L.llama_log_set(self._quiet, None)
        mp = L.llama_model_default_params()
        self.model = L.llama_model_load_from_file(gguf.encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {gguf}")
        cp = L.llama_context_default_params()
        cp.n_ctx = slots * ctx_per_seq
        cp.n_batch = cp.n_ubatch = n_batch
        cp.n_seq_max = slots
        cp.n_threads = cp.n_threads_batch = threads
        cp.kv_unified = False  # one KV stream per sequence: a decode attends only to its own tokens
        # f32 throughout, as ours and transformers': KV cache in f32 (default f16), and no flash attention,
        # whose CPU kernel rounds to f16 whatever the KV type (logits then differ from transformers' by
        # ~4e-3 instead of ~2e-6, enough to flip near-tie argmaxes of a random model)
        # (a bf16 GGUF gets a bf16 KV cache, as our bf16 engine has)
        # (llama-cpp-python 0.3.36 does not export GGML_TYPE_BF16; 30 is its value in ggml.h)
        cp.type_k = cp.type_v = getattr(L, "GGML_TYPE_BF16", 30) if kv_type == "bf16" else L.GGML_TYPE_F32
        cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cp.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context")
        self.mem = L.llama_get_memory(self.ctx)
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        self.n_batch = n_batch
        self.batch = L.llama_batch_init(n_batch, 0, 1)

    def decode(self, entries: list[Entry]) -> list[int]:
        """Run one llama_decode; the greedy next token of every entry that asked for logits."""
        b, n, outs = self.batch, 0, []
        for e in entries:
            for j, t in enumerate(e.tokens):
                b.token[n] = t
                b.pos[n] = e.pos + j
                b.n_seq_id[n] = 1
                b.seq_id[n][0] = e.seq.seq_id
                last = j == len(e.tokens) - 1
                b.logits[n] = 1 if (e.logits and last) else 0
                if e.logits and last:
                    outs.append(n)
                n += 1
        b.n_tokens = n
        rc = self.L.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        step_done(entries)
        picked = []
        for i in outs:
            row = self.np.ctypeslib.as_array(self.L.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,))
            picked.append(int(row.argmax()))
        return picked

    def free(self, s: Seq) -> None:
        self.L.llama_memory_seq_rm(self.mem, s.seq_id, -1, -1)

    def close(self) -> None:
        self.L.llama_batch_free(self.batch)
        self.L.llama_free(self.ctx)
        self.L.llama_model_free(self.model)


def serve(eng: Engine, reqs: list[Req], slots: int,
          clock: Callable[[], float] = time.monotonic) -> tuple[Result, list[list[int]]]:
    """Continuous batching of `reqs` (arrivals relative to the start) over `slots` sequences."""
    waiting = sorted((Seq(i, list(r.prompt), r.max_tokens, r.arrival) for i, r in enumerate(reqs)),
                     key=lambda s: s.arrival)
    running: list[Seq] = []
    free_ids = list(range(slots))
    res = Result(n=len(reqs))
    tokens: list[list[int]] = [[] for _ in reqs]
    t0 = clock()
    while waiting or running:
        admit(waiting, running, free_ids, clock() - t0)
        if not running:
            time.sleep(max(0.0, waiting[0].arrival - (clock() - t0)))
            continue
        entries = plan_step(running, eng.n_batch)
        picked = eng.decode(entries)
        now = clock()
        for e, tok in zip((e for e in entries if e.logits), picked, strict=True):
            s = e.seq
            s.out.append(tok)
            if s.first_at is None:
                s.first_at = now
        for s in [s for s in running if s.done]:
            first = s.first_at if s.first_at is not None else now
            res.ttft.append(first - (t0 + s.arrival))
            if s.max_tokens > 1:
                res.tpot.append((now - first) / (s.max_tokens - 1))
            res.out_tokens += s.max_tokens
            tokens[s.index] = s.out
            eng.free(s)
            free_ids.append(s.seq_id)
            running.remove(s)
    res.wall = clock() - t0
    return res, tokens


def _child() -> None:
    job = json.load(sys.stdin)
    reqs = [Req(p, m, a) for p, m, a in job["reqs"]]
    slots = max(1, min(job["slots"], len(reqs)))
    need = max(len(r.prompt) + r.max_tokens for r in reqs)
    eng = Engine(job["gguf"], job["threads"], slots, ctx_per_seq=-(-need // 256) * 256, n_batch=512,
                 kv_type=job.get("kv_type", "f32"))
    try:
        serve(eng, [Req([700, 800, 900], 4)], 1)  # warm-up, not charged to the run
        res, tokens = serve(eng, reqs, slots)
    finally:
        eng.close()
    print(json.dumps({"result": res.__dict__, "tokens": tokens}))


# -- what bench.py calls ----------------------------------------------------------------------------
class Baseline:
    """The llama.cpp baseline for one checkpoint: converts it once, then serves workloads, each in a
    child process. A run that fails is reported as an error figure (its requests count as failed)."""

    def __init__(self, model: pathlib.Path, threads: int, outtype: str = "f32"):
        ok, why = importable()
        if not ok:
            raise Skip(why)
        self.model = model
        self.gguf = ensure_gguf(model, outtype)
        self.outtype = outtype
        self.threads = threads
        self.samples: list[tuple[str, list[int], list[int]]] = []  # (label, prompt, greedy tokens)

    def run(self, reqs: list[Req], slots: int) -> tuple[Result, list[list[int]]]:
        job = {"gguf": str(self.gguf), "threads": self.threads, "slots": slots, "kv_type": self.outtype,
               "reqs": [[r.prompt, r.max_tokens, r.arrival] for r in reqs]}
        p = subprocess.run([sys.executable, "-m", "benchmarks.bench_llamacpp"], input=json.dumps(job),
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"llama.cpp run exited {p.returncode}: " + p.stderr.strip()[-1500:])
        out = json.loads(p.stdout.strip().splitlines()[-1])
        res = Result()
        res.__dict__.update(out["result"])
        return res, out["tokens"]

    def mixed(self, reqs: list[Req], slots: int) -> dict:
        """Figures of a workload served with continuous batching over `slots` sequences."""
        try:
            res, tokens = self.run(reqs, slots)
        except (RuntimeError, ValueError, KeyError) as e:
            return {"error": str(e), "failed": len(reqs)}
        for i in sorted({0, len(reqs) // 2, len(reqs) - 1}):
            self.samples.append((f"mixed request {i} (batched)", reqs[i].prompt, tokens[i]))
        return res.summary()

    def single(self, reqs: list[Req]) -> dict:
        """Figures of requests served one after another, each alone (batch 1)."""
        total = Result(n=len(reqs))
        for i, r in enumerate(reqs):
            try:
                res, tokens = self.run([r], 1)
            except (RuntimeError, ValueError, KeyError) as e:
                return {"error": str(e), "failed": len(reqs)}
            if i == 0:
                self.samples.append(("single request 0", r.prompt, tokens[0]))
            total.wall += res.wall
            total.out_tokens += res.out_tokens
            total.ttft += res.ttft
            total.tpot += res.tpot
        return total.summary()

    def sanity(self, n: int = 16) -> list[str]:
        """Greedy tokens of some requests against `transformers` greedy on the same checkpoint."""
        import torch
        import transformers

        torch.set_num_threads(self.threads)
        hf = transformers.AutoModelForCausalLM.from_pretrained(self.model, dtype=torch.float32).eval()
        hf.generation_config.eos_token_id = None  # plain argmax, as llama.cpp is driven (no EOS masking)
        lines = []
        for label, prompt, tokens in self.samples:
            ref = transformers_greedy(hf, prompt, min(n, len(tokens)))
            same = agreement(tokens, ref)
            verdict = "OK" if same == len(ref) else "MISMATCH"
            lines.append(f"{verdict}: {label}, prompt {len(prompt)}: first {same}/{len(ref)} greedy tokens "
                         "equal transformers'")
        return lines


def setup(model: pathlib.Path, threads: int, wanted: bool | None) -> tuple[Baseline | None, str]:
    """The baseline, or None and why not. `wanted` None: run it when llama_cpp imports."""
    if wanted is False:
        return None, "--no-llama-cpp"
    try:
        return Baseline(model, threads), ""
    except Skip as e:
        return None, str(e)


def ratio_lines(figures: dict, ratio: Callable[..., str]) -> list[str]:
    """Ratio lines for bench.py's summary (n/a where a figure is missing)."""
    m, s = figures.get("mixed_llamacpp", {}), figures.get("single_llamacpp", {})
    return [
        f"mixed output tok/s       llmfleet / llama.cpp:     {ratio(figures['mixed_llmfleet'], m, 'out_tok_per_s')}",
        f"mixed output tok/s       llama.cpp / transformers: "
        f"{ratio(m, figures['mixed_transformers'], 'out_tok_per_s')}",
        f"single decode tok/s      llmfleet / llama.cpp:     {ratio(figures['single_llmfleet'], s, 'out_tok_per_s')}",
        # the same dtype as llama.cpp's GGUF: without bf16 weights' halved bytes
        f"single decode tok/s      llmfleet fp32 / llama.cpp: "
        f"{ratio(figures.get('single_llmfleet_fp32', {}), s, 'out_tok_per_s')}",
        f"single decode tok/s      llama.cpp / transformers: "
        f"{ratio(s, figures['single_transformers'], 'out_tok_per_s')}",
    ]


def transformers_greedy(hf, prompt: list[int], n: int) -> list[int]:
    """`transformers` greedy continuation of `prompt` (end-of-sequence ignored), for the sanity check."""
    import torch

    with torch.inference_mode():
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def agreement(a: list[int], b: list[int]) -> int:
    """How many leading tokens two greedy continuations share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


if __name__ == "__main__":
    _child()
