"""The sync scheduler (a `ServiceSpec` hook): runs each source on its `interval_seconds`, fails runs whose
process died, and records expiries. Every replica may run it: the per-source advisory lock and the open-run
index let one replica win each run, and the expiry job skips rows another replica holds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from shared.db.engine import Database
from shared.entries import expire_due_entries
from shared.errors import Conflict, NotFound
from shared.settings import Settings

from services.list_sync import repository as repo
from services.list_sync.runs import RunRegistry, fail_abandoned_runs, registry_of, start_run

log = logging.getLogger("onecheck.sync.scheduler")

TICK_SECONDS = 30.0
EXPIRY_BATCH = 1000


async def expire_entries(db: Database) -> int:
    """Record `expired` (with its notifications) for every entry past its `expires_on`, a batch per
    transaction. Returns how many."""
    total = 0
    while True:
        async with db.session() as session:
            done = await expire_due_entries(session, limit=EXPIRY_BATCH)
            await session.commit()
        total += done
        if done < EXPIRY_BATCH:
            return total


async def tick(db: Database, settings: Settings, registry: RunRegistry) -> None:
    """One round: abandoned runs failed, due sources started, expiries recorded."""
    await fail_abandoned_runs(db)
    async with db.connection() as conn:
        due = await repo.due_sources(conn)
    for name in due:
        with contextlib.suppress(Conflict, NotFound):  # another replica started it, or it was just removed
            run = await start_run(db, settings, name, registry=registry)
            log.info("scheduled sync run %s of %s started", run["run_id"], name)
    expired = await expire_entries(db)
    if expired:
        log.info("recorded %d expiries", expired)


async def _loop(app: FastAPI) -> None:
    registry = registry_of(app.state)
    while True:
        try:
            await tick(app.state.db, app.state.settings, registry)
        except Exception as exc:  # keep scheduling: the next tick may find the database back
            log.warning("sync scheduler tick failed: %s", type(exc).__name__)
        await asyncio.sleep(TICK_SECONDS)


@contextlib.asynccontextmanager
async def scheduler(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if not settings.sync_scheduler_enabled:
        yield
        return
    task = asyncio.create_task(_loop(app), name="sync-scheduler")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Runs stopped here are marked failed (RunCancelled); another replica or the next start resumes.
        await registry_of(app.state).shutdown()
