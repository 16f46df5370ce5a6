"""The one table from domain errors to HTTP status codes, and the JSON error shape."""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from lakehouse.errors import (
    InvalidInput,
    MalformedRequest,
    NotFound,
    NotReady,
    PayloadTooLarge,
    RequestError,
    Unauthorized,
    Upstream,
)

log = structlog.get_logger(__name__)

STATUS: dict[type[RequestError], int] = {
    MalformedRequest: 400,
    Unauthorized: 401,
    NotFound: 404,
    PayloadTooLarge: 413,
    InvalidInput: 422,
    Upstream: 502,
    NotReady: 503,
}
ERROR_TYPE: dict[type[RequestError], str] = {
    MalformedRequest: "malformed_request",
    Unauthorized: "unauthorized",
    NotFound: "not_found",
    PayloadTooLarge: "payload_too_large",
    InvalidInput: "invalid_input",
    Upstream: "upstream_error",
    NotReady: "not_ready",
}


class ErrorBody(BaseModel):
    """Every error response: `error` is the v2 protocol's message field."""

    error: str = Field(description="What was wrong.", examples=["missing column(s) rate_code"])
    type: str = Field(description="Error type.", examples=["invalid_input"])


def status_of(exc: RequestError) -> tuple[int, str]:
    """Return (HTTP status, error type) for a domain error."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls], ERROR_TYPE[cls]
    return 500, "internal"


class OpenAIError(BaseModel):
    message: str
    type: str = Field(examples=["invalid_request_error"])
    param: str | None = None
    code: str | None = Field(default=None, examples=["invalid_input"])


class OpenAIErrorBody(BaseModel):
    """Errors on the OpenAI-compatible /v1 routes, in OpenAI's shape."""

    error: OpenAIError


OPENAI_PREFIX = "/v1/"


def openai_type(status: int) -> str:
    """Return OpenAI's error type for a status code."""
    if status == 401:
        return "authentication_error"
    return "invalid_request_error" if status < 500 else "server_error"


def error_response(
    status: int, kind: str, message: str, path: str = "", param: str | None = None
) -> JSONResponse:
    """Build the JSON error response (OpenAI's shape under /v1); 401s carry the auth challenge."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body: dict[str, object] = {"error": message, "type": kind}
    if path.startswith(OPENAI_PREFIX):
        body = {
            "error": {"message": message, "type": openai_type(status), "param": param, "code": kind}
        }
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map domain, validation and routing errors to the JSON error shape."""

    @app.exception_handler(RequestError)
    async def _domain(request: Request, exc: RequestError) -> JSONResponse:
        status, kind = status_of(exc)
        return error_response(status, kind, str(exc), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        param = ".".join(str(p) for p in first["loc"][1:]) or None
        message = f"{where}: {first['msg']}"
        if first["type"] == "json_invalid":
            reason = (first.get("ctx") or {}).get("error", "JSON decode error")
            message = f"body is not valid JSON: {reason}"
            return error_response(400, "malformed_request", message, request.url.path)
        return error_response(422, "invalid_input", message, request.url.path, param)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: log it with its traceback, answer in the same JSON shape.
        log.exception("unhandled error", path=request.url.path)
        message = f"internal error ({type(exc).__name__})"
        return error_response(500, "internal", message, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, kind, str(exc.detail), request.url.path)


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": kind.replace("_", " ")}
    for cls, status in STATUS.items()
    for kind in [ERROR_TYPE[cls]]
}
