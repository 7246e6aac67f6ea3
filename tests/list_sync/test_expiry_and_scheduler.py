"""The expiry job, the scheduler hook and the foreground runner (`onecheck sync run`)."""

from __future__ import annotations

import datetime as dt
import io

import pytest
import respx
from fastapi import FastAPI
from rich.console import Console

from services.list_sync.runner import run_in_foreground
from services.list_sync.runs import RunRegistry
from services.list_sync.scheduler import expire_entries, scheduler, tick
from shared.db.engine import Database
from shared.entries import expire_due_entries
from shared.lifecycle import business_date
from shared.settings import Settings
from tests.builders import make_entry
from tests.conftest import AppFactory
from tests.list_sync.helpers import (
    BASE,
    add_source,
    by_cursor,
    entries_of,
    envelope,
    events_of,
    fetch,
    page,
    record,
    run,
    uscc,
)


async def test_expiry_records_an_event_and_stores_the_read_status(db: Database, catalogue: None) -> None:
    today = business_date()
    due = await make_entry(
        db, listed_on=today - dt.timedelta(days=100), expires_on=today - dt.timedelta(days=1)
    )
    pending = await make_entry(
        db,
        code="91440703MA51AB2D0Q",
        listed_on=today - dt.timedelta(days=100),
        expires_on=today - dt.timedelta(days=3),
        events=["objection"],
    )
    last_day = await make_entry(db, code="91440703MA51AB3E5Y", expires_on=today)  # still in effect today
    assert await expire_entries(db) == 2
    assert await expire_entries(db) == 0  # once only
    rows = {
        r["entry_id"]: r
        for r in await fetch(
            db, "SELECT entry_id, status, end_reason, ended_on, expires_on FROM list_entries"
        )
    }
    assert (rows[due]["status"], rows[due]["end_reason"], rows[due]["ended_on"]) == (
        "ended",
        "expired",
        today,
    )
    assert rows[pending]["ended_on"] == today - dt.timedelta(days=2)
    assert rows[last_day]["status"] == "active"
    assert await events_of(db, pending) == ["published", "objection", "expired"]
    [event] = await fetch(
        db, "SELECT data, operator FROM entry_events WHERE entry_id = $1 AND event = 'expired'", pending
    )
    assert event["data"]["status_before"] == "objection_pending"
    assert event["operator"] == "system"


async def test_expiry_works_in_batches(db: Database, catalogue: None) -> None:
    today = business_date()
    for i in range(5):
        await make_entry(
            db,
            code=uscc(100 + i),
            listed_on=today - dt.timedelta(days=10),
            expires_on=today - dt.timedelta(days=1),
        )
    async with db.session() as session:
        assert await expire_due_entries(session, limit=2) == 2
        assert await expire_due_entries(session, limit=2) == 2
        assert await expire_due_entries(session, limit=2) == 1
        await session.commit()


async def test_a_later_expiry_from_the_upstream_revives_an_expired_entry(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    today = business_date()
    await add_source(db, "court")
    t = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    first = record(
        "E-1", listed_on=today - dt.timedelta(days=100), expires_on=today - dt.timedelta(days=1), updated_at=t
    )
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(return_value=page(envelope([first], "n")))
        await run(db, sync_settings, "court")
    await expire_entries(db)
    assert (await entries_of(db, "court"))["E-1"]["end_reason"] == "expired"
    extended = {
        **first,
        "expires_on": (today + dt.timedelta(days=300)).isoformat(),
        "updated_at": (t + dt.timedelta(days=1)).isoformat(),
    }
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(return_value=page(envelope([extended], "n")))
        view = await run(db, sync_settings, "court")
    assert view["counts"]["updated"] == 1
    entry = (await entries_of(db, "court"))["E-1"]
    assert (entry["status"], entry["end_reason"], entry["ended_on"]) == ("active", None, None)
    assert await events_of(db, entry["entry_id"]) == ["published", "expired", "updated"]


async def test_a_tick_starts_due_sources_and_records_expiries(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    await add_source(db, "due")
    await add_source(db, "manual")
    async with db.connection() as conn:
        await conn.execute("UPDATE sync_sources SET interval_seconds = 600 WHERE name = 'due'")
    registry = RunRegistry()
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(return_value=page(envelope([record("T-1")], "n")))
        await tick(db, sync_settings, registry)
        await registry.wait_all()
        await tick(db, sync_settings, registry)  # not due again for 600 s
        await registry.wait_all()
    runs = await fetch(db, "SELECT source, status FROM sync_runs")
    assert [tuple(r) for r in runs] == [("due", "succeeded")]


async def test_the_hook_does_nothing_when_disabled(
    db: Database, app_factory: AppFactory, test_settings: Settings
) -> None:
    app: FastAPI = app_factory(db, "list-sync")
    assert test_settings.sync_scheduler_enabled is False
    async with scheduler(app):
        pass


async def test_the_hook_runs_and_stops(
    db: Database, app_factory: AppFactory, test_settings: Settings
) -> None:
    settings = test_settings.model_copy(update={"sync_scheduler_enabled": True})
    app: FastAPI = app_factory(db, "list-sync", settings=settings)
    async with scheduler(app):
        import asyncio

        await asyncio.sleep(0.05)  # one tick runs (nothing due)


async def test_the_foreground_runner_prints_the_counts(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    await add_source(db, "court")
    out = io.StringIO()
    console = Console(file=out, width=120)
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(
            side_effect=by_cursor({None: page("feed-page-1.json"), "c2": page("feed-page-2.json")})
        )
        assert await run_in_foreground(db, sync_settings, "court", console=console) is True
    text = out.getvalue()
    assert "succeeded" in text
    assert "inserted" in text
    assert "received" in text
    assert await run_in_foreground(db, sync_settings, "nope", console=console) is False
    assert "cannot run nope" in out.getvalue()


async def test_the_foreground_runner_reports_failure(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    await add_source(db, "court")
    out = io.StringIO()
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(return_value=page(b"", status=500))
        assert await run_in_foreground(db, sync_settings, "court", console=Console(file=out)) is False
    assert "UpstreamStatusError" in out.getvalue()


@pytest.mark.parametrize("status", ["held"])
async def test_the_foreground_runner_explains_a_held_run(
    db: Database, catalogue: None, sync_settings: Settings, status: str
) -> None:
    await add_source(db, "tax", "snapshot")
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(return_value=page(envelope([record(f"H-{i}") for i in range(5)])))
        await run(db, sync_settings, "tax")
    out = io.StringIO()
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(return_value=page(envelope([])))
        assert await run_in_foreground(db, sync_settings, "tax", console=Console(file=out, width=200)) is True
    assert status in out.getvalue()
    assert "/confirm" in out.getvalue()
