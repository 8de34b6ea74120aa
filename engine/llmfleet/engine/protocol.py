"""OpenAI-compatible request bodies, validated with pydantic.

Fields that OpenAI clients and benchmark tools send but this engine cannot honour
(n > 1, logprobs, echo, tools, penalties) are rejected with a 400 that names the
field, rather than silently ignored: a client asking for logprobs must not get a
response without them. Unknown extra fields are ignored, as OpenAI does.

Every sampling value is bounded here, at the edge: a value the sampler cannot take (a seed
past 64 bits, a temperature so small that logits / T overflow) would otherwise raise inside
the engine step that serves every request in flight. Token ids are checked against the
vocabulary in server.py, which knows it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .sequence import SamplingParams

MIN_TEMPERATURE = 1e-5  # below it logits / T overflow float32: send 0 for greedy decoding
MAX_TOKENS = 2**31 - 1
MAX_STOP_TOKEN_IDS = 64
#: `chat_template_kwargs`: extra variables for the model's chat template (vLLM's field, e.g. Qwen3's
#: `enable_thinking`). The template's own inputs stay the server's, and values are JSON scalars.
RESERVED_TEMPLATE_NAMES = frozenset({"messages", "add_generation_prompt", "bos_token", "eos_token",
                                     "raise_exception", "tools"})
MAX_TEMPLATE_KWARGS = 16
MAX_TEMPLATE_KWARG_CHARS = 1024


def lone_surrogate(text: str) -> str | None:
    """Why `text` is not valid Unicode, or None. JSON can carry a lone surrogate ("\\ud800"),
    which no UTF-8 tokenizer takes: it must be a 400 naming the field, not a 500 from inside
    tokenization."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"not valid Unicode: a lone surrogate U+{ord(text[e.start]):04X} at character {e.start}"
    return None


class FieldError(ValueError):
    def __init__(self, param: str, why: str):
        super().__init__(f"{param}: {why}")
        self.param = param


def too_many_items(body: dict, max_model_len: int) -> FieldError | None:
    """A `messages` or `prompt` list longer than the context, found before validation. Each message
    and each token id costs at least one token, so such a request can never run; validating it
    first costs the event loop, which answers the probes, a second per few hundred thousand
    items (pydantic and json hold the GIL: a worker thread would not help)."""
    messages, prompt = body.get("messages"), body.get("prompt")
    if isinstance(messages, list) and len(messages) > max_model_len:
        return FieldError("messages", f"{len(messages)} messages cannot fit this model's context of "
                                       f"{max_model_len} tokens (each takes at least one)")
    if isinstance(prompt, list):
        ids = prompt[0] if len(prompt) == 1 and isinstance(prompt[0], list) else prompt
        if len(ids) > max_model_len:
            return FieldError("prompt", f"{len(ids)} items cannot fit this model's context of {max_model_len} tokens")
    return None


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    top_k: Annotated[int, Field(ge=-1, le=MAX_TOKENS)] = -1
    n: int = 1
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None = None  # a signed 64-bit integer, as OpenAI's
    stop: str | list[str] | None = None
    stop_token_ids: Annotated[list[int], Field(max_length=MAX_STOP_TOKEN_IDS)] | None = None
    ignore_eos: bool = False
    min_tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS)] = 0
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool | int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    @field_validator("temperature")
    @classmethod
    def _temperature_not_tiny(cls, v: float) -> float:
        if 0.0 < v < MIN_TEMPERATURE:
            raise ValueError(f"temperature must be 0 (greedy) or at least {MIN_TEMPERATURE}")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _no_logit_bias(cls, v):
        if v:
            raise ValueError("logit_bias is not supported")
        return v

    @field_validator("n")
    @classmethod
    def _one_choice(cls, v: int) -> int:
        if v != 1:
            raise ValueError("only n=1 is supported")
        return v

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, v: float) -> float:
        if v != 0.0:
            raise ValueError("penalties are not supported; send 0 or omit")
        return v

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, v):
        if v not in (None, False, 0):
            raise ValueError("logprobs are not supported")
        return v

    def texts(self) -> list[tuple[str, str]]:
        """(param, text) of every string this request has tokenized or matched."""
        stops = [] if self.stop is None else [self.stop] if isinstance(self.stop, str) else self.stop
        return [(f"stop.{i}" if isinstance(self.stop, list) else "stop", s) for i, s in enumerate(stops)]

    def check_texts(self) -> None:
        """Raise FieldError for the first string that is not valid Unicode."""
        for param, text in self.texts():
            why = lone_surrogate(text)
            if why:
                raise FieldError(param, why)

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        if any(s == "" for s in stops):
            raise ValueError("stop strings must not be empty")
        return stops

    def sampling_params(self, max_tokens: int) -> SamplingParams:
        return SamplingParams(
            max_tokens=max_tokens, temperature=self.temperature, top_p=self.top_p,
            top_k=0 if self.top_k in (-1, 0) else self.top_k, seed=self.seed, stop=self.stop_list(),
            stop_token_ids=list(self.stop_token_ids or []), ignore_eos=self.ignore_eos,
            min_tokens=self.min_tokens)

    @model_validator(mode="after")
    def _min_le_max(self):
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError("min_tokens must not exceed max_tokens")
        return self


class CompletionRequest(_Common):
    prompt: str | list[int] | list[str] | list[list[int]]
    echo: bool = False
    suffix: str | None = None

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, v: bool) -> bool:
        if v:
            raise ValueError("echo is not supported")
        return v

    def texts(self) -> list[tuple[str, str]]:
        p = self.prompt
        own = [("prompt", p)] if isinstance(p, str) else [
            (f"prompt.{i}", x) for i, x in enumerate(p) if isinstance(x, str)]
        return own + super().texts()

    def single_prompt(self) -> str | list[int]:
        p = self.prompt
        if isinstance(p, list) and p and isinstance(p[0], (str, list)):
            if len(p) != 1:
                raise ValueError("batched prompts are not supported: send one prompt per request")
            return p[0]
        return p  # type: ignore[return-value]


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class ChatCompletionRequest(_Common):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    tools: list | None = None
    add_generation_prompt: bool = True
    chat_template_kwargs: dict[str, str | bool | int | float | None] | None = None

    @field_validator("chat_template_kwargs")
    @classmethod
    def _template_kwargs(cls, v):
        if not v:
            return v
        if len(v) > MAX_TEMPLATE_KWARGS:
            raise ValueError(f"at most {MAX_TEMPLATE_KWARGS} template variables")
        for name, value in v.items():
            if not name.isidentifier():
                raise ValueError(f"{name[:64]!r} is not a template variable name")
            if name in RESERVED_TEMPLATE_NAMES:
                raise ValueError(f"{name!r} is the server's to set, not a request's")
            if isinstance(value, str) and len(value) > MAX_TEMPLATE_KWARG_CHARS:
                raise ValueError(f"{name}: at most {MAX_TEMPLATE_KWARG_CHARS} characters")
        return v

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, v):
        if v:
            raise ValueError("tools are not supported")
        return v

    def texts(self) -> list[tuple[str, str]]:
        own = []
        for i, m in enumerate(self.messages):
            if isinstance(m.content, str):
                own.append((f"messages.{i}.content", m.content))
            elif m.content:
                own += [(f"messages.{i}.content.{j}.text", part.text) for j, part in enumerate(m.content)]
            if m.name is not None:
                own.append((f"messages.{i}.name", m.name))
        own += [(f"chat_template_kwargs.{k}", v) for k, v in (self.chat_template_kwargs or {}).items()
                if isinstance(v, str)]
        return own + super().texts()

    def template_messages(self) -> list[dict]:
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                for m in self.messages]

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens
