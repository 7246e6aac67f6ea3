"""The one Alembic chain: upgrade → downgrade → upgrade with data, no drift, unknown revisions refused."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest
from alembic import command
from sqlalchemy.engine import make_url

from shared.api.app import UnknownSchemaError, verify_schema
from shared.db import migrate
from shared.db.engine import Database, asyncpg_dsn
from shared.settings import Settings


def _scratch_database(database_url: str, name: str) -> str:
    admin = make_url(database_url).set(database="postgres").render_as_string(hide_password=False)

    async def work() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(admin))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(work())
    return make_url(database_url).set(database=name).render_as_string(hide_password=False)


async def _count(url: str, sql: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def scratch_url(database_url: str) -> str:
    return _scratch_database(database_url, f"{make_url(database_url).database}_migrations")


def test_upgrade_downgrade_upgrade_keeps_data_and_has_no_drift(scratch_url: str) -> None:
    migrate.upgrade(scratch_url)
    # Data in the tables this test can round-trip: the newest revisions come off and go back on.
    heads = migrate.code_heads()
    assert heads

    async def seed() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(scratch_url))
        try:
            await conn.execute(
                "INSERT INTO list_types (code, name, kind, issuing_authority) VALUES ('LTX', '测试', 'black', '测试')"
            )
        finally:
            await conn.close()

    asyncio.run(seed())
    migrate.downgrade(scratch_url, "base")
    migrate.upgrade(scratch_url)
    # After a full downgrade the data is gone (base drops everything); a second upgrade must work on an empty DB.
    assert asyncio.run(_count(scratch_url, "SELECT count(*) FROM list_types")) == 0
    command.check(migrate.alembic_config(scratch_url))  # raises on any model/migration drift


def test_checks_are_partitioned_by_month_with_a_default(scratch_url: str) -> None:
    migrate.upgrade(scratch_url)
    partitions = asyncio.run(
        _count(scratch_url, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'checks'::regclass")
    )
    assert partitions >= 4  # three months around now + the default
    made = asyncio.run(_count(scratch_url, "SELECT onecheck_ensure_check_partitions('2030-01-01', 2)"))
    assert made == 2
    again = asyncio.run(_count(scratch_url, "SELECT onecheck_ensure_check_partitions('2030-01-01', 2)"))
    assert again == 0


async def test_service_refuses_a_schema_revision_it_does_not_know(
    scratch_url: str, test_settings: Settings
) -> None:
    await asyncio.to_thread(migrate.upgrade, scratch_url)
    db = Database(scratch_url, test_settings)
    try:
        async with db.connection() as conn:
            await conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
        with pytest.raises(UnknownSchemaError):
            await verify_schema(db)
    finally:
        async with db.connection() as conn:
            await conn.execute("DELETE FROM alembic_version")
        await db.close()


async def test_unreachable_database_does_not_stop_start_up(test_settings: Settings) -> None:
    db = Database("postgresql+asyncpg://postgres@127.0.0.1:1/none", test_settings)
    try:
        await verify_schema(db)  # logs and returns: /readyz reports it; no crash loop
    finally:
        await db.close()


async def test_maintenance_keeps_partitions_ahead_and_drops_expired_keys(db: Database) -> None:
    from shared.db.maintenance import run_maintenance

    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO idempotency_keys (client_id, route, key, request_hash, expires_at) "
            "VALUES (gen_random_uuid(), 'r', 'old', 'h', now() - interval '1 hour'), "
            "       (gen_random_uuid(), 'r', 'new', 'h', now() + interval '1 hour')"
        )
    done = await run_maintenance(db, dt.date(2031, 5, 17))
    assert done == {"partitions": 3, "idempotency_keys": 1}
    async with db.connection() as conn:
        names = {
            r[0]
            for r in await conn.fetch(
                "SELECT relname FROM pg_class WHERE relname LIKE 'checks_p2031%' AND relkind = 'r'"
            )
        }
        keys = [r[0] for r in await conn.fetch("SELECT key FROM idempotency_keys")]
    assert names == {"checks_p203105", "checks_p203106", "checks_p203107"}
    assert keys == ["new"]
