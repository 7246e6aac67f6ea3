"""Time the enforcement statistics (`GET /v1/stats/enforcement`) over a million checks.

    .venv/bin/python -m bench.stats_query                    # 1,000,000 checks in a scratch database
    .venv/bin/python -m bench.stats_query --checks 200000 --reuse

It (re)creates the database `--db` on the server of `--admin-url`, migrates it, loads checks spread over the
last 365 days with COPY (30 % with matches, 1–3 required measures each, feedback on most of those, some of it
`not_applied` with a reason; the per-check summary rows are written as check-api writes them, so the load time
includes it), runs VACUUM ANALYZE, then times `services.feedback.service.enforcement_stats` for the
filters operators use. Results go to stdout; the last figure is noted in docs/feedback.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg

from bench.generate import write_summaries
from services.feedback.repository import StatsFilter
from services.feedback.service import enforcement_stats
from shared.db import migrate
from shared.ids import uuid7
from shared.lifecycle import business_date

CHUNK = 50_000
DEPARTMENTS = [f"江门市第{i}部门" for i in range(1, 21)]
ITEMS = [f"I{i:03d}" for i in range(1, 61)]
LIST_TYPES = [f"LT{i:02d}" for i in range(1, 10)]
MEASURES = [f"M{i:02d}" for i in range(1, 34)]
REASONS = [
    "已修复",
    "申请人已履行",
    "项目不涉及招投标",
    "法院已出具证明",
    "核实为同名主体",
    "上级批准例外",
    "材料补正后通过",
    "其他",
]
# About the size of a real answer.
RESPONSE = json.dumps(
    {
        "item": {"code": "I001", "name": "建筑工程施工许可证核发", "department": "江门市住房和城乡建设局"},
        "subject": {"code": "91110105MA01ABCD5F", "kind": "uscc", "name": "北京某建设工程有限公司"},
        "outcome": "clear",
        "matches": "@MATCHES@",
        "measures": [],
        "suspended_measures": [],
        "withheld_incentives": [],
        "clean_record_years": 3,
        "data_version": {"lists": "1", "catalogue": "1"},
        "feedback_due_on": None,
        "padding": "核查记录" * 60,
    },
    ensure_ascii=False,
)


def _response(list_types: list[str]) -> str:
    matches = json.dumps([{"list": {"code": lt, "kind": "black"}} for lt in list_types])
    return RESPONSE.replace('"@MATCHES@"', matches)


CHECK_COLUMNS = [
    "check_id",
    "checked_at",
    "check_date",
    "client_id",
    "department",
    "item_code",
    "item_department",
    "subject_code",
    "subject_kind",
    "subject_hmac",
    "operator",
    "business_ref",
    "batch_id",
    "request_hash",
    "outcome",
    "match_count",
    "entry_ids",
    "measure_codes",
    "suspended_codes",
    "withheld_codes",
    "lists_version",
    "catalogue_version",
    "feedback_due_on",
    "response",
]


class Rows:
    def __init__(self) -> None:
        self.checks: list[tuple[Any, ...]] = []
        self.matches: list[tuple[Any, ...]] = []
        self.measures: list[tuple[Any, ...]] = []
        self.summaries: list[tuple[Any, ...]] = []
        self.versions: list[tuple[Any, ...]] = []


def generate(total: int, seed: int = 7) -> Iterator[Rows]:
    rng = random.Random(seed)
    clients = [(uuid.uuid4(), DEPARTMENTS[i % len(DEPARTMENTS)]) for i in range(50)]
    now = dt.datetime.now(dt.UTC)
    rows = Rows()
    for n in range(total):
        # Checks arrive in time order, as in production (a date range is then a compact slice of the table).
        checked_at = now - dt.timedelta(seconds=365 * 86400 * (1 - n / total) + rng.uniform(0, 1))
        check_id = uuid7(checked_at)
        check_date = business_date(checked_at)
        client_id, department = rng.choice(clients)
        item = rng.choice(ITEMS)
        matched = rng.random() < 0.3
        entries = [uuid.uuid4() for _ in range(rng.choice((1, 1, 2)))] if matched else []
        types = [rng.choice(LIST_TYPES) for _ in entries]
        codes = rng.sample(MEASURES, rng.randint(1, 3)) if matched else []
        due = check_date + dt.timedelta(days=30) if codes else None
        rows.checks.append(
            (
                check_id,
                checked_at,
                check_date,
                client_id,
                department,
                item,
                department,
                "91110105MA01ABCD5F",
                "uscc",
                None,
                "clerk",
                f"SP-{n}",
                None,
                "h",
                "penalty" if codes else "clear",
                len(entries),
                entries,
                codes,
                [],
                [],
                1,
                1,
                due,
                _response(types),
            )
        )
        for entry, lt in zip(entries, types, strict=True):
            rows.matches.append(
                (
                    check_id,
                    checked_at,
                    entry,
                    lt,
                    "black",
                    "江门市人民法院",
                    "subject",
                    "91110105MA01ABCD5F",
                    None,
                    "active",
                )
            )
        for code in codes:
            rows.measures.append(
                (
                    check_id,
                    checked_at,
                    code,
                    "required",
                    "penalty",
                    True,
                    "entity",
                    entries,
                    sorted(set(types)),
                )
            )
        if codes and rng.random() < 0.75:
            reported = codes if rng.random() < 0.8 else codes[:-1]
            counts = {"applied": 0, "not_applied": 0, "not_applicable": 0}
            submission = uuid.uuid4()
            statuses: dict[str, dict[str, Any]] = {}
            for code in reported:
                status = rng.choices(("applied", "not_applied", "not_applicable"), (70, 15, 15))[0]
                counts[status] += 1
                note = rng.choice(REASONS) if status != "applied" else None
                rows.versions.append((submission, check_id, code, status, note, "clerk", checked_at))
                statuses[code] = {"status": status, "note": note, "required": True}
            rows.summaries.append(
                (
                    check_id,
                    "approved",
                    len(reported) == len(codes),
                    counts["applied"],
                    counts["not_applied"],
                    counts["not_applicable"],
                    json.dumps(statuses, ensure_ascii=False),
                )
            )
        if len(rows.checks) >= CHUNK:
            yield rows
            rows = Rows()
    if rows.checks:
        yield rows


async def load(conn: asyncpg.Connection, total: int) -> None:
    start = time.perf_counter()
    await conn.execute(
        "SELECT onecheck_ensure_check_partitions($1, 14)", business_date() - dt.timedelta(days=366)
    )
    loaded = 0
    for rows in generate(total):
        await conn.copy_records_to_table("checks", records=rows.checks, columns=CHECK_COLUMNS)
        await conn.copy_records_to_table(
            "check_matches",
            records=rows.matches,
            columns=[
                "check_id",
                "checked_at",
                "entry_id",
                "list_type",
                "list_kind",
                "issuing_department",
                "via",
                "matched_code",
                "matched_role",
                "entry_status",
            ],
        )
        await conn.copy_records_to_table(
            "check_measures",
            records=rows.measures,
            columns=[
                "check_id",
                "checked_at",
                "measure_code",
                "disposition",
                "kind",
                "mandatory",
                "target",
                "triggered_by",
                "list_types",
            ],
        )
        # A summary row per check, as check-api writes it; feedback updates some of them.
        await write_summaries(conn, rows.checks)
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS bench_feedback (check_id uuid, decision text, complete boolean, "
            "applied int, not_applied int, not_applicable int, statuses jsonb)"
        )
        await conn.execute("TRUNCATE bench_feedback")
        await conn.copy_records_to_table("bench_feedback", records=rows.summaries)
        await conn.execute(
            """
            UPDATE check_feedback cf
            SET decision = b.decision, complete = b.complete, applied = b.applied, not_applied = b.not_applied,
                not_applicable = b.not_applicable, statuses = b.statuses
            FROM bench_feedback b WHERE cf.check_id = b.check_id
            """
        )
        await conn.copy_records_to_table(
            "feedback_measures",
            records=rows.versions,
            columns=[
                "submission_id",
                "check_id",
                "measure_code",
                "status",
                "note",
                "operator",
                "reported_at",
            ],
        )
        loaded += len(rows.checks)
        print(f"\rloaded {loaded:,} checks", end="", flush=True)
    await conn.execute("VACUUM ANALYZE")
    print(f"\rloaded {loaded:,} checks in {time.perf_counter() - start:.0f} s")


async def _binary_json_codecs(conn: asyncpg.Connection) -> None:
    """COPY is binary: json goes as its UTF-8 text, jsonb as a version byte (1) and the text."""
    await conn.set_type_codec(
        "json",
        encoder=lambda text: text.encode(),
        decoder=lambda data: json.loads(data),
        schema="pg_catalog",
        format="binary",
    )
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda text: b"\x01" + text.encode(),
        decoder=lambda data: json.loads(data[1:]),
        schema="pg_catalog",
        format="binary",
    )


async def timed(conn: asyncpg.Connection, name: str, f: StatsFilter, repeat: int) -> None:
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = await enforcement_stats(conn, f=f)
        times.append((time.perf_counter() - start) * 1000)
    assert result is not None
    totals = result.totals
    print(
        f"{name:<28} median {statistics.median(times):7.0f} ms   min {min(times):7.0f} ms   "
        f"checks {totals.checks:>9,}  awaiting {totals.awaiting_feedback:>7,}  overdue {totals.overdue:>7,}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checks", type=int, default=1_000_000)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--db", default="onecheck_bench_stats")
    parser.add_argument("--reuse", action="store_true", help="keep the loaded database from a previous run")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    url = args.admin_url.rsplit("/", 1)[0] + "/" + args.db
    if not args.reuse:
        admin = await asyncpg.connect(args.admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{args.db}"')
        finally:
            await admin.close()
        await asyncio.to_thread(migrate.upgrade, url.replace("postgresql://", "postgresql+asyncpg://", 1))
    conn = await asyncpg.connect(url)
    try:
        await _binary_json_codecs(conn)
        if not args.reuse:
            await load(conn, args.checks)
        today = business_date()
        month_ago = today - dt.timedelta(days=30)
        await timed(conn, "all time", StatsFilter(), args.repeat)
        await timed(conn, "last 30 days", StatsFilter(date_from=month_ago, date_to=today), args.repeat)
        await timed(conn, "one department, all time", StatsFilter(department=DEPARTMENTS[3]), args.repeat)
        await timed(conn, "one item, all time", StatsFilter(item_code=ITEMS[5]), args.repeat)
        await timed(conn, "list type LT01, all time", StatsFilter(list_type="LT01"), args.repeat)
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
