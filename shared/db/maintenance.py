"""Housekeeping every service runs in the background: check partitions stay ahead of time, and expired
`Idempotency-Key` rows go. Safe with any number of replicas: one transaction-level advisory lock per pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator

import asyncpg
from fastapi import FastAPI

from shared.db.engine import Database

log = logging.getLogger("onecheck.maintenance")

MAINTENANCE_LOCK = 0x0C_0001  # pg advisory lock key for this pass
MONTHS_AHEAD = 3
INTERVAL_SECONDS = 3600.0


async def run_maintenance(db: Database, today: dt.date | None = None) -> dict[str, int]:
    """One pass; returns what it did. Partitions are made for this month and `MONTHS_AHEAD - 1` after."""
    today = today or dt.date.today()
    async with db.connection() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", MAINTENANCE_LOCK):
            return {"partitions": 0, "idempotency_keys": 0}
        try:
            async with conn.transaction():
                made = int(
                    await conn.fetchval(
                        "SELECT onecheck_ensure_check_partitions($1, $2)", today, MONTHS_AHEAD
                    )
                )
        except asyncpg.CheckViolationError as exc:
            # The default partition already holds rows of that month: an operator must move them (docs/operations.md).
            log.error("could not create a check partition: %s", exc)
            made = 0
        deleted = await conn.execute("DELETE FROM idempotency_keys WHERE expires_at < now()")
    return {"partitions": made, "idempotency_keys": int(deleted.split()[-1])}


@contextlib.asynccontextmanager
async def maintenance_hook(app: FastAPI) -> AsyncIterator[None]:
    db: Database = app.state.db

    async def loop() -> None:
        while True:
            try:
                done = await run_maintenance(db)
                if done["partitions"]:
                    log.info("created %d check partition(s)", done["partitions"])
            except Exception as exc:  # the database may be down: try again next pass
                log.warning("maintenance pass failed: %s", type(exc).__name__)
            await asyncio.sleep(INTERVAL_SECONDS)

    task = asyncio.create_task(loop(), name="onecheck-maintenance")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
