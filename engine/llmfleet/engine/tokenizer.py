"""Tokenizer, chat template and incremental detokenization.

The tokenizer comes from tokenizer.json (the `tokenizers` library, no
transformers needed at serving time). The chat template comes from
chat_template.jinja when present (newer checkpoints keep it there), else from
tokenizer_config.json, and is rendered in Jinja's immutable sandbox: a template
is code shipped with a downloaded model and must not reach Python internals.
"""

from __future__ import annotations

import json
import pathlib

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import InvalidRequest, ModelLoadError


def _token_str(v) -> str | None:
    if isinstance(v, dict):  # AddedToken serialised form
        return v.get("content")
    return v


class Tokenizer:
    def __init__(self, model_dir: pathlib.Path):
        from tokenizers import Tokenizer as HFTokenizer

        path = model_dir / "tokenizer.json"
        if not path.exists():
            raise ModelLoadError(f"{path}: missing (a tokenizer.json is required)")
        try:
            self._tok = HFTokenizer.from_file(str(path))
        except Exception as e:
            raise ModelLoadError(f"{path}: cannot load tokenizer ({e})") from None
        cfg_path = model_dir / "tokenizer_config.json"
        cfg: dict = {}
        if cfg_path.exists():
            try:
                cfg = json.loads(cfg_path.read_text())
            except json.JSONDecodeError as e:
                raise ModelLoadError(f"{cfg_path}: not valid JSON ({e})") from None
        self.bos_token = _token_str(cfg.get("bos_token"))
        self.eos_token = _token_str(cfg.get("eos_token"))
        self.chat_template = self._find_template(model_dir, cfg)
        self._env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        self._env.globals["raise_exception"] = self._raise
        self._template = None
        if self.chat_template:
            try:
                self._template = self._env.from_string(self.chat_template)
            except TemplateError as e:
                raise ModelLoadError(f"{model_dir}: chat template does not compile ({e})") from None
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

    @staticmethod
    def _find_template(model_dir: pathlib.Path, cfg: dict) -> str | None:
        jinja = model_dir / "chat_template.jinja"
        if jinja.exists():
            return jinja.read_text()
        t = cfg.get("chat_template")
        if isinstance(t, list):  # named templates: use "default"
            named = {x.get("name"): x.get("template") for x in t if isinstance(x, dict)}
            t = named.get("default") or next(iter(named.values()), None)
        return t

    @staticmethod
    def _raise(message: str):
        raise InvalidRequest(f"chat template: {message}", param="messages")

    @property
    def eos_token_id(self) -> int | None:
        return self._tok.token_to_id(self.eos_token) if self.eos_token else None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        # encode_batch releases the GIL (encode does not): a megabyte prompt tokenized on a
        # worker thread then leaves the event loop free to answer probes meanwhile.
        return self._tok.encode_batch([text], add_special_tokens=add_special_tokens)[0].ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True, **extra) -> str:
        if self._template is None:
            raise InvalidRequest("this model has no chat template; use /v1/completions", param="messages")
        try:
            return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                         bos_token=self.bos_token or "", eos_token=self.eos_token or "", **extra)
        except InvalidRequest:
            raise
        except Exception as e:  # a template error is the request's (its messages) or the model's
            raise InvalidRequest(f"chat template failed: {e}", param="messages") from None


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas, holding back incomplete UTF-8.

    Byte-level BPE splits multi-byte characters across tokens; decoding such a
    prefix yields U+FFFD, so text is only released once it no longer ends in one.
    Only the tokens since the last release are re-decoded, keeping the cost constant.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tok = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.text = ""

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        prefix = self.tok.decode(self.ids[self.prefix_offset:self.read_offset])
        full = self.tok.decode(self.ids[self.prefix_offset:])
        if full.endswith("\ufffd") or len(full) < len(prefix):
            return ""
        delta = full[len(prefix):]
        # the tokens just released become the left context of the next decode, so a
        # tokenizer that strips a leading space from a slice strips it from context only
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        self.text += delta
        return delta
