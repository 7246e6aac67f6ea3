"""`feed` sources: page by page with the cursor; resume after failure; counts (contract: list-sync → Sources)."""

from __future__ import annotations

import datetime as dt
import hashlib

import httpx
import respx

from shared.db.engine import Database
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


def counts(**given: int) -> dict[str, int]:
    keys = ("received", "inserted", "updated", "unchanged", "duplicates", "stale", "quarantined", "ended")
    return {**dict.fromkeys(keys, 0), "unmapped_legacy": 0, **given}


async def test_a_feed_run_applies_every_page_and_keeps_the_cursor(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    await add_source(db, "court")
    serve = by_cursor({None: page("feed-page-1.json"), "c2": page("feed-page-2.json")})
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(side_effect=serve)
        view = await run(db, sync_settings, "court")
    assert view["status"] == "succeeded"
    assert view["error"] is None
    assert view["counts"] == counts(received=5, inserted=5)
    assert set(view) == {"run_id", "source", "status", "started_at", "finished_at", "counts", "error"}
    requests = serve.calls  # type: ignore[attr-defined]
    assert [r.url.params.get("cursor") for r in requests] == [None, "c2"]
    assert all(r.url.params["limit"] == "1000" for r in requests)
    assert all(r.headers["authorization"] == "Bearer upstream-token" for r in requests)
    [source] = await fetch(db, "SELECT cursor FROM sync_sources WHERE name = 'court'")
    assert source["cursor"] == "c3"  # the last next_cursor: where the next run resumes

    stored = await entries_of(db, "court")
    f1 = stored["F-1"]
    assert (f1["status"], f1["list_kind"], f1["issuing_department"]) == (
        "active",
        "black",
        "江门市蓬江区人民法院",
    )
    assert f1["upstream_updated_at"] == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    persons = await fetch(
        db, "SELECT person_code, role, person_name FROM entry_persons WHERE entry_id = $1", f1["entry_id"]
    )
    assert [tuple(p) for p in persons] == [("440703198001011234", "legal_representative", "张三")]
    assert stored["F-4"]["expires_on"] is None  # LT07 has no default validity
    # An upstream `removed` for a record never seen is kept, ended, so an older re-delivery cannot revive it.
    assert (stored["F-5"]["status"], stored["F-5"]["end_reason"]) == ("ended", "removed")
    assert await events_of(db, f1["entry_id"]) == ["published"]
    [event] = await fetch(
        db, "SELECT operator, basis, run_id FROM entry_events WHERE entry_id = $1", f1["entry_id"]
    )
    assert event["operator"] == "sync:court"
    assert str(event["run_id"]) == view["run_id"]

    pages = await fetch(db, "SELECT seq, cursor, sha256, size_bytes, body FROM sync_pages ORDER BY seq")
    assert [(p["seq"], p["cursor"]) for p in pages] == [(1, None), (2, "c2")]
    raw = fixture_bytes("feed-page-1.json")
    assert pages[0]["body"] == raw
    assert pages[0]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert pages[0]["size_bytes"] == len(raw)


async def test_counts_of_a_later_delivery(db: Database, catalogue: None, sync_settings: Settings) -> None:
    """feed-page-3: F-1 twice (same content, then removed, newer), F-2 changed twice over, F-3 older."""
    await add_source(db, "court")
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(
            side_effect=by_cursor(
                {
                    None: page("feed-page-1.json"),
                    "c2": page("feed-page-2.json"),
                    "c3": page("feed-page-3.json"),
                }
            )
        )
        await run(db, sync_settings, "court")
        view = await run(db, sync_settings, "court")
    assert view["counts"] == counts(received=5, updated=2, duplicates=2, stale=1, ended=1)
    stored = await entries_of(db, "court")
    assert (stored["F-1"]["status"], stored["F-1"]["end_reason"]) == ("ended", "removed")
    assert stored["F-2"]["reason"] == "虚假宣传（更正）"
    assert stored["F-3"]["subject_name"] == "江门市丙科技有限公司"  # the older version was not applied
    assert await events_of(db, stored["F-1"]["entry_id"]) == ["published", "removed"]
    assert await events_of(db, stored["F-2"]["entry_id"]) == ["published", "updated"]
    [updated] = await fetch(
        db,
        "SELECT data FROM entry_events WHERE entry_id = $1 AND event = 'updated'",
        stored["F-2"]["entry_id"],
    )
    assert (
        updated["data"]["before"]["reason"] == "有履行能力而拒不履行生效法律文书确定义务"
    )  # history keeps the old


async def test_a_failed_feed_run_keeps_its_pages_and_the_next_run_resumes(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    await add_source(db, "court")
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(
            side_effect=by_cursor({None: page("feed-page-1.json"), "c2": page(b"down", status=503)})
        )
        failed = await run(db, sync_settings, "court")
    assert failed["status"] == "failed"
    assert failed["error"] == "UpstreamStatusError: upstream answered HTTP 503 on all 3 attempt(s)"
    assert failed["counts"] == counts(received=3, inserted=3)  # page 1 committed
    assert set(await entries_of(db, "court")) == {"F-1", "F-2", "F-3"}
    [source] = await fetch(db, "SELECT cursor FROM sync_sources WHERE name = 'court'")
    assert source["cursor"] == "c2"

    serve = by_cursor({"c2": page("feed-page-2.json")})
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(side_effect=serve)
        resumed = await run(db, sync_settings, "court")
    assert resumed["status"] == "succeeded"
    assert [r.url.params.get("cursor") for r in serve.calls] == ["c2"]  # type: ignore[attr-defined]
    assert resumed["counts"] == counts(received=2, inserted=2)
    assert set(await entries_of(db, "court")) == {"F-1", "F-2", "F-3", "F-4", "F-5"}
    [row] = await fetch(
        db, "SELECT cursor_start, cursor_end FROM sync_runs WHERE run_id = $1::uuid", resumed["run_id"]
    )
    assert (row["cursor_start"], row["cursor_end"]) == ("c2", "c3")


async def test_a_removed_then_relisted_record_is_active_again(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    await add_source(db, "court")
    t = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    deliveries = [
        [record("R-1", updated_at=t)],
        [record("R-1", status="removed", updated_at=t + dt.timedelta(hours=1))],
        [record("R-1", updated_at=t + dt.timedelta(hours=2))],
    ]
    statuses = []
    for entries in deliveries:
        with respx.mock(base_url=BASE) as mock:
            mock.get("/entries").mock(return_value=page(envelope(entries, "next")))
            await run(db, sync_settings, "court")
        statuses.append((await entries_of(db, "court"))["R-1"]["status"])
    assert statuses == ["active", "ended", "active"]
    entry = (await entries_of(db, "court"))["R-1"]
    assert await events_of(db, entry["entry_id"]) == ["published", "removed", "updated"]
    assert entry["end_reason"] is None
    assert entry["ended_on"] is None


async def test_a_lifecycle_decision_is_not_undone_by_a_sync(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    """A repair recorded by the issuing department stands although the upstream still lists the record."""
    from shared.entries import apply_event

    await add_source(db, "court")
    t = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(return_value=page(envelope([record("R-1", updated_at=t)], "n")))
        await run(db, sync_settings, "court")
    entry_id = (await entries_of(db, "court"))["R-1"]["entry_id"]
    async with db.session() as session:
        await apply_event(
            session, entry_id, "repair", current_status="active", operator="clerk", basis="修复"
        )
        await session.commit()
    later = record("R-1", updated_at=t + dt.timedelta(days=1), reason="事由更正")
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(return_value=page(envelope([later], "n")))
        view = await run(db, sync_settings, "court")
    assert view["counts"]["updated"] == 1
    entry = (await entries_of(db, "court"))["R-1"]
    assert (entry["status"], entry["end_reason"], entry["reason"]) == ("ended", "repaired", "事由更正")


async def test_a_page_without_next_cursor_fails_the_run(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    await add_source(db, "court")
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(return_value=page(envelope([record("X-1")], None, has_more=True)))
        view = await run(db, sync_settings, "court")
    assert view["status"] == "failed"
    assert view["error"].startswith("MalformedPage: has_more is true but next_cursor is missing")
    assert view["counts"]["inserted"] == 1  # the page itself was good and stays


async def test_a_record_without_updated_at_is_never_stale(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    await add_source(db, "court")
    t = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    for entries in ([record("N-1", updated_at=t)], [record("N-1", reason="新事由")]):
        with respx.mock(base_url=BASE) as mock:
            mock.get("/entries").mock(return_value=page(envelope(entries, "n")))
            view = await run(db, sync_settings, "court")
    assert view["counts"]["updated"] == 1
    entry = (await entries_of(db, "court"))["N-1"]
    assert entry["reason"] == "新事由"
    assert entry["upstream_updated_at"] == t


async def test_run_ids_and_sources_are_isolated(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    """The same source_id from two sources is two entries."""
    await add_source(db, "court-a")
    await add_source(db, "court-b")
    for name in ("court-a", "court-b"):
        with respx.mock(base_url=BASE) as mock:
            mock.get("/entries").mock(return_value=page(envelope([record("SAME-1")], "n")))
            assert (await run(db, sync_settings, name))["counts"]["inserted"] == 1
    rows = await fetch(db, "SELECT count(*) FROM list_entries WHERE source_record_id = 'SAME-1'")
    assert rows[0][0] == 2


async def test_an_unknown_source(db: Database, sync_settings: Settings) -> None:
    import pytest

    from services.list_sync.runs import execute_run
    from shared.errors import NotFound

    with pytest.raises(NotFound):
        await execute_run(db, sync_settings, "nope")


async def test_transport_timeouts_are_explicit(sync_settings: Settings) -> None:
    from services.list_sync.upstream import UpstreamClient

    client = UpstreamClient(BASE, None, sync_settings, deadline=0)
    try:
        timeout = client.client.timeout
        assert timeout.read == sync_settings.sync_http_timeout_seconds
        assert timeout.connect is not None
        assert timeout.connect <= 10
        assert client.client.follow_redirects is False
        assert "authorization" not in client.client.headers
    finally:
        await client.client.aclose()
    assert isinstance(httpx.Timeout(1.0), httpx.Timeout)
