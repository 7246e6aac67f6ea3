"""The test harness itself: what a test writes through `db` never outlives the test."""

from __future__ import annotations

import pytest

from shared.db.engine import Database

MARK = "harness-isolation-probe"


async def _count(db: Database) -> int:
    async with db.connection() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = $1", MARK))


@pytest.mark.parametrize("attempt", [1, 2])
async def test_raw_writes_are_rolled_back_after_each_test(db: Database, attempt: int) -> None:
    # Both runs see zero before writing: the first run's row was rolled back, not committed.
    assert await _count(db) == 0
    async with db.connection() as conn:
        await conn.execute("INSERT INTO audit_log (action) VALUES ($1)", MARK)
    async with db.session() as session:
        await session.commit()  # a service's commit is only a savepoint release here
    assert await _count(db) == 1


async def test_an_error_inside_a_connection_rolls_back_only_that_piece(db: Database) -> None:
    async with db.connection() as conn:
        await conn.execute("INSERT INTO audit_log (action) VALUES ($1)", MARK)

    async def failing_piece() -> None:
        async with db.connection() as conn:
            await conn.execute("INSERT INTO audit_log (action) VALUES ($1)", MARK)
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await failing_piece()
    assert await _count(db) == 1
