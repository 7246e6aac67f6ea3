"""Render every error as RFC 9457 problem+json with the contract's `code`; never a traceback.

`OneCheckError`, request validation and Starlette's HTTP errors have exception handlers. Anything else (a
database outage, a bug) is turned into its problem by `CatchUnexpected`, a pure ASGI layer just inside
`RequestContextMiddleware`: the answer still gets the request id and `Cache-Control`, the metrics and the
access log count its real status, and the exception never escapes the app to the server. Starlette's own
catch-all (ServerErrorMiddleware, outside every middleware) only sees a failure of the middleware itself.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import ERROR_CODES, OneCheckError

log = logging.getLogger("onecheck.errors")

# Relative type URIs (RFC 9457 §3.1.1) resolve against the service; docs/errors.md describes each code.
PROBLEM_TYPE_BASE = "/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

# Seconds a client is told to wait (Retry-After) after an error it could not have avoided.
UNEXPECTED_RETRY_AFTER = 2

# Database trouble a client can retry: logged as a warning (a bug is logged as an error with its traceback);
# either way the answer is 503 `unavailable` with Retry-After, never a 500.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.InterfaceError,
    OperationalError,
    InterfaceError,
)


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def problem_body(error: OneCheckError) -> dict[str, Any]:
    """The problem object for an error, as a dict (batch checks embed these in their results)."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + error.code,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
    }
    errors = getattr(error, "errors", None)
    if errors is not None:
        body["errors"] = errors
    body.update(error.extra)
    return body


def error_response(error: OneCheckError) -> JSONResponse:
    return JSONResponse(
        problem_body(error), status_code=error.status, headers=error.headers, media_type=PROBLEM_MEDIA_TYPE
    )


def _loc(loc: tuple[Any, ...] | list[Any]) -> list[Any]:
    return [part for part in loc]


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        entry: dict[str, Any] = {"loc": _loc(err.get("loc", ())), "msg": err.get("msg", "invalid")}
        ctx = err.get("ctx") or {}
        if "rule" in ctx:
            entry["rule"] = ctx["rule"]
        out.append(entry)
    return out


async def _handle_onecheck(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OneCheckError)
    return error_response(exc)


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc)
    malformed = any(e.get("type") == "json_invalid" for e in exc.errors())
    detail = "the request body is not valid JSON" if malformed else "the request does not match the schema"
    return problem(422, "validation_error", "Invalid request", detail, errors=errors)


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # The framework's answer to a body it cannot decode (not UTF-8, JSON nested past the parser's limit,
        # broken multipart): malformed input, so 422 `validation_error` like malformed JSON (contract: Errors).
        return problem(
            422,
            "validation_error",
            "Invalid request",
            "the request body could not be decoded",
            errors=[{"loc": ["body"], "msg": str(exc.detail)}],
        )
    if exc.status_code == 404:
        return problem(404, "not_found", "Not found", "no such resource")
    if exc.status_code == 405:
        return problem(
            405,
            "not_found",
            "Method not allowed",
            f"{request.method} is not allowed here",
            headers=dict(exc.headers or {}),
        )
    if exc.status_code == 413:
        return problem(413, "payload_too_large", "Payload too large", str(exc.detail))
    if exc.status_code in (401, 403):
        code = "unauthorized" if exc.status_code == 401 else "forbidden"
        return problem(exc.status_code, code, code.title(), str(exc.detail))
    return problem(exc.status_code, "validation_error", "Bad request", str(exc.detail))


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT_DB_ERRORS):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def unexpected_error_response(exc: BaseException, *, method: str, route: str) -> JSONResponse:
    """503 `unavailable` with Retry-After, never a bare 500 (contract: Errors). A database the client can wait
    for is logged as a warning; anything else (a bug) as an error with its traceback, server-side only (with
    the route template: a raw path can carry a subject code). The client sees neither."""
    if _is_transient(exc):
        log.warning("database unavailable on %s %s: %s", method, route, type(exc).__name__)
        detail = "the database is unavailable; retry shortly"
    else:
        log.error("unexpected error on %s %s", method, route, exc_info=exc)
        detail = "the service could not answer this request; it has been logged, retry shortly"
    return problem(
        503,
        "unavailable",
        "Service unavailable",
        detail,
        headers={"Retry-After": str(UNEXPECTED_RETRY_AFTER)},
    )


def _route(scope: Scope) -> str:
    return getattr(scope.get("route"), "path", None) or "unmatched"


class CatchUnexpected:
    """Pure ASGI: an exception no handler took becomes its problem+json here, inside the middleware stack.

    Once an answer has started nothing else can be sent: the exception is re-raised so the server cuts the
    connection rather than pass off a truncated body as whole.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            if started:
                raise
            response = unexpected_error_response(exc, method=scope.get("method", ""), route=_route(scope))
            await response(scope, receive, send)


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The last resort, in Starlette's ServerErrorMiddleware: only a failure outside `CatchUnexpected`.
    return unexpected_error_response(exc, method=request.method, route=_route(request.scope))


# --- the OpenAPI document ---------------------------------------------------------------------------------

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details with the contract's `code` (docs/errors.md).",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "enum": list(ERROR_CODES)},
        "errors": {
            "type": "array",
            "description": "`validation_error` and `invalid_subject_code`: what failed, where",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "rule": {"type": "string", "description": "the failed subject-code rule"},
                },
            },
        },
    },
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def _is_fastapi_validation(content: dict[str, Any]) -> bool:
    ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
    return bool(ref.endswith("/HTTPValidationError"))


def document_problems(doc: dict[str, Any]) -> dict[str, Any]:
    """Every error response of the document as what the app answers: `application/problem+json` with the
    `Problem` schema. FastAPI documents a 422 of its own (`HTTPValidationError`, application/json) on every
    operation with parameters that does not say otherwise; the problem handler never answers that shape."""
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if not (status.isdigit() and int(status) >= 400):
                    continue
                content = response.setdefault("content", {})
                if _is_fastapi_validation(content):
                    del content["application/json"]
                    response["description"] = "Invalid request (`validation_error`)"
                content.setdefault(PROBLEM_MEDIA_TYPE, {}).setdefault("schema", _PROBLEM_REF)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for name in _FASTAPI_VALIDATION:
        schemas.pop(name, None)
    return doc


def install_problem_handlers(app: FastAPI) -> None:
    """The exception handlers (`CatchUnexpected` is added with the middleware, in shared/api/app.py)."""
    app.add_exception_handler(OneCheckError, _handle_onecheck)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(Exception, _handle_unexpected)
