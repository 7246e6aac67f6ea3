"""`snapshot` sources: staged, applied in one transaction; missing entries end; held / confirm / discard."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
from typing import Any

import httpx
import pytest
import respx

from services.list_sync import runs
from services.list_sync.runs import (
    RunRegistry,
    advisory_key,
    confirm_run,
    discard_run,
    execute_run,
    fail_abandoned_runs,
    get_run,
    registry_of,
)
from shared.db.engine import Database
from shared.entries import SyncBatch
from shared.errors import Conflict
from shared.settings import Settings
from tests.builders import load_catalogue, make_client
from tests.conftest import AppFactory, api_client
from tests.list_sync.helpers import (
    BASE,
    add_source,
    by_cursor,
    entries_of,
    envelope,
    events_of,
    fetch,
    fixture_bytes,
    page,
    record,
    run,
)


async def _snapshot(
    db: Database, settings: Settings, entries: list[Any], name: str = "tax"
) -> dict[str, Any]:
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(return_value=page(envelope(entries)))
        return await run(db, settings, name)


async def _state(db: Database, source: str) -> list[tuple[Any, ...]]:
    """Everything about the source's entries that a run could change."""
    rows = await fetch(
        db,
        "SELECT source_record_id, status, end_reason, content_hash, upstream_updated_at FROM list_entries "
        "WHERE source_name = $1 ORDER BY source_record_id",
        source,
    )
    events = await fetch(db, "SELECT count(*) FROM entry_events")
    return [tuple(r) for r in rows] + [("events", events[0][0])]


def five() -> list[dict[str, Any]]:
    return [record(f"S-{i}") for i in range(1, 6)]


async def test_a_snapshot_over_pages_starts_without_cursor(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    await add_source(db, "tax", "snapshot")
    async with db.connection() as conn:  # a snapshot ignores any cursor
        await conn.execute("UPDATE sync_sources SET cursor = 'stale-cursor' WHERE name = 'tax'")
    serve = by_cursor({None: page("snapshot-page-1.json"), "s2": page("snapshot-page-2.json")})
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(side_effect=serve)
        view = await run(db, sync_settings, "tax")
    assert view["status"] == "succeeded"
    assert view["counts"]["inserted"] == 5
    assert view["counts"]["received"] == 5
    assert [r.url.params.get("cursor") for r in serve.calls] == [None, "s2"]  # type: ignore[attr-defined]
    assert set(await entries_of(db, "tax")) == {f"S-{i}" for i in range(1, 6)}
    [source] = await fetch(db, "SELECT cursor FROM sync_sources WHERE name = 'tax'")
    assert source["cursor"] == "stale-cursor"  # untouched


async def test_entries_missing_from_a_complete_snapshot_end(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    await add_source(db, "tax", "snapshot")
    await _snapshot(db, sync_settings, five())
    # One of five missing: exactly the default 0.2 share, which is not *more than* it.
    view = await _snapshot(db, sync_settings, five()[:4])
    assert view["status"] == "succeeded"
    assert view["counts"]["unchanged"] == 4
    assert view["counts"]["ended"] == 1
    gone = (await entries_of(db, "tax"))["S-5"]
    assert (gone["status"], gone["end_reason"]) == ("ended", "removed")
    assert await events_of(db, gone["entry_id"]) == ["published", "removed"]
    [event] = await fetch(
        db, "SELECT basis, data FROM entry_events WHERE entry_id = $1 AND event = 'removed'", gone["entry_id"]
    )
    assert event["basis"] == "missing from a complete snapshot"
    assert event["data"]["status_before"] == "active"


async def test_a_snapshot_that_would_end_too_much_is_held_until_confirmed(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    await add_source(db, "tax", "snapshot")
    await _snapshot(db, sync_settings, five())
    before = await _state(db, "tax")
    held = await _snapshot(db, sync_settings, five()[:2])
    assert held["status"] == "held"
    assert held["finished_at"] is None
    assert held["counts"]["ended"] == 3  # what it would do
    assert await _state(db, "tax") == before  # and nothing changed
    with pytest.raises(Conflict):  # a held run blocks the source
        await execute_run(db, sync_settings, "tax")
    registry = RunRegistry()
    taken = await confirm_run(db, sync_settings, held["run_id"], registry=registry)
    assert (taken["status"], taken["finished_at"]) == ("running", None)  # answered; applied in the background
    await registry.wait(held["run_id"])
    confirmed = await get_run(db, held["run_id"])
    assert confirmed["status"] == "succeeded"
    assert confirmed["finished_at"] is not None
    assert confirmed["counts"]["ended"] == 3
    assert confirmed["counts"]["unchanged"] == 2
    stored = await entries_of(db, "tax")
    assert [k for k, e in sorted(stored.items()) if e["status"] == "ended"] == ["S-3", "S-4", "S-5"]
    with pytest.raises(Conflict):
        await confirm_run(db, sync_settings, held["run_id"], registry=registry)
    quarantine = await fetch(db, "SELECT count(*) FROM sync_quarantine")
    assert quarantine[0][0] == 0


async def test_a_confirm_whose_apply_fails_is_failed_and_changed_nothing(
    db: Database, catalogue: None, sync_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_source(db, "tax", "snapshot")
    await _snapshot(db, sync_settings, five())
    before = await _state(db, "tax")
    held = await _snapshot(db, sync_settings, five()[:2])

    async def broken(self: SyncBatch, **kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(SyncBatch, "apply", broken)
    registry = RunRegistry()
    assert (await confirm_run(db, sync_settings, held["run_id"], registry=registry))["status"] == "running"
    await registry.wait(held["run_id"])
    view = await get_run(db, held["run_id"])
    assert (view["status"], view["error"]) == ("failed", "RuntimeError: disk full")
    assert view["finished_at"] is not None
    assert sum(view["counts"].values()) == 0
    assert await _state(db, "tax") == before


async def test_a_held_snapshot_can_be_discarded(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    await add_source(db, "tax", "snapshot")
    await _snapshot(db, sync_settings, five())
    before = await _state(db, "tax")
    held = await _snapshot(db, sync_settings, [])  # an empty listing: the classic broken upstream
    assert held["status"] == "held"
    discarded = await discard_run(db, held["run_id"])
    assert discarded["status"] == "discarded"
    assert discarded["finished_at"] is not None
    assert await _state(db, "tax") == before
    with pytest.raises(Conflict):
        await discard_run(db, held["run_id"])
    assert (await _snapshot(db, sync_settings, five()))["status"] == "succeeded"  # the source is free again


async def test_the_share_counts_only_entries_in_effect(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    """Ending entries that are already ended or expired is no loss: they are not in the share."""
    await add_source(db, "tax", "snapshot")
    today = dt.date.today()
    old = [
        record(f"E-{i}", listed_on=today - dt.timedelta(days=900), expires_on=today - dt.timedelta(days=5))
        for i in range(8)
    ]
    await _snapshot(db, sync_settings, five() + old)
    view = await _snapshot(db, sync_settings, five())
    assert view["status"] == "succeeded"
    assert view["counts"]["ended"] == 0


@pytest.mark.parametrize(
    "failing",
    [
        page(b"oops", status=500),
        page("truncated.json"),
        page("html-error.html", content_type="text/html"),
        httpx.ReadTimeout("slow"),
    ],
    ids=["500", "truncated", "html", "timeout"],
)
async def test_a_failed_snapshot_changes_nothing(
    db: Database, catalogue: None, sync_settings: Settings, failing: Any
) -> None:
    await add_source(db, "tax", "snapshot")
    await _snapshot(db, sync_settings, five())
    before = await _state(db, "tax")
    first = envelope([*five()[:2], record("S-NEW")], "s2", has_more=True)
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(side_effect=by_cursor({None: page(first), "s2": failing}))
        view = await run(db, sync_settings, "tax")
    assert view["status"] == "failed", view
    assert await _state(db, "tax") == before
    assert sum(view["counts"].values()) == 0
    pages = await fetch(
        db, "SELECT seq, sha256, body FROM sync_pages WHERE run_id = $1::uuid ORDER BY seq", view["run_id"]
    )
    assert pages[0]["seq"] == 1
    if not isinstance(failing, Exception) and failing.status_code == 200:
        # A 200 that cannot be parsed is kept as evidence, with its hash.
        assert pages[1]["body"] == failing.content
        assert pages[1]["sha256"] == hashlib.sha256(failing.content).hexdigest()


async def test_a_quarantined_record_does_not_end_its_entry(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    await add_source(db, "tax", "snapshot")
    await _snapshot(db, sync_settings, five())
    broken = record("S-5", list_type="LT99")
    view = await _snapshot(db, sync_settings, [*five()[:4], broken])
    assert view["counts"]["quarantined"] == 1
    assert view["counts"]["ended"] == 0
    assert (await entries_of(db, "tax"))["S-5"]["status"] == "active"


async def test_duplicates_within_a_snapshot_keep_the_newest(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    await add_source(db, "tax", "snapshot")
    t = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    entries = [
        record("D-1", reason="旧", updated_at=t),
        record("D-1", reason="新", updated_at=t + dt.timedelta(hours=1)),
        record("D-1", reason="旧", updated_at=t),
    ]
    view = await _snapshot(db, sync_settings, entries)
    assert view["counts"]["inserted"] == 1
    assert view["counts"]["duplicates"] == 2
    assert (await entries_of(db, "tax"))["D-1"]["reason"] == "新"


async def test_a_snapshot_page_at_the_byte_cap_fails_and_keeps_the_prefix(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    await add_source(db, "tax", "snapshot")
    settings = sync_settings.model_copy(update={"sync_max_page_bytes": 1000})
    body = fixture_bytes("snapshot-page-1.json")
    assert len(body) > 1000

    async def drip() -> Any:
        for i in range(0, len(body), 100):
            yield body[i : i + 100]

    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(
            return_value=httpx.Response(200, content=drip(), headers={"content-type": "application/json"})
        )
        view = await run(db, settings, "tax")
    assert view["status"] == "failed"
    assert view["error"].startswith("PageTooLarge: page is over the cap of 1,000 bytes")
    [stored] = await fetch(
        db, "SELECT body, size_bytes FROM sync_pages WHERE run_id = $1::uuid", view["run_id"]
    )
    assert stored["body"] == body[:1000]
    assert stored["size_bytes"] == 1000
    assert await entries_of(db, "tax") == {}


# --- confirm in the background, with real commits ----------------------------------------------------------


async def _held(db: Database, settings: Settings) -> tuple[str, list[tuple[Any, ...]]]:
    """A held run of source `tax` (it would end 3 of 5), and the source's state before it."""
    await load_catalogue(db)
    await add_source(db, "tax", "snapshot")
    await _snapshot(db, settings, five())
    before = await _state(db, "tax")
    held = await _snapshot(db, settings, five()[:2])
    assert held["status"] == "held"
    return held["run_id"], before


@pytest.mark.committing
@pytest.mark.parametrize("busy", ["briefly", "past_the_answer"])
async def test_confirm_waits_for_the_source_lock_instead_of_refusing(
    committed_db: Database,
    app_factory: AppFactory,
    sync_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    busy: str,
) -> None:
    """Another session holding the source's lock (a scheduler tick, a refused start) delays the apply; the
    confirm never answers 409 for it."""
    db = committed_db
    run_id, before = await _held(db, sync_settings)
    _, key = await make_client(db, scopes="sync:admin")
    app = app_factory(db, "list-sync", settings=sync_settings)
    if busy == "past_the_answer":
        monkeypatch.setattr(runs, "CONFIRM_ANSWER_SECONDS", 0.2)
    async with db.connection() as tick, api_client(app, key) as api:
        assert await tick.fetchval("SELECT pg_try_advisory_lock($1)", advisory_key("tax"))

        async def release(after: float) -> None:
            await asyncio.sleep(after)
            await tick.execute("SELECT pg_advisory_unlock($1)", advisory_key("tax"))

        if busy == "briefly":  # freed while the request waits: the apply has taken the run
            releasing = asyncio.create_task(release(0.3))
            response = await api.post(f"/v1/runs/{run_id}/confirm")
            await releasing
            assert response.status_code == 202, response.text
            assert response.json()["status"] == "running"
        else:  # still busy when the request answers: the run stays held until the apply takes it
            response = await api.post(f"/v1/runs/{run_id}/confirm")
            assert response.status_code == 202, response.text
            assert response.json()["status"] == "held"
            assert await _state(db, "tax") == before
            again = await api.post(f"/v1/runs/{run_id}/confirm")
            assert again.status_code == 409
            assert again.json()["detail"] == "the run is held, and a confirm of it is under way"
            await release(0)
        await registry_of(app.state).wait(run_id)
        view = (await api.get(f"/v1/runs/{run_id}")).json()
    assert view["status"] == "succeeded"
    assert view["counts"]["ended"] == 3
    stored = await entries_of(db, "tax")
    assert [k for k, e in sorted(stored.items()) if e["status"] == "ended"] == ["S-3", "S-4", "S-5"]


@pytest.mark.committing
async def test_a_confirm_whose_process_dies_mid_apply_is_failed_when_found_and_changed_nothing(
    committed_db: Database, sync_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = committed_db
    run_id, before = await _held(db, sync_settings)
    doomed = Database(db.url, sync_settings, application_name="onecheck-test-doomed")
    applied = asyncio.Event()
    original = SyncBatch.apply

    async def apply_then_hang(self: SyncBatch, **kwargs: Any) -> Any:
        changes = await original(self, **kwargs)
        applied.set()
        await asyncio.sleep(3600)  # the process dies here, before its transaction commits
        return changes

    monkeypatch.setattr(SyncBatch, "apply", apply_then_hang)
    registry = RunRegistry()
    try:
        taken = await confirm_run(doomed, sync_settings, run_id, registry=registry)
        assert taken["status"] == "running"
        await asyncio.wait_for(applied.wait(), 30)
        assert await fail_abandoned_runs(db) == 0  # alive: it holds the source's lock
        assert (await get_run(db, run_id))["status"] == "running"
        # kill -9: its sessions end without a word; the server rolls its transaction back and frees the lock.
        async with db.connection() as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                "onecheck-test-doomed",
            )
        for _ in range(100):
            if await fail_abandoned_runs(db):
                break
            await asyncio.sleep(0.05)
        view = await get_run(db, run_id)
        assert view["status"] == "failed"
        assert view["error"].startswith("RunAbandoned")
        assert sum(view["counts"].values()) == 0  # like any failed snapshot: it applied nothing
        assert await _state(db, "tax") == before
    finally:
        for task in list(registry.tasks.values()):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(registry.wait_all(), 10)
        with contextlib.suppress(Exception):
            await doomed.close()
    assert (await get_run(db, run_id))[
        "status"
    ] == "failed"  # and the dead process's leftovers did not undo it
