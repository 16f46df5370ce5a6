"""The one table from errors to HTTP status and error types, and the one error body builder.

Model and RAG code raise `kernel.errors.RequestError` subclasses; FastAPI raises validation
and routing errors. `classify` turns any of them into an `ErrorKind` (status, Lakeserve type,
OpenAI type); `error_body` builds the JSON every error response carries, including the error
event of a stream that fails midway:

    everywhere   {"error": "<message>", "type": "<type>"}
    under /v1    {"error": {"message": "<message>", "type": "<OpenAI type>",
                            "param": "<field or null>", "code": "<type>"}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from kernel.errors import (
    InvalidInput,
    MalformedRequest,
    NotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    RequestError,
    Unauthorized,
    Upstream,
)

log = structlog.get_logger(__name__)

OPENAI_PREFIX = "/v1/"


@dataclass(frozen=True)
class ErrorKind:
    """How one kind of error is answered."""

    status: int
    type: str
    openai_type: str


INTERNAL = ErrorKind(500, "internal", "server_error")
ERRORS: dict[type[RequestError], ErrorKind] = {
    MalformedRequest: ErrorKind(400, "malformed_request", "invalid_request_error"),
    Unauthorized: ErrorKind(401, "unauthorized", "authentication_error"),
    NotFound: ErrorKind(404, "not_found", "invalid_request_error"),
    PayloadTooLarge: ErrorKind(413, "payload_too_large", "invalid_request_error"),
    InvalidInput: ErrorKind(422, "invalid_input", "invalid_request_error"),
    Upstream: ErrorKind(502, "upstream_error", "server_error"),
    NotReady: ErrorKind(503, "not_ready", "server_error"),
    Overloaded: ErrorKind(503, "overloaded", "server_error"),
}
# Seconds a client should wait before retrying, by error type (sent as Retry-After).
RETRY_AFTER = {"overloaded": "1", "not_ready": "5"}
# Routing errors Starlette raises itself (unknown path, wrong method, ...).
_HTTP_TYPES = {404: "not_found", 405: "method_not_allowed"}


@dataclass(frozen=True)
class Problem:
    """An error classified: its kind, the message for the client and the offending parameter."""

    kind: ErrorKind
    message: str
    param: str | None = None


def kind_of(exc: BaseException) -> ErrorKind:
    """Return the kind of a domain error (by its closest listed class), else INTERNAL."""
    for cls in type(exc).__mro__:
        if cls in ERRORS:
            return ERRORS[cls]
    return INTERNAL


def classify(exc: BaseException) -> Problem:
    """Classify any exception a request can end with."""
    if isinstance(exc, RequestError):
        return Problem(kind_of(exc), str(exc))
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            reason = (first.get("ctx") or {}).get("error", "JSON decode error")
            return Problem(ERRORS[MalformedRequest], f"body is not valid JSON: {reason}")
        where = ".".join(str(p) for p in first["loc"])
        param = ".".join(str(p) for p in first["loc"][1:]) or None
        return Problem(ERRORS[InvalidInput], f"{where}: {first['msg']}", param)
    if isinstance(exc, StarletteHTTPException):
        status = exc.status_code
        same = next((k.openai_type for k in ERRORS.values() if k.status == status), None)
        openai_type = same or ("invalid_request_error" if status < 500 else "server_error")
        kind = ErrorKind(status, _HTTP_TYPES.get(status, "http_error"), openai_type)
        return Problem(kind, str(exc.detail))
    return Problem(INTERNAL, f"internal error ({type(exc).__name__})")


def error_body(problem: Problem, openai: bool = False) -> dict[str, Any]:
    """Return the JSON body of an error, in OpenAI's shape when `openai`."""
    if openai:
        return OpenAIErrorBody(
            error=OpenAIError(
                message=problem.message,
                type=problem.kind.openai_type,
                param=problem.param,
                code=problem.kind.type,
            )
        ).model_dump()
    return ErrorBody(error=problem.message, type=problem.kind.type).model_dump()


def error_response(request: Request, exc: BaseException) -> JSONResponse:
    """Answer a request that ended with `exc`; 401s carry the auth challenge."""
    problem = classify(exc)
    status = problem.kind.status
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if problem.kind.type in RETRY_AFTER:
        headers["Retry-After"] = RETRY_AFTER[problem.kind.type]
    body = error_body(problem, openai=request.url.path.startswith(OPENAI_PREFIX))
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer domain, validation, routing and unexpected errors with the error body."""

    async def expected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, exc)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: log it with its traceback, answer in the same JSON shape.
        log.exception("unhandled error", path=request.url.path)
        return error_response(request, exc)

    for cls in (RequestError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(cls, expected)
    app.add_exception_handler(Exception, unexpected)


class ErrorBody(BaseModel):
    """Every error response outside /v1: `error` is the v2 protocol's message field."""

    error: str = Field(description="What was wrong.", examples=["missing column(s) rate_code"])
    type: str = Field(description="Error type.", examples=["invalid_input"])


class OpenAIError(BaseModel):
    """The error object of OpenAI's error shape."""

    message: str = Field(description="What was wrong.")
    type: str = Field(
        description="OpenAI error type: invalid_request_error, authentication_error or "
        "server_error.",
        examples=["invalid_request_error"],
    )
    param: str | None = Field(default=None, description="The request field at fault, if one.")
    code: str | None = Field(
        default=None, description="The Lakeserve error type.", examples=["invalid_input"]
    )


class OpenAIErrorBody(BaseModel):
    """Every error response under /v1 (and the error event of a failed stream)."""

    error: OpenAIError


def _responses(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {
        kind.status: {"model": model, "description": kind.type.replace("_", " ")}
        for kind in [*ERRORS.values(), INTERNAL]
    }


# OpenAPI `responses` of the routers: every status a route can answer with, and its body.
ERROR_RESPONSES = _responses(ErrorBody)
OPENAI_ERROR_RESPONSES = _responses(OpenAIErrorBody)
