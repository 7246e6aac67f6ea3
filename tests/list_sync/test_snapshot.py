"""`snapshot` sources: staged, applied in one transaction; missing entries end; held / confirm / discard."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import httpx
import pytest
import respx

from services.list_sync.runs import confirm_run, discard_run, execute_run
from shared.db.engine import Database
from shared.errors import Conflict
from shared.settings import Settings
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
    confirmed = await confirm_run(db, sync_settings, held["run_id"])
    assert confirmed["status"] == "succeeded"
    assert confirmed["finished_at"] is not None
    assert confirmed["counts"]["ended"] == 3
    assert confirmed["counts"]["unchanged"] == 2
    stored = await entries_of(db, "tax")
    assert [k for k, e in sorted(stored.items()) if e["status"] == "ended"] == ["S-3", "S-4", "S-5"]
    with pytest.raises(Conflict):
        await confirm_run(db, sync_settings, held["run_id"])
    quarantine = await fetch(db, "SELECT count(*) FROM sync_quarantine")
    assert quarantine[0][0] == 0


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
