"""The floor app: a bare FastAPI app doing only the minimum work of a check, to measure the service against.

Per request: the bearer key looked up by its SHA-256 in `api_clients` (cached in the process, as the service
caches it), one indexed point query for the subject on `list_entries` (`subject_code = $1`), and one durable
insert of a record into `bench_floor_checks` (autocommit: one WAL flush, as a stored check needs), both
through a raw asyncpg pool with prepared statements (asyncpg's statement cache) and no reset query when a
connection goes back to the pool; a small JSON answer. The request body is the real check
body, parsed by a pydantic model as FastAPI does. Nothing else: no code validation, no catalogue, no audit.

    ONECHECK_DATABASE_URL=postgresql://… .venv/bin/python -m bench.floor_app --port 18081 --workers 2

It runs under uvicorn exactly as `onecheck serve` runs the services (uvloop and httptools where installed,
access log off, no log config).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import os
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

import asyncpg
import uvicorn
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

from shared.db.engine import asyncpg_dsn
from shared.ids import uuid7

FLOOR_TABLE = "bench_floor_checks"
CREATE_FLOOR_TABLE_SQL = f"""
CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (
    check_id uuid PRIMARY KEY,
    checked_at timestamptz NOT NULL,
    client_id uuid NOT NULL,
    item_code text NOT NULL,
    subject_code text NOT NULL,
    business_ref text NOT NULL,
    operator text NOT NULL,
    match_count integer NOT NULL
)
"""
CLIENT_SQL = "SELECT client_id FROM api_clients WHERE key_hash = $1 AND revoked_at IS NULL"
LOOKUP_SQL = "SELECT entry_id, list_type, status, expires_on FROM list_entries WHERE subject_code = $1"
INSERT_SQL = (
    f"INSERT INTO {FLOOR_TABLE} (check_id, checked_at, client_id, item_code, subject_code, business_ref, "
    "operator, match_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)


async def ensure_floor_table(conn: asyncpg.Connection) -> None:
    await conn.execute(CREATE_FLOOR_TABLE_SQL)


class FloorSubject(BaseModel):
    code: str
    name: str | None = None
    kind: str | None = None


class FloorPerson(BaseModel):
    role: str
    code: str
    name: str | None = None


class FloorCheck(BaseModel):
    item_code: str
    subject: FloorSubject
    related_persons: list[FloorPerson] = []
    business_ref: str
    operator: str


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release. asyncpg's default runs `SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL` (one more round trip per request); the floor changes no session state, so it skips
    it. (asyncpg still rolls back a transaction left open.)"""


class FloorState:
    """The process's pool (made on first use, so an app driven without lifespan works) and key cache."""

    def __init__(self, dsn: str, pool_max_size: int = 10) -> None:
        self.dsn = dsn
        self.pool_max_size = pool_max_size
        self._pool: asyncpg.Pool | None = None
        self._clients: dict[str, Any] = {}

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=0,
                max_size=self.pool_max_size,
                server_settings={"application_name": "bench-floor", "timezone": "UTC"},
                reset=_keep_session,
            )
        return self._pool

    async def client_id(self, authorization: str | None) -> Any:
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        digest = hashlib.sha256(authorization[7:].strip().encode()).hexdigest()
        if digest in self._clients:
            return self._clients[digest]
        pool = await self.pool()
        async with pool.acquire() as conn:
            client = await conn.fetchval(CLIENT_SQL, digest)
        if len(self._clients) > 10_000:
            self._clients.clear()
        self._clients[digest] = client
        return client

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def create_app(database_url: str | None = None) -> FastAPI:
    """The floor app over `database_url` (default: `ONECHECK_DATABASE_URL`); also a uvicorn factory."""
    url = database_url or os.environ.get("ONECHECK_DATABASE_URL")
    if not url:
        raise RuntimeError("set ONECHECK_DATABASE_URL to the benchmark database")
    state = FloorState(asyncpg_dsn(url))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await state.close()

    app = FastAPI(title="OneCheck benchmark floor app", lifespan=lifespan, openapi_url=None)
    app.state.floor = state

    @app.post("/v1/checks")
    async def check(
        body: FloorCheck, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        client_id = await state.client_id(authorization)
        if client_id is None:
            raise HTTPException(status_code=401, detail="unknown API key")
        code = body.subject.code.strip().upper()
        check_id = uuid7()
        pool = await state.pool()
        async with pool.acquire() as conn:
            rows = await conn.fetch(LOOKUP_SQL, code)
            await conn.execute(
                INSERT_SQL,
                check_id,
                dt.datetime.now(dt.UTC),
                client_id,
                body.item_code,
                code,
                body.business_ref,
                body.operator,
                len(rows),
            )
        return {"check_id": str(check_id), "outcome": "match" if rows else "clear", "match_count": len(rows)}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the benchmark floor app under uvicorn.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18081)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    uvicorn.run(
        "bench.floor_app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
