"""Request checks before routing, and the routing key."""

from __future__ import annotations

import json

import pytest
from llmfleet.router.errors import InvalidRequest
from llmfleet.router.request import CHAT, COMPLETIONS, parse_body, routing_key


def chat(*messages: tuple[str, str], **extra) -> bytes:
    return json.dumps({"model": "chat", "messages": [{"role": r, "content": c} for r, c in messages], **extra}).encode()


@pytest.mark.parametrize(
    ("path", "raw", "param", "message"),
    [
        (CHAT, b"{not json", None, "malformed JSON"),
        (CHAT, b"[1, 2]", None, "must be an object"),
        (CHAT, b'{"messages": [{"role": "user", "content": "hi"}]}', "model", "`model` is required"),
        (CHAT, b'{"model": 7, "messages": []}', "model", "`model` is required"),
        (CHAT, b'{"model": "chat", "messages": []}', "messages", "non-empty list"),
        (CHAT, b'{"model": "chat", "messages": ["hi"]}', "messages", "each message"),
        (CHAT, b'{"model": "chat", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream",
         "true or false"),
        (COMPLETIONS, b'{"model": "chat"}', "prompt", "`prompt`"),
        (COMPLETIONS, b'{"model": "chat", "prompt": []}', "prompt", "`prompt`"),
        (CHAT, b"\xff\xfe", None, "malformed JSON"),
    ],
)
def test_malformed_bodies_are_refused_with_the_field(path, raw, param, message):
    with pytest.raises(InvalidRequest, match=message) as err:
        parse_body(path, raw)
    assert err.value.status == 400 and err.value.param == param


def test_chat_keys_on_the_system_prompt_not_the_question():
    a = parse_body(CHAT, chat(("system", "You are a tax adviser."), ("user", "What is VAT?")))
    b = parse_body(CHAT, chat(("system", "You are a tax adviser."), ("user", "Deduct my car?")))
    c = parse_body(CHAT, chat(("system", "You are a poet."), ("user", "What is VAT?")))
    ka, kb, kc = (routing_key(r, None, 2048) for r in (a, b, c))
    assert ka == kb and ka != kc and ka.kind == "prefix"


def test_chat_without_system_prompt_keys_on_the_first_message():
    a = parse_body(CHAT, chat(("user", "Tell me about Rust."), ("assistant", "..."), ("user", "More?")))
    b = parse_body(CHAT, chat(("user", "Tell me about Rust.")))
    assert routing_key(a, None, 2048) == routing_key(b, None, 2048)


def test_content_parts_count_as_text():
    parts = json.dumps({"model": "chat", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "You are a poet."}]}]}).encode()
    assert routing_key(parse_body(CHAT, parts), None, 2048) == routing_key(
        parse_body(CHAT, chat(("system", "You are a poet."))), None, 2048)


def test_completion_keys_on_the_prompt_start():
    shared = "x" * 300
    a = parse_body(COMPLETIONS, json.dumps({"model": "m", "prompt": shared + "one"}).encode())
    b = parse_body(COMPLETIONS, json.dumps({"model": "m", "prompt": [shared + "two"]}).encode())
    assert routing_key(a, None, 256) == routing_key(b, None, 256)
    assert routing_key(a, None, 1024) != routing_key(b, None, 1024)


def test_session_header_wins_and_models_do_not_share_keys():
    req = parse_body(CHAT, chat(("system", "s"), ("user", "u")))
    key = routing_key(req, "conversation-42", 2048)
    assert key is not None and key.kind == "affinity" and "conversation-42" in key.value
    other = parse_body(CHAT, json.dumps({"model": "other", "messages": [{"role": "system", "content": "s"}]}).encode())
    assert routing_key(other, None, 2048) != routing_key(req, None, 2048)
