"""One `Database` per process: a SQLAlchemy async engine (schema, off-hot-path work) and a raw asyncpg pool
(the hot check path, prepared statements). Both point at the same PostgreSQL.

Tests swap in a `Database` bound to one connection inside a rolled-back transaction (tests/conftest.py), so
code must get connections and sessions only through these two context managers.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from shared.settings import Settings


def asyncpg_dsn(database_url: str) -> str:
    """`postgresql+asyncpg://…` (the contract's form) → the `postgresql://…` asyncpg itself takes."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def sqlalchemy_url(database_url: str) -> str:
    url = make_url(database_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+asyncpg")
    return url.render_as_string(hide_password=False)


def _encode_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


async def init_connection(conn: asyncpg.Connection) -> None:
    """Same JSON convention as SQLAlchemy's asyncpg connections (which tests share): raw SQL passes JSON
    parameters as `json.dumps(...)` strings and reads JSON columns back as Python objects."""
    await conn.set_type_codec("jsonb", encoder=_encode_json, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=_encode_json, decoder=json.loads, schema="pg_catalog")


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """What a released connection needs: no transaction left open. asyncpg's default reset also runs
    `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every release, one more round trip per
    request; OneCheck sets no session state, holds no cursors or LISTENs, and releases every session-level
    advisory lock it takes in a `finally` (list-sync's per-source run lock)."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class Database:
    def __init__(self, database_url: str, settings: Settings, *, application_name: str = "onecheck") -> None:
        self.url = database_url
        self.settings = settings
        self.application_name = application_name
        server_settings = {
            "application_name": application_name,
            "statement_timeout": str(settings.db_statement_timeout_ms),
            "timezone": "UTC",
        }
        self.engine: AsyncEngine = create_async_engine(
            sqlalchemy_url(database_url),
            pool_pre_ping=True,
            pool_size=max(1, settings.db_pool_max_size // 2),
            max_overflow=settings.db_pool_max_size // 2,
            connect_args={"server_settings": server_settings},
        )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self._server_settings = server_settings
        self._pool: asyncpg.Pool | None = None

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                asyncpg_dsn(self.url),
                min_size=0,
                max_size=self.settings.db_pool_max_size,
                server_settings=self._server_settings,
                init=init_connection,
                reset=_reset_connection,
                # Connections older than this are replaced, so a restarted server is picked up cleanly.
                max_inactive_connection_lifetime=300,
            )
        return self._pool

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A raw asyncpg connection (autocommit unless you open `conn.transaction()`)."""
        pool = await self.pool()
        async with pool.acquire() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A SQLAlchemy session; commit explicitly at the end of the unit of work."""
        async with self.sessionmaker() as session:
            yield session

    async def ping(self) -> None:
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await self.engine.dispose()
