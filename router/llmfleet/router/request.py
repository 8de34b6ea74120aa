"""What the router reads from an OpenAI request body: checks that spare the engines a malformed
request, and the routing key. The engine validates every field again; the router only makes
sure a request is well-formed enough to route.

| request            | routing key (cut to prefix_chars)                                |
| ------------------ | ---------------------------------------------------------------- |
| session header set | the header's value (affinity)                                    |
| chat               | the leading system message(s); without one, the first message    |
| completions        | the start of the prompt (the first prompt of a list)             |

Why the system prompt for chat: the engine's prefix cache matches from the first token, and
the shared part of a tenant's traffic is its template and system prompt; keying on the user's
words as well would scatter one tenant's requests across every replica.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import InvalidRequest
from .picker import Key

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


@dataclass(frozen=True)
class InferenceRequest:
    path: str
    model: str
    stream: bool
    body: dict[str, Any]


def parse_body(path: str, raw: bytes) -> InferenceRequest:
    """The request, or InvalidRequest naming what is wrong (the client gets a 400)."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidRequest(f"malformed JSON body: {e}") from None
    except RecursionError:  # "[[[[..." deeper than the decoder's stack
        raise InvalidRequest("malformed JSON body: nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the JSON body must be an object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model` is required: the served name of the model to use", param="model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("`stream` must be true or false", param="stream")
    if path == CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("`messages` must be a non-empty list", param="messages")
        if not all(isinstance(m, dict) for m in messages):
            raise InvalidRequest("each message must be an object with `role` and `content`", param="messages")
    else:
        prompt = body.get("prompt")
        if not isinstance(prompt, (str, list)) or (isinstance(prompt, list) and not prompt):
            raise InvalidRequest("`prompt` must be a string or a non-empty list", param="prompt")
    return InferenceRequest(path=path, model=model, stream=stream, body=body)


def _text(content: Any) -> str:
    """A message's content as text (OpenAI allows a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def prompt_prefix(req: InferenceRequest, limit: int) -> str:
    if req.path == CHAT:
        messages = req.body["messages"]
        system = [m for m in _leading_system(messages)]
        chosen = system or messages[:1]
        text = "\n".join(f"{m.get('role', '')}:{_text(m.get('content'))}" for m in chosen)
    else:
        prompt = req.body["prompt"]
        first = prompt[0] if isinstance(prompt, list) else prompt
        text = first if isinstance(first, str) else json.dumps(first)  # token ids: their JSON form
    return text[:limit]


def _leading_system(messages: list[dict]) -> list[dict]:
    out = []
    for m in messages:
        if m.get("role") not in ("system", "developer"):
            break
        out.append(m)
    return out


def routing_key(req: InferenceRequest, session: str | None, limit: int) -> Key | None:
    """The key the picker hashes: the model name is part of it so two services' keys differ."""
    if session:
        return Key(f"{req.model}\x00session\x00{session[:limit]}", "affinity")
    prefix = prompt_prefix(req, limit)
    return Key(f"{req.model}\x00{prefix}", "prefix") if prefix else None
