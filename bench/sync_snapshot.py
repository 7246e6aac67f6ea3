"""Snapshot ingest through the real run path: fetch pages, store them, re-parse, COPY into staging, apply
set-based. The upstream is served in-process (httpx.MockTransport) from records of bench/generate.py, so the
figure is OneCheck's, not a network's.

    .venv/bin/python -m bench.sync_snapshot --n 100000
    ONECHECK_BENCH_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/x .venv/bin/python -m bench.sync_snapshot

Three runs of one snapshot source: the first load (all inserted), the same listing again (all unchanged), and
a listing with 1 % of the records changed and 0.5 % missing (updated / ended). The database named in the URL
is dropped and recreated (it must not be one you care about).

First it measures, for the same rows, what bounds any snapshot apply (`--no-floor` skips it): a bare COPY into
an unindexed copy of list_entries + entry_persons (bench.run's reference), and the writes every first load
must make — COPY into the real, indexed list_entries (its foreign key checked per row), one `published` event
per entry, the linked persons — with entry ids ascending, as the ingest makes them. Rolled back, then
VACUUMed, so the runs start from empty tables.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import time
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench import generate
from services.list_sync import repository as repo
from services.list_sync.runs import Progress, execute_run
from shared.catalogue import write_catalogue
from shared.db import migrate
from shared.db.engine import Database, asyncpg_dsn
from shared.demo import demo_catalogue
from shared.lifecycle import business_date
from shared.settings import Settings

SOURCE = "bench-sync-snapshot"
PAGE = 1000
DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/onecheck_bench_sync"


async def _recreate(url: str) -> None:
    name = make_url(url).database
    admin = await asyncpg.connect(asyncpg_dsn(make_url(url).set(database="postgres").render_as_string(False)))
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


def _pages(records: list[dict[str, Any]]) -> dict[str | None, bytes]:
    pages: dict[str | None, bytes] = {}
    for start in range(0, max(len(records), 1), PAGE):
        chunk = records[start : start + PAGE]
        more = start + PAGE < len(records)
        body = {"entries": chunk, "next_cursor": str(start + PAGE) if more else None, "has_more": more}
        pages[None if start == 0 else str(start)] = json.dumps(body, ensure_ascii=False).encode()
    return pages


def _transport(pages: dict[str | None, bytes]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        body = pages[request.url.params.get("cursor")]
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    return httpx.MockTransport(handler)


async def _run(db: Database, settings: Settings, label: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    transport = _transport(_pages(records))  # rendered before the clock starts
    fetched: list[float] = []

    def progress(p: Progress) -> None:
        if p.phase == "fetch":
            fetched[:] = [time.perf_counter()]

    started = time.perf_counter()
    view = await execute_run(db, settings, SOURCE, transport=transport, progress=progress)
    seconds = time.perf_counter() - started
    assert view is not None
    fetch = fetched[0] - started if fetched else 0.0
    print(
        f"{label:<28} {view['status']:<10} {seconds:6.1f} s (fetch+store {fetch:5.1f} s, apply {seconds - fetch:5.1f} s)"
        f"  {len(records) / seconds:7,.0f} records/s  {json.dumps(view['counts'])}"
    )
    if view["error"]:
        print("  error:", view["error"])
    return view


async def _floor(db: Database, entries: list[generate.GenEntry], today: dt.date) -> None:
    """bench.run's bare COPY vs the writes a first load cannot avoid, for the same rows (see the docstring)."""
    ordered = sorted(entries, key=lambda e: e.entry_id.int)  # ascending primary key, like the ingest's ids
    rows = "".join(generate.entry_tsv(e, today) for e in ordered).encode()
    persons = "".join(generate.person_tsv(e) for e in ordered).encode()
    entry_columns, person_columns = list(generate.ENTRY_COLUMNS), list(generate.PERSON_COLUMNS)
    async with db.connection() as conn:
        await conn.execute("CHECKPOINT")
        async with conn.transaction():
            await conn.execute("CREATE TABLE bench_floor_entries (LIKE list_entries)")
            await conn.execute("CREATE TABLE bench_floor_persons (LIKE entry_persons)")
            started = time.perf_counter()
            await conn.copy_to_table("bench_floor_entries", source=memoryview(rows), columns=entry_columns)
            await conn.copy_to_table(
                "bench_floor_persons", source=memoryview(persons), columns=person_columns
            )
            bare = time.perf_counter() - started
            await conn.execute("DROP TABLE bench_floor_entries, bench_floor_persons")
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL jit = off")
                started = time.perf_counter()
                await conn.copy_to_table("list_entries", source=memoryview(rows), columns=entry_columns)
                copied = time.perf_counter()
                await conn.execute(
                    "INSERT INTO entry_events (entry_id, event, at, operator, basis, status_after) "
                    "SELECT entry_id, 'published', now(), 'bench', 'floor', status FROM list_entries "
                    "WHERE source_name = $1 ORDER BY entry_id",
                    generate.SOURCE_NAME,
                )
                evented = time.perf_counter()
                await conn.copy_to_table("entry_persons", source=memoryview(persons), columns=person_columns)
                done = time.perf_counter()
                raise _RollBack
        except _RollBack:
            pass
        await conn.execute("VACUUM list_entries, entry_events, entry_persons")
    n = len(entries)
    floor = done - started
    print(
        f"bare COPY into unindexed copies: {n / bare:9,.0f} rows/s ({bare:.2f} s)\n"
        f"writes of a first load:          {n / floor:9,.0f} rows/s ({floor:.2f} s: list_entries "
        f"{copied - started:.2f} s, events {evented - copied:.2f} s, persons {done - evented:.2f} s)"
        f" = {bare / floor:.2f} x the bare COPY, the most any snapshot ingest can reach here"
    )


class _RollBack(Exception):
    pass


async def main(n: int, url: str, floor: bool = True, first_only: bool = False) -> None:
    await _recreate(url)
    await asyncio.to_thread(migrate.upgrade, url)
    settings = Settings(
        database_url=url,
        sync_run_deadline_seconds=7200,
        snapshot_max_end_share=1.0,
        db_statement_timeout_ms=0,
        log_json=False,
    )
    db = Database(url, settings, application_name="bench-sync-snapshot")
    try:
        async with db.session() as session:
            await write_catalogue(session, demo_catalogue(), source="bench")
            await session.commit()
        async with db.connection() as conn:
            await repo.insert_source(
                conn,
                name=SOURCE,
                kind="snapshot",
                base_url="https://upstream.bench",
                path=None,
                token=None,
                interval_seconds=None,
            )
        today = business_date()
        generated = time.perf_counter()
        entries = list(generate.iter_entries(7, n, today))
        records = [generate.upstream_record(e) for e in entries]
        print(f"generated {n:,} records in {time.perf_counter() - generated:.1f} s; pages of {PAGE}")
        if floor:
            await _floor(db, entries, today)
        del entries
        await _run(db, settings, "1. first load", records)
        if first_only:
            return
        await _run(db, settings, "2. same listing again", records)
        changed = [dict(r) for r in records[: n - n // 200]]
        later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
        for r in changed[::100]:
            r["reason"] = r["reason"] + "（更正）"
            r["updated_at"] = later
        await _run(db, settings, "3. 1 % changed, 0.5 % gone", changed)
        async with db.connection() as conn:
            size = await conn.fetchval("SELECT pg_size_pretty(sum(size_bytes)) FROM sync_pages")
            entries = await conn.fetchval("SELECT count(*) FROM list_entries")
        print(f"list_entries: {entries:,} rows; raw pages kept: {size}")
    finally:
        await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--database-url", default=os.environ.get("ONECHECK_BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the bare-COPY / write-floor measurement"
    )
    parser.add_argument("--first-only", action="store_true", help="only the first load")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.database_url, floor=not args.no_floor, first_only=args.first_only))
