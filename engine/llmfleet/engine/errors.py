"""The engine's exception family, mapped once to OpenAI-shaped HTTP errors in server.py."""

from __future__ import annotations


class EngineError(Exception):
    """Base class. `status` and `type` are what the HTTP layer answers with."""

    status = 500
    type = "internal_error"
    code: str | None = None

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_json(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class ModelLoadError(EngineError):
    """The --model directory is missing a file or has a broken one; raised at start-up."""


class InvalidRequest(EngineError):
    status = 400
    type = "invalid_request_error"


class ModelNotFound(EngineError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class Unauthorized(EngineError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(EngineError):
    """Authenticated or not, this caller may not do this (a drain without the drain token)."""

    status = 403
    type = "permission_error"
    code = "forbidden"


class BodyTooLarge(InvalidRequest):
    status = 413
    code = "body_too_large"


class BodyTimeout(InvalidRequest):
    """The request body did not arrive within the body-read deadline (a slow or stalled client)."""

    status = 408
    code = "body_timeout"


class RateLimited(EngineError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(EngineError):
    """Queue full, draining or shutting down: the client should retry (elsewhere)."""

    status = 503
    type = "server_error"
    code = "unavailable"

    def __init__(self, message: str, retry_after: float = 1.0, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after
