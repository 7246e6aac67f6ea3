"""API keys, scopes and departments (contract: Conventions → Auth, Departments).

A key is `oc_` + 43 random URL-safe characters; only its SHA-256 is stored (keys are random, so a slow hash
adds nothing). Verified keys are cached per process for `ONECHECK_AUTH_CACHE_SECONDS`, which keeps the check's
hot path at its own database round trips.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.db.engine import Database
from shared.errors import Forbidden, RateLimited, Unauthorized
from shared.settings import Settings

KEY_PREFIX = "oc_"


@dataclass(frozen=True, slots=True)
class Client:
    client_id: uuid.UUID
    name: str
    department: str
    scopes: frozenset[str]
    any_department: bool

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def sees_pii(self) -> bool:
        return "pii:read" in self.scopes


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str:
    return key[:10]


_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer <key>`")
_cache: dict[str, tuple[float, Client | None]] = {}
_windows: dict[uuid.UUID, tuple[int, int]] = {}

FETCH_CLIENT_SQL = """
SELECT client_id, name, department, scopes, any_department
FROM api_clients WHERE key_hash = $1 AND revoked_at IS NULL
"""


def clear_auth_cache() -> None:
    _cache.clear()
    _windows.clear()


async def _lookup(db: Database, key: str, ttl: float) -> Client | None:
    digest = hash_key(key)
    now = time.monotonic()
    cached = _cache.get(digest)
    if cached is not None and now - cached[0] < ttl:
        return cached[1]
    async with db.connection() as conn:
        row = await conn.fetchrow(FETCH_CLIENT_SQL, digest)
    client = None
    if row is not None:
        client = Client(
            client_id=row["client_id"],
            name=row["name"],
            department=row["department"],
            scopes=frozenset(row["scopes"]),
            any_department=row["any_department"],
        )
    if ttl > 0:
        if len(_cache) > 10_000:  # unknown keys must not grow the cache without bound
            _cache.clear()
        _cache[digest] = (now, client)
    return client


def _rate_limit(client: Client, per_minute: int) -> None:
    """A fixed one-minute window per client, per process (with N workers the cap is N × the setting)."""
    if per_minute <= 0:
        return
    window = int(time.time() // 60)
    start, count = _windows.get(client.client_id, (window, 0))
    if start != window:
        start, count = window, 0
    count += 1
    _windows[client.client_id] = (start, count)
    if count > per_minute:
        raise RateLimited(
            f"more than {per_minute} requests this minute", retry_after=60 - int(time.time()) % 60
        )


# Each FastAPI dependency node costs a few microseconds of framework work per request (FastAPI resolves
# the graph anew every time), so a scope check is one node over HTTPBearer (which documents the scheme in
# OpenAPI), not a chain of them; the database comes from app state, as `deps.get_db` reads it.
async def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Client:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("send the API key as `Authorization: Bearer <key>`")
    settings: Settings = request.app.state.settings
    db: Database = request.app.state.db
    client = await _lookup(db, credentials.credentials, settings.auth_cache_seconds)
    if client is None:
        raise Unauthorized("unknown or revoked API key")
    request.state.client = client
    _rate_limit(client, settings.rate_limit_per_minute)
    return client


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Client:
    """Any valid key."""
    return await _authenticate(request, credentials)


def require_scope(*scopes: str) -> Callable[..., Awaitable[Client]]:
    """A dependency admitting clients that hold any one of `scopes`."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Client:
        client = await _authenticate(request, credentials)
        if not any(client.has(scope) for scope in scopes):
            raise Forbidden(f"this API key lacks the scope {' or '.join(scopes)!s}")
        return client

    dependency.__name__ = "require_" + "_or_".join(s.replace(":", "_") for s in scopes)
    return dependency


def ensure_item_department(client: Client, item_department: str) -> None:
    """A client checks its own department's items; a city-wide platform (`any_department`) any item."""
    if not client.any_department and client.department != item_department:
        raise Forbidden(f"item belongs to {item_department!r}; this client is of {client.department!r}")


def ensure_issuing_department(client: Client, issuing_department: str) -> None:
    """Entries are published and changed only by their issuing department."""
    if client.department != issuing_department:
        raise Forbidden(
            f"only the issuing department {issuing_department!r} may change this entry; "
            f"this client is of {client.department!r}"
        )


AnyClient = Annotated[Client, Depends(authenticate)]
CheckClient = Annotated[Client, Depends(require_scope("check"))]
FeedbackClient = Annotated[Client, Depends(require_scope("feedback"))]
FeedbackReader = Annotated[Client, Depends(require_scope("feedback", "check"))]
ListsReader = Annotated[Client, Depends(require_scope("lists:read"))]
ListsWriter = Annotated[Client, Depends(require_scope("lists:write"))]
CatalogueWriter = Annotated[Client, Depends(require_scope("catalogue:write"))]
SyncAdmin = Annotated[Client, Depends(require_scope("sync:admin"))]
StatsReader = Annotated[Client, Depends(require_scope("stats:read"))]
