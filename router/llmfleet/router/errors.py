"""The router's exception family, mapped once to OpenAI-shaped HTTP errors (as the engine's)."""

from __future__ import annotations

import json


class RouterError(Exception):
    """Base class: `status`, `type` and `code` are what the client gets back."""

    status = 500
    type = "internal_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after

    def body(self) -> bytes:
        return json.dumps({"error": {"message": self.message, "type": self.type, "param": self.param,
                                     "code": self.code}}).encode()

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [(b"content-type", b"application/json")]
        if self.retry_after is not None:
            out.append((b"retry-after", str(max(1, round(self.retry_after))).encode()))
        return out


class InvalidRequest(RouterError):
    status = 400
    type = "invalid_request_error"


class BodyTooLarge(InvalidRequest):
    status = 413


class BodyTimeout(InvalidRequest):
    """The body did not arrive within the deadline (a slow or stalled client)."""

    status = 408
    code = "body_timeout"


class UnsupportedMediaType(InvalidRequest):
    status = 415


class Unauthorized(RouterError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class ModelNotFound(RouterError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class AmbiguousModel(RouterError):
    """Several services serve the name and the caller's key cannot pick one without risking that
    it reaches another tenant's pods."""

    status = 409
    type = "invalid_request_error"
    code = "ambiguous_model"


class NotFound(RouterError):
    status = 404
    type = "invalid_request_error"


class MethodNotAllowed(RouterError):
    status = 405
    type = "invalid_request_error"


class Unavailable(RouterError):
    """No replica could take the request in time (none ready, all refusing): retry later."""

    status = 503
    type = "service_unavailable"
    code = "no_ready_replica"


class BadGateway(RouterError):
    """The replicas answered, but not with anything a client can use (garbage, hangs)."""

    status = 502
    type = "upstream_error"
    code = "bad_upstream_response"
