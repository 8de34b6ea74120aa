"""The HTTP API: OpenAI-compatible endpoints, health, readiness, drain, metrics.

Every error leaves through one place (`_error_response`) as an OpenAI-shaped
body `{"error": {"message", "type", "param", "code"}}`; 503 and 429 carry
Retry-After. A client that disconnects has its request aborted, so its KV
blocks go back to the pool at once.

Order of a generation request: API key (before reading the body), admission, the
bounded body read (body.py), validation, tokenization and chat templating on a worker
thread (a huge prompt must not starve /health and /ready), limits, the engine.
Requests are keyed by a server-made id; a client's X-Request-ID is only echoed and logged,
so two clients sending the same id never meet.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from .admission import Admission
from .async_engine import AsyncEngine
from .auth import ApiKeys, DrainToken, TokenBuckets
from .body import ConcurrencyLimit, read_body
from .config import EngineConfig
from .errors import EngineError, InvalidRequest, ModelNotFound, RateLimited, Unavailable
from .gpu import GpuMonitor
from .llm_engine import RequestOutput
from .metrics import EngineMetrics
from .protocol import ChatCompletionRequest, CompletionRequest, FieldError, too_many_items
from .tokenizer import Tokenizer

log = logging.getLogger("llmfleet.engine")
CLIENT_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces: safe in logs and headers


class ClientGone(Exception):
    """The client disconnected before its answer began; its request has been aborted."""


@dataclass
class ServerState:
    config: EngineConfig
    metrics: EngineMetrics
    admission: Admission
    api_keys: ApiKeys
    buckets: TokenBuckets
    gpu: GpuMonitor
    drain_token: DrainToken = field(default_factory=lambda: DrainToken(None))
    engine: AsyncEngine | None = None
    tokenizer: Tokenizer = None  # type: ignore[assignment]  # set before the app serves
    served_model_name: str = ""
    max_model_len: int = 0
    vocab_size: int = 0  # the model's logits width: token ids must be below it
    load_error: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))


def _error_response(err: EngineError) -> JSONResponse:
    headers = {}
    if isinstance(err, (Unavailable, RateLimited)):
        headers["Retry-After"] = str(max(1, round(err.retry_after)))
    return JSONResponse(err.to_json(), status_code=err.status, headers=headers)


def _validation_error(e: ValidationError) -> InvalidRequest:
    # A union (`stop: str | list[str]`) fails once per member, each loc naming the member ("stop.str",
    # "stop.list[str].0"): the client wants the field, not our annotation, and the deepest loc is
    # the member that came closest ([7] is a list whose item 0 is wrong, not a wrong string).
    def field_path(err) -> list[str]:
        return [str(x) for x in err.get("loc", ()) if not _union_tag(x)]

    first = max(e.errors(), key=lambda err: len(field_path(err)))  # max keeps the first of equals
    param = ".".join(field_path(first)) or None
    msg = first.get("msg", "invalid request")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return InvalidRequest(f"{param}: {msg}" if param else msg, param=param)


def _union_tag(part: str | int) -> bool:
    return isinstance(part, str) and (part in ("str", "int", "float", "bool") or "[" in part)


async def _read_json(request: Request, config: EngineConfig) -> dict:
    ctype = request.headers.get("content-type", "")
    if "application/json" not in ctype.lower():
        err = InvalidRequest(f"Content-Type must be application/json, got {ctype or 'nothing'!r}")
        err.status = 415
        raise err
    body = await read_body(request, config.max_body_bytes, config.body_read_timeout)
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidRequest(f"malformed JSON body: {e}") from None
    except RecursionError:  # "[[[[..." a few thousand deep: the decoder's stack, not a traceback
        raise InvalidRequest("malformed JSON body: nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the JSON body must be an object")
    return data


def create_app(state: ServerState) -> ASGIApp:
    # -- probes, drain, metrics -------------------------------------------------------------------
    async def health(request: Request) -> Response:
        if state.load_error:
            return JSONResponse({"status": "error", "error": state.load_error}, status_code=503)
        gpu_problem = state.gpu.problem()
        if gpu_problem:
            return JSONResponse({"status": "error", "error": gpu_problem}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        a = state.admission
        if a.ready:
            return JSONResponse({"ready": True})
        reason = "loading" if not a.loaded else "draining"
        return JSONResponse({"ready": False, "reason": reason}, status_code=503)

    def drain_status() -> dict:
        a = state.admission
        body: dict[str, object] = {"draining": a.draining, "accepting": a.accepting(),
                "in_flight": state.engine.num_in_flight if state.engine else 0}
        left = state.engine.seconds_left() if state.engine else None
        if left is not None:
            body["seconds_left"] = left  # per request, an upper bound: see AsyncEngine.seconds_left
        return body

    async def drain(request: Request) -> Response:
        if request.method == "POST":
            # The drain token, never the peer address: behind a sidecar or node-local proxy every
            # caller is loopback. An inference API key is not a drain token.
            state.drain_token.check(request.headers.get("authorization"))
            client = request.client.host if request.client else ""
            if not state.admission.draining:
                log.info("drain requested", extra={"client": client})
            state.admission.start_drain()
            state.metrics.draining.set(1)
            state.metrics.ready.set(0)
        return JSONResponse(drain_status())

    def expire_drain() -> None:
        """A drain that no SIGTERM followed in time is undone (see admission.py)."""
        if state.admission.expire_drain():
            log.warning("drain expired without SIGTERM: admitting requests again",
                        extra={"expiry_seconds": state.admission.expiry})
            state.metrics.drains_expired.inc()
            state.metrics.draining.set(0)
            state.metrics.ready.set(1 if state.admission.ready else 0)

    async def metrics(request: Request) -> Response:
        state.gpu.export(state.metrics)
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def models(request: Request) -> Response:
        state.api_keys.check(request.headers.get("authorization"))
        return JSONResponse({"object": "list", "data": [{
            "id": state.served_model_name, "object": "model", "created": state.created, "owned_by": "llmfleet",
            "max_model_len": state.max_model_len}]})

    # -- generation ---------------------------------------------------------------------------------
    async def admit(request: Request, cls):
        # Authenticate and check admission before reading a byte of the body.
        key = state.api_keys.check(request.headers.get("authorization"))
        state.admission.check()
        body = await _read_json(request, state.config)
        crowded = too_many_items(body, state.max_model_len) if state.max_model_len else None
        if crowded is not None:
            raise InvalidRequest(str(crowded), param=crowded.param, code="context_length_exceeded")
        try:
            req = cls.model_validate(body)
        except ValidationError as e:
            raise _validation_error(e) from None
        try:
            req.check_texts()
        except FieldError as e:
            raise InvalidRequest(str(e), param=e.param) from None
        if req.model is not None and req.model != state.served_model_name:
            raise ModelNotFound(f"The model {req.model!r} does not exist; this server serves "
                                f"{state.served_model_name!r}", param="model")
        return req, key

    def limits(req, key: str, request: Request, prompt_ids: list[int], max_tokens: int | None):
        prompt_param = "messages" if isinstance(req, ChatCompletionRequest) else "prompt"
        if len(prompt_ids) >= state.max_model_len:
            raise InvalidRequest(
                f"This model's maximum context length is {state.max_model_len} tokens; the prompt has "
                f"{len(prompt_ids)} tokens.", param=prompt_param, code="context_length_exceeded")
        if max_tokens is None:
            max_tokens = state.max_model_len - len(prompt_ids)
        elif len(prompt_ids) + max_tokens > state.max_model_len:
            raise InvalidRequest(
                f"This model's maximum context length is {state.max_model_len} tokens; the prompt has "
                f"{len(prompt_ids)} tokens and max_tokens is {max_tokens}. Lower max_tokens or shorten the "
                f"prompt.", param="max_completion_tokens" if isinstance(req, ChatCompletionRequest)
                and req.max_completion_tokens else "max_tokens", code="context_length_exceeded")
        if len(req.stop_list()) > state.config.max_stop_sequences:
            raise InvalidRequest(f"at most {state.config.max_stop_sequences} stop sequences are allowed",
                                 param="stop")
        check_token_ids(prompt_ids, prompt_param)
        check_token_ids(req.stop_token_ids or [], "stop_token_ids")
        bucket_key = key or (request.client.host if request.client else "anonymous")
        state.buckets.take(bucket_key, len(prompt_ids) + max_tokens)
        try:
            return req.sampling_params(max_tokens)
        except ValueError as e:
            raise InvalidRequest(str(e), param="stop") from None

    def check_token_ids(ids: list[int], param: str) -> None:
        """Out-of-vocabulary ids would index past the logits inside the step (on CUDA: a device
        assert that poisons the context for every request): refuse them here."""
        vocab = state.vocab_size
        bad = next((t for t in ids if not 0 <= t < vocab), None) if vocab else None
        if bad is not None:
            raise InvalidRequest(f"{param}: token id {bad} is outside the vocabulary [0, {vocab})", param=param)

    async def completions(request: Request) -> Response:
        req, key = await admit(request, CompletionRequest)
        try:
            prompt = req.single_prompt()
        except ValueError as e:
            raise InvalidRequest(str(e), param="prompt") from None
        # Tokenizing a large prompt takes seconds: on a worker thread (encode releases the GIL).
        prompt_ids = await asyncio.to_thread(state.tokenizer.encode, prompt) if isinstance(prompt, str) \
            else list(prompt)
        max_tokens = req.max_tokens if req.max_tokens is not None else 16  # OpenAI's default for completions
        params = limits(req, key, request, prompt_ids, max_tokens)
        return await _respond(request, req, prompt_ids, params, chat=False)

    async def chat(request: Request) -> Response:
        req, key = await admit(request, ChatCompletionRequest)

        def render_and_encode() -> list[int]:
            text = state.tokenizer.apply_chat_template(req.template_messages(), req.add_generation_prompt,
                                                       **(req.chat_template_kwargs or {}))
            return state.tokenizer.encode(text, add_special_tokens=False)

        prompt_ids = await asyncio.to_thread(render_and_encode)
        params = limits(req, key, request, prompt_ids, req.requested_max_tokens)
        return await _respond(request, req, prompt_ids, params, chat=True)

    async def _respond(request: Request, req, prompt_ids, params, chat: bool) -> Response:
        rid = request.state.request_id
        kind = "chatcmpl" if chat else "cmpl"
        oid = f"{kind}-{rid}"
        assert state.engine is not None  # POSTs are refused while loading
        outputs = state.engine.generate(rid, prompt_ids, params, arrival=request.state.arrival)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            # errors before the first token still get a proper status; a client that leaves while
            # the request waits in the queue takes it out of the queue (a client timing out and
            # retrying under load must not leave a prefill behind for every try)
            try:
                first = await _unless_disconnected(request, outputs.__anext__())
            except BaseException:
                await outputs.aclose()
                raise
            return StreamingResponse(_sse(oid, first, outputs, chat, include_usage, len(prompt_ids)),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

        async def collect():
            parts, last = [], None
            async for out in outputs:
                parts.append(out.text_delta)
                last = out
            return "".join(parts), last

        try:
            text, last = await _unless_disconnected(request, collect())
        finally:
            await outputs.aclose()
        return JSONResponse(_final_body(oid, text, last, chat))

    async def _unless_disconnected(request: Request, work):
        """Await `work`, cancelling it (which aborts the request) if the client goes away first."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=0.25)
                if done:
                    return task.result()
                if await request.is_disconnected():
                    log.info("client disconnected; request aborted", extra=_log_ids(request))
                    raise ClientGone()
        finally:
            if not task.done():
                task.cancel()
                # let the output generator finish its own cleanup (the abort) before anyone closes
                # it: aclose() on a generator still inside __anext__ raises "already running"
                await asyncio.wait({task})

    def _usage(last: RequestOutput) -> dict:
        u: dict = {"prompt_tokens": last.num_prompt_tokens, "completion_tokens": last.num_output_tokens,
             "total_tokens": last.num_prompt_tokens + last.num_output_tokens}
        if last.num_cached_tokens:
            u["prompt_tokens_details"] = {"cached_tokens": last.num_cached_tokens}
        return u

    def _final_body(oid: str, text: str, last: RequestOutput, chat: bool) -> dict:
        base = {"id": oid, "created": int(time.time()), "model": state.served_model_name, "usage": _usage(last)}
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "logprobs": None, "finish_reason": last.finish_reason}
            return {**base, "object": "chat.completion", "choices": [choice]}
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": last.finish_reason}
        return {**base, "object": "text_completion", "choices": [choice]}

    async def _sse(oid, first, outputs, chat: bool, include_usage: bool, num_prompt: int):
        created = int(time.time())
        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(delta_text: str | None, finish: str | None, role: bool = False) -> str:
            if chat:
                delta: dict = {}
                if role:
                    delta["role"] = "assistant"
                if delta_text is not None:
                    delta["content"] = delta_text
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": delta_text or "", "logprobs": None, "finish_reason": finish}
            body = {"id": oid, "object": obj, "created": created, "model": state.served_model_name,
                    "choices": [choice]}
            if include_usage:
                body["usage"] = None
            return f"data: {json.dumps(body)}\n\n"

        last = first
        try:
            if chat:
                yield chunk("", None, role=True)
            out = first
            while True:
                if out.text_delta:
                    yield chunk(out.text_delta, None)
                last = out
                if out.finished:
                    yield chunk(None if chat else "", out.finish_reason)
                    break
                out = await outputs.__anext__()
            if include_usage:
                body = {"id": oid, "object": obj, "created": created, "model": state.served_model_name,
                        "choices": [], "usage": _usage(last)}
                yield f"data: {json.dumps(body)}\n\n"
            yield "data: [DONE]\n\n"
        except EngineError as e:  # after headers were sent: report in-band, as OpenAI does
            yield f"data: {json.dumps(e.to_json())}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            await outputs.aclose()  # aborts the request if the client went away mid-stream

    # -- request context: request id, JSON errors, access log --------------------------------------
    # A wrapper per endpoint rather than a BaseHTTPMiddleware: that middleware hides the client's
    # disconnect from request.is_disconnected(), and disconnects must abort generation.
    def endpoint(handler):
        async def wrapped(request: Request) -> Response:
            # The engine keys requests by this server-made id; the client's id is only echoed and logged.
            rid = uuid.uuid4().hex
            client_rid = request.headers.get("x-request-id")
            client_rid = client_rid if client_rid and CLIENT_REQUEST_ID.fullmatch(client_rid) else None
            request.state.request_id = rid
            request.state.client_request_id = client_rid
            request.state.arrival = time.monotonic()
            expire_drain()
            try:
                if request.url.path.startswith("/v1/") and request.method == "POST" and state.engine is None:
                    state.admission.check()  # still loading
                response = await handler(request)
            except ClientGone:
                response = Response(status_code=499)  # nginx's "client closed request": for the log only
            except EngineError as e:
                if isinstance(e, Unavailable):
                    state.metrics.rejected.labels(reason=e.code or "unavailable").inc()
                elif isinstance(e, RateLimited):
                    state.metrics.rejected.labels(reason="rate_limited").inc()
                elif e.status < 500:
                    state.metrics.rejected.labels(reason="invalid").inc()
                response = _error_response(e)
            if request.url.path.startswith("/v1/"):
                log.info("request", extra={**_log_ids(request), "path": request.url.path,
                                           "status": response.status_code,
                                           "ms": round((time.monotonic() - request.state.arrival) * 1000, 1)})
            response.headers["X-Request-ID"] = client_rid or rid
            return response
        return wrapped

    routes = [
        Route("/health", endpoint(health), methods=["GET"]),
        Route("/ready", endpoint(ready), methods=["GET"]),
        Route("/drain", endpoint(drain), methods=["GET", "POST"]),
        Route("/metrics", endpoint(metrics), methods=["GET"]),
        Route("/v1/models", endpoint(models), methods=["GET"]),
        Route("/v1/completions", endpoint(completions), methods=["POST"]),
        Route("/v1/chat/completions", endpoint(chat), methods=["POST"]),
    ]

    async def not_found(request: Request, exc) -> Response:
        return _error_response(_status_error(404, f"no route {request.method} {request.url.path}"))

    async def bad_method(request: Request, exc) -> Response:
        return _error_response(_status_error(405, f"method {request.method} not allowed on {request.url.path}"))

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: bad_method})
    return ConcurrencyLimit(app, state.config.max_concurrent_requests,
                            on_reject=lambda: state.metrics.rejected.labels(reason="too_many_requests").inc())


def _status_error(status: int, message: str) -> InvalidRequest:
    e = InvalidRequest(message)
    e.status = status
    return e


def _log_ids(request: Request) -> dict:
    ids = {"request_id": request.state.request_id}
    if request.state.client_request_id:
        ids["client_request_id"] = request.state.client_request_id
    return ids
