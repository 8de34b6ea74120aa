"""Tokenizer, chat templates (both locations, sandboxed) and streaming detokenization."""

from __future__ import annotations

import json
import shutil

import pytest
from llmfleet.engine.errors import InvalidRequest, ModelLoadError
from llmfleet.engine.tokenizer import IncrementalDetokenizer, Tokenizer

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
EXPECTED = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_chat_template_from_tokenizer_config(tiny_llama):
    assert Tokenizer(tiny_llama).apply_chat_template(MESSAGES) == EXPECTED


def test_chat_template_from_chat_template_jinja(tiny_qwen2):
    assert not (json.loads((tiny_qwen2 / "tokenizer_config.json").read_text())).get("chat_template")
    assert Tokenizer(tiny_qwen2).apply_chat_template(MESSAGES) == EXPECTED


def test_chat_template_matches_transformers(tiny_llama):
    import transformers
    ref = transformers.AutoTokenizer.from_pretrained(str(tiny_llama))
    assert Tokenizer(tiny_llama).apply_chat_template(MESSAGES) == ref.apply_chat_template(
        MESSAGES, tokenize=False, add_generation_prompt=True)


def test_template_is_sandboxed(tiny_llama, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(tiny_llama, model)
    (model / "chat_template.jinja").write_text("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(InvalidRequest):
        Tokenizer(model).apply_chat_template(MESSAGES)


def test_template_raise_exception_is_a_client_error(tiny_llama, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(tiny_llama, model)
    (model / "chat_template.jinja").write_text("{{ raise_exception('roles must alternate') }}")
    with pytest.raises(InvalidRequest, match="roles must alternate"):
        Tokenizer(model).apply_chat_template(MESSAGES)


THINKING_TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>"
    "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}{% endif %}"
)


@pytest.mark.parametrize("kwargs", [{}, {"enable_thinking": False}, {"enable_thinking": True}])
def test_template_variables_from_the_request_render_as_transformers_renders_them(tiny_llama, tmp_path, kwargs):
    from transformers import AutoTokenizer

    model = tmp_path / "m"
    shutil.copytree(tiny_llama, model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    (model / "chat_template.jinja").write_text(THINKING_TEMPLATE)
    ours = Tokenizer(model).apply_chat_template(MESSAGES, **kwargs)
    ref = AutoTokenizer.from_pretrained(model).apply_chat_template(MESSAGES, tokenize=False,
                                                                    add_generation_prompt=True, **kwargs)
    assert ours == ref
    assert ours.endswith("<think></think>") == (kwargs == {"enable_thinking": False})


def test_broken_template_fails_at_load(tiny_llama, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(tiny_llama, model)
    (model / "chat_template.jinja").write_text("{% for %}")
    with pytest.raises(ModelLoadError, match="chat template"):
        Tokenizer(model)


@pytest.mark.parametrize("text", ["Hello, world!", "naïve café — ünïcödé ✓ 日本語 🙂", "  spaces\n\tand tabs  "])
def test_incremental_detokenization_equals_full_decode(tiny_llama, text):
    tok = Tokenizer(tiny_llama)
    ids = tok.encode(text, add_special_tokens=False)
    detok = IncrementalDetokenizer(tok)
    pieces = [detok.add(i) for i in ids]
    assert "".join(pieces) == tok.decode(ids) == text
    assert all("\ufffd" not in p for p in pieces)
