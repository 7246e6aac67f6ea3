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


def test_0007_gives_each_stored_subscription_code_its_kind(database_url: str) -> None:
    """The backfill classifies in SQL as `normalise` does: an all-digit USCC is a USCC, a citizen id whose
    characters 9-17 pass GB 11714 stays a citizen id."""
    from shared.codes import normalise

    url = _scratch_database(database_url, f"{make_url(database_url).database}_kinds")
    codes = [
        "91440703MA700000XN",  # USCC with letters
        "914407031000000248",  # USCC of digits only
        "440703197001040030",  # citizen id; 197001040 passes GB 11714
        "44070319700101000X",
        "MA51XX015",  # org code
        "440703000543214",  # registration number
    ]
    expected = [normalise(c).kind.value for c in codes]
    assert expected == ["uscc", "uscc", "citizen_id", "citizen_id", "org_code", "registration_no"]

    async def seed() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await conn.execute(
                "INSERT INTO subscriptions (subscription_id, client_id, callback_url, subject_codes, secret) "
                "VALUES (gen_random_uuid(), gen_random_uuid(), 'https://a.example/', $1, 's'), "
                "       (gen_random_uuid(), gen_random_uuid(), 'https://b.example/', NULL, 's')",
                codes,
            )
        finally:
            await conn.close()

    async def kinds() -> list[list[str] | None]:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            rows = await conn.fetch("SELECT subject_kinds FROM subscriptions ORDER BY callback_url")
            return [r[0] for r in rows]
        finally:
            await conn.close()

    try:
        migrate.upgrade(url, "0006_sync_pages_lz4")
        asyncio.run(seed())
        migrate.upgrade(url)
        assert asyncio.run(kinds()) == [expected, None]
        migrate.downgrade(url, "0006_sync_pages_lz4")
        migrate.upgrade(url)
        assert asyncio.run(kinds()) == [expected, None]
    finally:

        async def drop() -> None:
            admin = make_url(database_url).set(database="postgres").render_as_string(hide_password=False)
            conn = await asyncpg.connect(asyncpg_dsn(admin))
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}"')
            finally:
                await conn.close()

        asyncio.run(drop())
