"""`Idempotency-Key` (contract: Conventions → Idempotency).

Keys are scoped per client and route and kept 24 hours. The first request inserts an `in_flight` row; the
primary key (client, route, key) makes concurrent replays race on one INSERT, not on a read-then-write. The
winner runs, then stores its 2xx answer; a loser sees the same body → the stored answer, another body → 422
`idempotency_key_reused`, still in flight → 409 `conflict`. A failed first attempt releases its key.

An `in_flight` row older than `STALE_AFTER` (its process died between its write and its answer) may be taken
over; that small window is the price of keeping the check's own transaction free of the key bookkeeping.

A replay is still a request: a route that must audit it, or show it as the client may see it *now* (masked
after the client lost `pii:read`), passes `on_replay`, which receives the stored answer and returns the text
to send. Without it the stored text is sent as it is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from shared.api.auth import Client
from shared.api.text import scrub_nul
from shared.db.engine import Database
from shared.errors import Conflict, IdempotencyKeyReused, ValidationFailed

KEEP_FOR = dt.timedelta(hours=24)
STALE_AFTER = dt.timedelta(minutes=5)
MAX_KEY_LENGTH = 200

CLAIM_SQL = """
INSERT INTO idempotency_keys (client_id, route, key, request_hash, state, created_at, expires_at)
VALUES ($1, $2, $3, $4, 'in_flight', now(), now() + $5::interval)
ON CONFLICT (client_id, route, key) DO UPDATE
    SET request_hash = EXCLUDED.request_hash, state = 'in_flight', response_status = NULL,
        response_body = NULL, created_at = now(), expires_at = EXCLUDED.expires_at
    WHERE idempotency_keys.expires_at < now()
       OR (idempotency_keys.state = 'in_flight' AND idempotency_keys.created_at < now() - $6::interval)
RETURNING 1
"""


# The header, documented for OpenAPI through `openapi_extra=IDEMPOTENCY_KEY_DOC` and read with
# `idempotency_key(request)`. Not a FastAPI `Header()` parameter on the hot check routes: FastAPI re-inspects a
# header parameter's annotation on every request (~15 % of check-api's own CPU per check when measured).
IDEMPOTENCY_KEY_DOC: dict[str, Any] = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "Optional. The same key with the same body returns the first answer again (24 hours).",
            "schema": {"type": "string", "maxLength": MAX_KEY_LENGTH},
        }
    ]
}


def idempotency_key(request: Request) -> str | None:
    return request.headers.get("idempotency-key")


def canonical_hash(body: Any) -> str:
    """SHA-256 of canonical JSON: key order and whitespace do not make two bodies different.

    orjson (sorted keys) gives byte for byte the stdlib text below for JSON's own types, several times faster
    (it runs for every subject of a check); anything else it refuses goes the stdlib way."""
    try:
        data = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        data = json.dumps(
            body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
        ).encode()
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class RenderedJSON:
    """An answer already rendered as JSON text: sent (and stored for replays) as it is, not re-serialised."""

    text: str


def _response(status: int, answer: Any, headers: dict[str, str] | None) -> Response:
    if isinstance(answer, RenderedJSON):
        return Response(answer.text, status_code=status, media_type="application/json", headers=headers)
    return JSONResponse(answer, status_code=status, headers=headers)


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status: int
    body: str  # the exact JSON text first answered


# Called with the stored answer of a replayed request; returns the JSON text to send (same status).
ReplayHook = Callable[[StoredAnswer], Awaitable[str]]


async def _claim(
    db: Database, client: Client, route: str, key: str, request_hash: str
) -> StoredAnswer | None:
    async with db.connection() as conn:
        claimed = await conn.fetchval(
            CLAIM_SQL, client.client_id, route, key, request_hash, KEEP_FOR, STALE_AFTER
        )
        if claimed:
            return None
        row = await conn.fetchrow(
            "SELECT request_hash, state, response_status, response_body FROM idempotency_keys "
            "WHERE client_id = $1 AND route = $2 AND key = $3",
            client.client_id,
            route,
            key,
        )
    if row is None:  # released between our INSERT and SELECT: the key is free again
        return await _claim(db, client, route, key, request_hash)
    if row["request_hash"] != request_hash:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with another request body",
            errors=[{"loc": ["header", "Idempotency-Key"], "msg": "key reused with a different body"}],
        )
    if row["state"] != "done":
        raise Conflict("a request with this Idempotency-Key is still in flight; retry shortly")
    return StoredAnswer(row["response_status"], row["response_body"])


async def _complete(db: Database, client: Client, route: str, key: str, status: int, body: str) -> None:
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE idempotency_keys SET state = 'done', response_status = $4, response_body = $5 "
            "WHERE client_id = $1 AND route = $2 AND key = $3",
            client.client_id,
            route,
            key,
            status,
            body,
        )


async def _release(db: Database, client: Client, route: str, key: str) -> None:
    async with db.connection() as conn:
        await conn.execute(
            "DELETE FROM idempotency_keys WHERE client_id = $1 AND route = $2 AND key = $3 AND state = 'in_flight'",
            client.client_id,
            route,
            key,
        )


async def run_idempotent(
    db: Database,
    client: Client,
    *,
    route: str,
    key: str | None,
    body: Any,
    produce: Callable[[], Awaitable[tuple[int, Any]]],
    headers: dict[str, str] | None = None,
    on_replay: ReplayHook | None = None,
) -> Response:
    """Run `produce` (returning status and a JSON-able body or RenderedJSON) at most once per (client, route,
    key). `body` is the request body the key is bound to; a pydantic model is dumped only when a key is given.
    A replay sends `await on_replay(stored)` when given (audit it there), else the stored text."""
    if key is None:
        status, answer = await produce()
        return _response(status, answer, headers)
    # A route names a path a client sent (an id with a NUL answers 404 like any unknown one); the table's
    # text column cannot hold the NUL.
    route = scrub_nul(route)
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed(
            "Idempotency-Key must be 1 to 200 characters",
            errors=[{"loc": ["header", "Idempotency-Key"], "msg": "must be 1 to 200 characters"}],
        )
    if isinstance(body, BaseModel):
        body = body.model_dump(mode="json")
    stored = await _claim(db, client, route, key, canonical_hash(body))
    if stored is not None:
        return Response(
            stored.body if on_replay is None else await on_replay(stored),
            status_code=stored.status,
            media_type="application/json",
            headers={**(headers or {}), "Idempotent-Replayed": "true"},
        )
    try:
        status, answer = await produce()
    except BaseException:
        await _release(db, client, route, key)
        raise
    response = _response(status, answer, headers)
    if 200 <= status < 300:
        await _complete(db, client, route, key, status, bytes(response.body).decode())
    else:
        await _release(db, client, route, key)
    return response
