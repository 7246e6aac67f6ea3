"""Render every error as RFC 9457 problem+json with the contract's `code`; never a traceback.

`OneCheckError`, request validation and Starlette's HTTP errors have exception handlers. Anything else (a
database outage, a bug) is turned into its problem by `CatchUnexpected`, a pure ASGI layer just inside
`RequestContextMiddleware`: the answer still gets the request id and `Cache-Control`, the metrics and the
access log count its real status, and the exception never escapes the app to the server. Starlette's own
catch-all (ServerErrorMiddleware, outside every middleware) only sees a failure of the middleware itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
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
        "type": {"type": "string", "description": "`/problems/<code>`, relative to the service."},
        "title": {"type": "string", "description": "A short summary of the kind of problem."},
        "status": {"type": "integer", "description": "The HTTP status, as answered."},
        "detail": {"type": "string", "description": "What went wrong with this request, in plain words."},
        "code": {
            "type": "string",
            "enum": list(ERROR_CODES),
            "description": "The contract's error code: act on it (docs/check-api.md, Errors).",
        },
        "errors": {
            "type": "array",
            "description": "`validation_error` and `invalid_subject_code`: what failed, where",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                        "description": "Where: `body`, `query`, `path`, `header` or `file`, then the field path.",
                    },
                    "msg": {"type": "string", "description": "What is wrong there."},
                    "rule": {"type": "string", "description": "the failed subject-code rule"},
                },
            },
        },
    },
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _example(status: int, code: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }


# What the app answers for the errors every operation shares (the texts of the code that raises them).
_SHARED: dict[str, tuple[int, str, dict[str, Any]]] = {
    "unauthorized": (
        401,
        "Missing, unknown or revoked API key (`unauthorized`).",
        _example(
            401,
            "unauthorized",
            "Missing or unknown API key",
            "send the API key as `Authorization: Bearer <key>`",
        ),
    ),
    "forbidden": (403, "", {}),  # per operation: its scopes
    "conflict": (
        409,
        "A request with this Idempotency-Key is still in flight (`conflict`): retry shortly.",
        _example(
            409,
            "conflict",
            "Conflict",
            "a request with this Idempotency-Key is still in flight; retry shortly",
        ),
    ),
    "payload_too_large": (
        413,
        "The request body is over `ONECHECK_MAX_BODY_BYTES`, default 1 MiB (`payload_too_large`).",
        _example(413, "payload_too_large", "Payload too large", "the request body exceeds 1048576 bytes"),
    ),
    "validation_error": (
        422,
        "Invalid request (`validation_error`): missing or unknown fields, wrong types, malformed JSON.",
        _example(
            422,
            "validation_error",
            "Invalid request",
            "the request does not match the schema",
            errors=[{"loc": ["body", "operator"], "msg": "Field required"}],
        ),
    ),
    "idempotency_key_reused": (
        422,
        "",
        _example(
            422,
            "idempotency_key_reused",
            "Idempotency key reused with another request",
            "this Idempotency-Key was used with another request body",
            errors=[{"loc": ["header", "Idempotency-Key"], "msg": "key reused with a different body"}],
        ),
    ),
    "rate_limited": (
        429,
        "Over `ONECHECK_RATE_LIMIT_PER_MINUTE` requests this minute for this client (`rate_limited`): retry "
        "after `Retry-After` seconds.",
        _example(429, "rate_limited", "Too many requests", "more than 600 requests this minute"),
    ),
    "unavailable": (
        503,
        "The database is unavailable (`unavailable`): retry after `Retry-After` seconds.",
        _example(503, "unavailable", "Service unavailable", "the database is unavailable; retry shortly"),
    ),
}


def _is_fastapi_validation(content: dict[str, Any]) -> bool:
    ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
    return bool(ref.endswith("/HTTPValidationError"))


def _shared_codes(operation: dict[str, Any], scopes: tuple[str, ...] | None) -> list[str]:
    """The shared errors this operation can answer."""
    authenticated = bool(operation.get("security"))
    has_body = "requestBody" in operation
    idempotent = any(
        p.get("in") == "header" and p.get("name", "").lower() == "idempotency-key"
        for p in operation.get("parameters", [])
    )
    codes = []
    if authenticated:
        codes.append("unauthorized")
    if scopes:
        codes.append("forbidden")
    if idempotent:
        codes.append("conflict")
    if has_body:
        codes.append("payload_too_large")
    if has_body or operation.get("parameters") or "422" in operation.get("responses", {}):
        codes.append("validation_error")
    if idempotent:
        codes.append("idempotency_key_reused")
    if authenticated:
        codes.append("rate_limited")
    codes.append("unavailable")
    return codes


def _add_shared(operation: dict[str, Any], code: str, scopes: tuple[str, ...] | None) -> None:
    status, description, example = _SHARED[code]
    if code == "forbidden":
        wanted = " or ".join(f"`{s}`" for s in scopes or ())
        description = f"The API key lacks the scope {wanted} (`forbidden`)."
        example = _example(
            403, "forbidden", "Forbidden", f"this API key lacks the scope {' or '.join(scopes or ())}"
        )
    response = operation["responses"].setdefault(str(status), {})
    if not response.get("description") or response["description"] == "Validation Error":
        response["description"] = description
    examples = (
        response.setdefault("content", {}).setdefault(PROBLEM_MEDIA_TYPE, {}).setdefault("examples", {})
    )
    shown = {e.get("value", {}).get("code") for e in examples.values()}
    if code == "forbidden":  # a route's own 403 (another department) is another case than the scope
        examples.setdefault("forbidden_scope", {"summary": "The key lacks the scope", "value": example})
    elif code not in shown:
        examples[code] = {"summary": example["title"], "value": example}
    if status in (429, 503):
        response.setdefault("headers", {}).update(_RETRY_AFTER)
    if status == 401:
        response.setdefault("headers", {})["WWW-Authenticate"] = {
            "description": "`Bearer`: send the API key as `Authorization: Bearer <key>`.",
            "schema": {"type": "string"},
        }


def _auth_note(scopes: tuple[str, ...] | None) -> str:
    if not scopes:
        return "**Auth**: `Authorization: Bearer <api key>`, any valid key."
    wanted = " or ".join(f"`{s}`" for s in scopes)
    return f"**Auth**: `Authorization: Bearer <api key>` with the scope {wanted}."


def document_problems(
    doc: dict[str, Any], scopes: Mapping[tuple[str, str], tuple[str, ...]] | None = None
) -> dict[str, Any]:
    """Every error response of the document as what the app answers: `application/problem+json` with the
    `Problem` schema and examples. FastAPI documents a 422 of its own (`HTTPValidationError`,
    application/json) on every operation with parameters; the problem handler never answers that shape.

    The errors operations share are added here, from what the document says of each operation and from
    `scopes` ((method, path) → the scopes it admits): 401 and 429 (with Retry-After) where it is
    authenticated, 403 where it needs a scope, 409 and 422 `idempotency_key_reused` where it takes an
    Idempotency-Key, 413 where it takes a body, 422 where it takes input, and 503 (with Retry-After)
    everywhere. What a route documents itself (its descriptions, its examples) is kept."""
    scopes = scopes or {}
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for response in responses.values():
                _move_example(response.get("content", {}).get(PROBLEM_MEDIA_TYPE))
            needed = scopes.get((method, path))
            if operation.get("security"):
                note = _auth_note(needed)
                description = operation.get("description", "")
                if note not in description:
                    operation["description"] = (description + "\n\n" + note).strip()
            for code in _shared_codes(operation, needed):
                _add_shared(operation, code, needed)
            for status, response in responses.items():
                if not (status.isdigit() and int(status) >= 400):
                    continue
                content = response.setdefault("content", {})
                if _is_fastapi_validation(content):
                    del content["application/json"]
                content.setdefault(PROBLEM_MEDIA_TYPE, {}).setdefault("schema", _PROBLEM_REF)
            operation["responses"] = dict(sorted(responses.items()))
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for name in _FASTAPI_VALIDATION:
        schemas.pop(name, None)
    return doc


def _move_example(media: dict[str, Any] | None) -> None:
    """A single `example` of a problem becomes one of its `examples` (named by its code), so that the shared
    ones can join it."""
    if media and "example" in media:
        example = media.pop("example")
        media.setdefault("examples", {})[example.get("code", "example")] = {
            "summary": example.get("title", ""),
            "value": example,
        }


def install_problem_handlers(app: FastAPI) -> None:
    """The exception handlers (`CatchUnexpected` is added with the middleware, in shared/api/app.py)."""
    app.add_exception_handler(OneCheckError, _handle_onecheck)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(Exception, _handle_unexpected)
