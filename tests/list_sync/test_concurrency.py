"""With real commits and several connections: one run per source at a time (advisory lock + open-run index),
abandoned runs found, runs in the background of the app, held-run confirm racing a discard."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import respx

from services.list_sync.runs import advisory_key, execute_run, fail_abandoned_runs, registry_of
from shared.db.engine import Database
from shared.errors import Conflict
from shared.settings import Settings
from tests.builders import load_catalogue, make_client
from tests.conftest import AppFactory, api_client
from tests.list_sync.helpers import BASE, add_source, envelope, fetch, page, record

pytestmark = pytest.mark.committing


async def test_two_runs_of_one_source_never_overlap(committed_db: Database, sync_settings: Settings) -> None:
    db = committed_db
    await load_catalogue(db)
    await add_source(db, "court")
    gate = asyncio.Event()
    asked = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        asked.set()
        await gate.wait()
        return page(envelope([record("C-1")], "n"))

    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(side_effect=slow)
        first = asyncio.create_task(execute_run(db, sync_settings, "court"))
        await asked.wait()  # the first run holds the source
        with pytest.raises(Conflict, match="in progress"):
            await execute_run(db, sync_settings, "court")
        gate.set()
        view = await first
    assert view is not None
    assert view["status"] == "succeeded"
    rows = await fetch(db, "SELECT status FROM sync_runs")
    assert [r["status"] for r in rows] == ["succeeded"]


async def test_a_run_held_by_another_replica_answers_409(
    committed_db: Database, app_factory: AppFactory, sync_settings: Settings
) -> None:
    db = committed_db
    await add_source(db, "court")
    _, key = await make_client(db, scopes="sync:admin")
    async with db.connection() as other_replica:
        assert await other_replica.fetchval("SELECT pg_try_advisory_lock($1)", advisory_key("court"))
        try:
            async with api_client(app_factory(db, "list-sync", settings=sync_settings), key) as api:
                response = await api.post("/v1/sources/court/runs")
            assert response.status_code == 409
            assert response.json()["code"] == "conflict"
        finally:
            await other_replica.execute("SELECT pg_advisory_unlock($1)", advisory_key("court"))


async def _running(db: Database, source: str, worker: str) -> Any:
    async with db.connection() as conn:
        return await conn.fetchval(
            "INSERT INTO sync_runs (run_id, source, status, worker) VALUES (gen_random_uuid(), $1, 'running', $2) "
            "RETURNING run_id",
            source,
            worker,
        )


async def test_only_runs_without_a_live_process_are_failed(committed_db: Database) -> None:
    db = committed_db
    await add_source(db, "alive")
    await add_source(db, "dead")
    alive = await _running(db, "alive", "host-a:1")
    dead = await _running(db, "dead", "host-b:2")
    async with db.connection() as live_process:
        await live_process.execute("SELECT pg_advisory_lock($1)", advisory_key("alive"))
        try:
            assert await fail_abandoned_runs(db) == 1
        finally:
            await live_process.execute("SELECT pg_advisory_unlock($1)", advisory_key("alive"))
    statuses = {r["run_id"]: r["status"] for r in await fetch(db, "SELECT run_id, status FROM sync_runs")}
    assert statuses == {alive: "running", dead: "failed"}


async def test_the_lock_goes_with_a_dead_connection(committed_db: Database) -> None:
    """A process killed mid-run loses its session: the server frees the lock and the run is found dead."""
    import asyncpg

    from shared.db.engine import asyncpg_dsn

    db = committed_db
    await add_source(db, "court")
    run_id = await _running(db, "court", "killed:9")
    doomed = await asyncpg.connect(asyncpg_dsn(db.url))
    await doomed.execute("SELECT pg_advisory_lock($1)", advisory_key("court"))
    assert await fail_abandoned_runs(db) == 0  # still alive
    doomed.terminate()  # like kill -9: no unlock, no goodbye
    for _ in range(50):
        if await fail_abandoned_runs(db):
            break
        await asyncio.sleep(0.05)
    [row] = await fetch(db, "SELECT status, error FROM sync_runs WHERE run_id = $1", run_id)
    assert row["status"] == "failed"
    assert row["error"].startswith("RunAbandoned")


async def test_a_background_run_through_the_api(
    committed_db: Database, app_factory: AppFactory, sync_settings: Settings
) -> None:
    db = committed_db
    await load_catalogue(db)
    await add_source(db, "court", "snapshot")
    _, key = await make_client(db, scopes="sync:admin")
    app = app_factory(db, "list-sync", settings=sync_settings)
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        mock.get("/entries").mock(return_value=page(envelope([record(f"B-{i}") for i in range(20)])))
        async with api_client(app, key) as api:
            started = await api.post("/v1/sources/court/runs")
            assert started.status_code == 202
            again = await api.post("/v1/sources/court/runs")
            assert again.status_code in (202, 409)  # 409 while the first is still running
            await registry_of(app.state).wait_all()
            view = (await api.get(f"/v1/runs/{started.json()['run_id']}")).json()
    assert view["status"] == "succeeded"
    assert view["counts"]["received"] == 20


async def test_cancelling_a_run_marks_it_failed(committed_db: Database, sync_settings: Settings) -> None:
    db = committed_db
    await load_catalogue(db)
    await add_source(db, "court")
    asked = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        asked.set()
        await asyncio.sleep(60)
        raise AssertionError("unreachable")

    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        mock.get("/entries").mock(side_effect=hang)
        task = asyncio.create_task(execute_run(db, sync_settings, "court"))
        await asked.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    [row] = await fetch(db, "SELECT status, error FROM sync_runs")
    assert row["status"] == "failed"
    assert row["error"] == "RunCancelled: the process stopped the run"
    async with db.connection() as conn:  # and the lock was released
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", advisory_key("court"))
        await conn.execute("SELECT pg_advisory_unlock($1)", advisory_key("court"))
