"""The official `openai` client against a real engine process, and the API's error contract."""

from __future__ import annotations

import json
import shutil

import httpx
import openai
import pytest
from engine_process import EngineProcess


@pytest.fixture(scope="module")
def client(engine_server):
    return openai.OpenAI(base_url=engine_server.url + "/v1", api_key="unused", max_retries=0)


def test_models(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_completion(client):
    r = client.completions.create(model="tiny", prompt="Beautiful is better than", max_tokens=7, temperature=0,
                                  extra_body={"ignore_eos": True})
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 7
    assert r.usage.total_tokens == r.usage.prompt_tokens + 7
    assert isinstance(r.choices[0].text, str)


def test_token_id_prompt_equals_text_prompt(client, tiny_llama):
    from llmfleet.engine.tokenizer import Tokenizer

    ids = Tokenizer(tiny_llama).encode("Simple is better than complex")
    kw = dict(model="tiny", max_tokens=6, temperature=0, extra_body={"ignore_eos": True})
    by_text = client.completions.create(prompt="Simple is better than complex", **kw)
    by_ids = client.completions.create(prompt=ids, **kw)
    assert by_ids.choices[0].text == by_text.choices[0].text
    assert by_ids.usage.prompt_tokens == len(ids)


def test_chat(client):
    r = client.chat.completions.create(model="tiny", messages=[{"role": "system", "content": "Be brief."},
                                                               {"role": "user", "content": "Hello!"}],
                                       max_tokens=5, temperature=0)
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 5


def test_streaming_chat_equals_non_streaming(client):
    kw = dict(model="tiny", messages=[{"role": "user", "content": "Tell me a story"}], max_tokens=20,
              temperature=0, extra_body={"ignore_eos": True})
    full = client.chat.completions.create(**kw).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full
    assert chunks[-1].usage.completion_tokens == 20
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_streaming_completion_ends_with_done(engine_server):
    with httpx.stream("POST", engine_server.url + "/v1/completions",
                      json={"prompt": "Now is better", "max_tokens": 5, "stream": True}, timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in r.iter_lines() if ln]
    assert lines[-1] == "data: [DONE]"
    assert all(ln.startswith("data: ") for ln in lines)


def test_seed_gives_same_output(client):
    kw = dict(model="tiny", prompt="Errors should never", max_tokens=15, temperature=1.0, top_p=0.9,
              extra_body={"ignore_eos": True, "top_k": 50})
    a = client.completions.create(seed=7, **kw).choices[0].text
    b = client.completions.create(seed=7, **kw).choices[0].text
    c = client.completions.create(seed=8, **kw).choices[0].text
    assert a == b
    assert a != c


def test_request_id_is_kept(engine_server):
    r = httpx.post(engine_server.url + "/v1/completions", json={"prompt": "x", "max_tokens": 1},
                   headers={"X-Request-ID": "trace-123"})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "trace-123"


def post_json(url: str, body) -> httpx.Response:
    # json.dumps escapes a lone surrogate as "\\ud800", as any JSON client may send it (httpx's own
    # encoder would refuse to)
    return httpx.post(url, content=json.dumps(body), headers={"content-type": "application/json"}, timeout=30)


BAD = [
    ({"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ({"prompt": "x", "max_tokens": -3}, 400, "max_tokens"),
    ({"prompt": "x", "temperature": 2.5}, 400, "temperature"),
    ({"prompt": "x", "top_p": 0}, 400, "top_p"),
    ({"prompt": "x", "top_p": 1.5}, 400, "top_p"),
    ({"prompt": "x", "model": "gpt-4"}, 404, "model"),
    ({"prompt": "x", "stop": ["a"] * 17}, 400, "stop"),
    ({"prompt": "x", "n": 3}, 400, "n"),
    ({"prompt": "x", "logprobs": 2}, 400, "logprobs"),
    ({"prompt": "word " * 600, "max_tokens": 4}, 400, "prompt"),
    ({"prompt": "x", "max_tokens": 600}, 400, "max_tokens"),
    ({"prompt": [999999], "max_tokens": 2}, 400, "prompt"),
    ({"max_tokens": 2}, 400, "prompt"),
    # a lone surrogate is legal JSON ("\\ud800") but no text a tokenizer takes: a 400 naming the field
    ({"prompt": "a\ud800b", "max_tokens": 2}, 400, "prompt"),
    ({"prompt": ["\udc00"], "max_tokens": 2}, 400, "prompt.0"),
    ({"prompt": "x", "stop": ["a", "\ud800"], "max_tokens": 2}, 400, "stop.1"),
    # the field, not the member of the type union that failed ("stop.str")
    ({"prompt": "x", "stop": 7}, 400, "stop"),
    ({"prompt": "x", "stop": [7]}, 400, "stop.0"),
    # more items than the context (512) holds tokens: refused by count, before a second of validation
    ({"prompt": [1] * 100_000, "max_tokens": 2}, 400, "prompt"),
    ({"prompt": [[1] * 100_000], "max_tokens": 2}, 400, "prompt"),
    ({"prompt": ["x"] * 100_000, "max_tokens": 2}, 400, "prompt"),
]


@pytest.mark.parametrize("body,status,param", BAD, ids=[f"{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_bad_completion_bodies(engine_server, body, status, param):
    r = post_json(engine_server.url + "/v1/completions", body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param, err
    assert err["message"]


@pytest.mark.parametrize("body,param", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"messages": "hello"}, "messages"),
    ({"messages": [{"role": "user", "content": "\udfff"}]}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "ok"}, {"type": "text", "text": "\ud83d"}]}]},
     "messages.0.content.1.text"),
    ({"messages": [{"role": "user", "content": "hi", "name": "\ud800"}]}, "messages.0.name"),
    ({"messages": [{"role": "user", "content": "x"}] * 200_000}, "messages"),
    ({"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"messages": "x"}},
     "chat_template_kwargs"),
    ({"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"not a name": 1}},
     "chat_template_kwargs"),
    ({"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"x": {"nested": 1}}},
     "chat_template_kwargs.x"),
    ({"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"x": "\ud800"}},
     "chat_template_kwargs.x"),
    ({"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {f"v{i}": 1 for i in range(17)}},
     "chat_template_kwargs"),
])
def test_bad_chat_bodies(engine_server, body, param):
    r = post_json(engine_server.url + "/v1/chat/completions", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_chat_template_variables_reach_the_template(tiny_llama, tmp_path):
    """`chat_template_kwargs` (vLLM's field): Qwen3-style `enable_thinking: false` changes the prompt."""
    model = tmp_path / "m"
    shutil.copytree(tiny_llama, model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    (model / "chat_template.jinja").write_text(
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
        "{% if enable_thinking is defined and not enable_thinking %}no thinking here\n{% endif %}")
    srv = EngineProcess(model)
    try:
        def prompt_tokens(**body) -> int:
            r = post_json(srv.url + "/v1/chat/completions",
                          {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, **body})
            assert r.status_code == 200, r.text
            return r.json()["usage"]["prompt_tokens"]

        plain = prompt_tokens()
        assert prompt_tokens(chat_template_kwargs={"enable_thinking": True}) == plain
        assert prompt_tokens(chat_template_kwargs={"enable_thinking": False}) > plain
    finally:
        srv.stop()


def test_malformed_json_and_content_type(engine_server):
    r = httpx.post(engine_server.url + "/v1/completions", content=b'{"prompt": ',
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]["message"]
    r = httpx.post(engine_server.url + "/v1/completions", content=b"prompt=x",
                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and r.json()["error"]["type"] == "invalid_request_error"
    # nested deeper than the decoder's stack: a 400, not a bare 500 "Internal Server Error"
    r = httpx.post(engine_server.url + "/v1/completions", content=b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000
                   + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]["message"]
    r = httpx.post(engine_server.url + "/v1/completions", json=[1, 2])
    assert r.status_code == 400
    r = httpx.get(engine_server.url + "/v1/nothing")
    assert r.status_code == 404 and "error" in r.json()


def test_server_keeps_serving_after_bad_input(client):
    test_completion(client)
