"""All SQL of the feedback service (raw asyncpg; JSON parameters as `json.dumps` strings).

Checks are found by id within one second of the time embedded in their UUIDv7, so a lookup touches one
month partition of `checks`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from shared.ids import uuid7_time

# ------------------------------------------------------------------------------------------------ checks

OWN_CHECK_SQL = """
SELECT check_id, checked_at, check_date, department, item_code, subject_code, subject_kind, subject_hmac,
       measure_codes, suspended_codes, withheld_codes, feedback_due_on,
       response -> 'subject' ->> 'code' AS response_subject_code
FROM checks
WHERE check_id = $1 AND client_id = $2
  AND checked_at BETWEEN $3::timestamptz - interval '1 second' AND $3::timestamptz + interval '1 second'
"""


async def fetch_own_check(
    conn: asyncpg.Connection, *, check_id: uuid.UUID, client_id: uuid.UUID
) -> asyncpg.Record | None:
    """The check if this client made it; None for a missing id and for another client's (same answer)."""
    if check_id.version != 7:  # check ids are UUIDv7; any other UUID's "time" may not even be a date
        return None
    try:
        at = uuid7_time(check_id)
    except (ValueError, OverflowError, OSError):  # a forged id whose time is past year 9999
        return None
    record: asyncpg.Record | None = await conn.fetchrow(OWN_CHECK_SQL, check_id, client_id, at)
    return record


# ----------------------------------------------------------------------------------------------- feedback

# The summary row normally exists already (check-api writes it with the check); made here for a check stored
# without one. Either way the row lock queues concurrent submissions for one check.
LOCK_SUMMARY_SQL = """
INSERT INTO check_feedback (check_id, checked_at, check_date, department, item_code, match_count, list_types,
                            required_count, complete, feedback_due_on)
SELECT c.check_id, c.checked_at, c.check_date, c.department, c.item_code, c.match_count,
       onecheck_check_list_types(c.response::jsonb), cardinality(c.measure_codes),
       cardinality(c.measure_codes) = 0, c.feedback_due_on
FROM checks c WHERE c.check_id = $1 AND c.checked_at = $2
ON CONFLICT (check_id) DO UPDATE SET updated_at = now()
RETURNING decision, clock_timestamp() AS now
"""

CURRENT_VERSIONS_SQL = """
SELECT DISTINCT ON (measure_code) measure_code, status, note, operator, reported_at
FROM feedback_measures WHERE check_id = $1
ORDER BY measure_code, id DESC
"""

INSERT_SUBMISSION_SQL = """
INSERT INTO feedback_submissions (submission_id, check_id, client_id, decision, operator, reported_at)
VALUES ($1, $2, $3, $4, $5, $6)
"""

INSERT_VERSIONS_SQL = """
INSERT INTO feedback_measures (submission_id, check_id, measure_code, status, note, operator, reported_at)
SELECT $1, $2, u.code, u.status, u.note, $3, $4
FROM unnest($5::text[], $6::text[], $7::text[]) WITH ORDINALITY AS u(code, status, note, ord)
ORDER BY u.ord
"""

UPDATE_SUMMARY_SQL = """
UPDATE check_feedback
SET decision = $2, complete = $3, required_count = $4, applied = $5, not_applied = $6, not_applicable = $7,
    feedback_due_on = $8, updated_at = $9, statuses = $10
WHERE check_id = $1
"""

HISTORY_SQL = """
SELECT measure_code, status, note, operator, reported_at
FROM feedback_measures WHERE check_id = $1 ORDER BY id
"""

DECISION_SQL = "SELECT decision FROM check_feedback WHERE check_id = $1"


@dataclass(frozen=True, slots=True)
class Version:
    code: str
    status: str
    note: str | None


@dataclass(frozen=True, slots=True)
class Summary:
    decision: str
    complete: bool
    required_count: int
    applied: int
    not_applied: int
    not_applicable: int
    feedback_due_on: dt.date | None
    statuses: dict[str, dict[str, Any]]  # {code: {"status", "note", "required"}}


async def lock_summary(conn: asyncpg.Connection, check: asyncpg.Record) -> tuple[str | None, dt.datetime]:
    """Create or lock the check's summary row: concurrent submissions for one check queue here.

    Returns the current decision and the time after the lock, so versions are stamped in commit order."""
    row = await conn.fetchrow(LOCK_SUMMARY_SQL, check["check_id"], check["checked_at"])
    assert row is not None
    return row["decision"], row["now"]


async def current_versions(conn: asyncpg.Connection, check_id: uuid.UUID) -> dict[str, asyncpg.Record]:
    return {r["measure_code"]: r for r in await conn.fetch(CURRENT_VERSIONS_SQL, check_id)}


async def insert_submission(
    conn: asyncpg.Connection,
    *,
    submission_id: uuid.UUID,
    check_id: uuid.UUID,
    client_id: uuid.UUID,
    decision: str,
    operator: str,
    reported_at: dt.datetime,
    versions: list[Version],
) -> None:
    await conn.execute(
        INSERT_SUBMISSION_SQL, submission_id, check_id, client_id, decision, operator, reported_at
    )
    if versions:
        await conn.execute(
            INSERT_VERSIONS_SQL,
            submission_id,
            check_id,
            operator,
            reported_at,
            [v.code for v in versions],
            [v.status for v in versions],
            [v.note for v in versions],
        )


async def update_summary(
    conn: asyncpg.Connection, check_id: uuid.UUID, summary: Summary, at: dt.datetime
) -> None:
    await conn.execute(
        UPDATE_SUMMARY_SQL,
        check_id,
        summary.decision,
        summary.complete,
        summary.required_count,
        summary.applied,
        summary.not_applied,
        summary.not_applicable,
        summary.feedback_due_on,
        at,
        json.dumps(summary.statuses, ensure_ascii=False),
    )


async def history(conn: asyncpg.Connection, check_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(HISTORY_SQL, check_id)
    return rows


async def decision(conn: asyncpg.Connection, check_id: uuid.UUID) -> str | None:
    value: str | None = await conn.fetchval(DECISION_SQL, check_id)
    return value


# -------------------------------------------------------------------------------------------- enforcement

ENTRY_SQL = """
SELECT entry_id, list_type, issuing_department, subject_code, subject_kind, subject_name
FROM list_entries WHERE entry_id = $1 AND issuing_department = $2
"""

ENTRY_CHECKS_SQL = """
SELECT c.check_id, c.checked_at, c.check_date, c.item_code, c.item_department, c.department, c.business_ref,
       c.subject_code, c.subject_kind, c.outcome, c.measure_codes, c.feedback_due_on,
       c.response -> 'subject' AS response_subject,
       CASE WHEN $4 THEN c.response -> 'matches' END AS response_matches,
       cf.decision
FROM (
    SELECT DISTINCT check_id, checked_at FROM check_matches
    WHERE entry_id = $1 AND ($2::uuid IS NULL OR check_id > $2)
    ORDER BY check_id LIMIT $3
) m
JOIN checks c ON c.check_id = m.check_id AND c.checked_at = m.checked_at
LEFT JOIN check_feedback cf ON cf.check_id = c.check_id
ORDER BY c.check_id
"""

ENTRY_MATCHES_SQL = """
SELECT check_id, via, matched_code, matched_role, entry_status
FROM check_matches WHERE entry_id = $1 AND check_id = ANY($2::uuid[])
ORDER BY check_id, via, matched_code
"""

ENTRY_MEASURES_SQL = """
SELECT check_id, measure_code, disposition, kind, mandatory, target
FROM check_measures WHERE check_id = ANY($2::uuid[]) AND $1 = ANY(triggered_by)
ORDER BY check_id, disposition, measure_code
"""

LATEST_FOR_CHECKS_SQL = """
SELECT DISTINCT ON (check_id, measure_code) check_id, measure_code, status, note, operator, reported_at
FROM feedback_measures WHERE check_id = ANY($1::uuid[])
ORDER BY check_id, measure_code, id DESC
"""

ENTRY_TOTALS_SQL = """
WITH matched AS (SELECT DISTINCT check_id FROM check_matches WHERE entry_id = $1),
required AS (
    SELECT cm.check_id, cm.measure_code FROM check_measures cm JOIN matched USING (check_id)
    WHERE cm.disposition = 'required' AND $1 = ANY(cm.triggered_by)
)
SELECT (SELECT count(*) FROM matched) AS checks,
       count(r.check_id) AS required_measures,
       count(*) FILTER (WHERE cur.status = 'applied') AS applied,
       count(*) FILTER (WHERE cur.status = 'not_applied') AS not_applied,
       count(*) FILTER (WHERE cur.status = 'not_applicable') AS not_applicable,
       count(r.check_id) FILTER (WHERE cur.status IS NULL) AS awaiting
FROM required r
LEFT JOIN LATERAL (
    SELECT fm.status FROM feedback_measures fm
    WHERE fm.check_id = r.check_id AND fm.measure_code = r.measure_code ORDER BY fm.id DESC LIMIT 1
) cur ON true
"""


async def fetch_department_entry(
    conn: asyncpg.Connection, *, entry_id: uuid.UUID, department: str
) -> asyncpg.Record | None:
    """The entry if this department issued it; None for a missing id and for another's (same answer)."""
    record: asyncpg.Record | None = await conn.fetchrow(ENTRY_SQL, entry_id, department)
    return record


@dataclass(slots=True)
class EntryChecks:
    checks: list[asyncpg.Record]
    matches: list[asyncpg.Record] = field(default_factory=list)
    measures: list[asyncpg.Record] = field(default_factory=list)
    latest: list[asyncpg.Record] = field(default_factory=list)
    totals: asyncpg.Record | None = None


async def entry_checks(
    conn: asyncpg.Connection, *, entry_id: uuid.UUID, after: uuid.UUID | None, limit: int, with_pii: bool
) -> EntryChecks:
    checks = await conn.fetch(ENTRY_CHECKS_SQL, entry_id, after, limit, with_pii)
    ids = [r["check_id"] for r in checks]
    result = EntryChecks(checks=checks)
    if ids:
        result.matches = await conn.fetch(ENTRY_MATCHES_SQL, entry_id, ids)
        result.measures = await conn.fetch(ENTRY_MEASURES_SQL, entry_id, ids)
        result.latest = await conn.fetch(LATEST_FOR_CHECKS_SQL, ids)
    result.totals = await conn.fetchrow(ENTRY_TOTALS_SQL, entry_id)
    return result


# ---------------------------------------------------------------------------------------------- statistics


@dataclass(frozen=True, slots=True)
class StatsFilter:
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    department: str | None = None
    item_code: str | None = None
    list_type: str | None = None


def _where(f: StatsFilter, args: list[Any]) -> str:
    """The WHERE clause over `check_feedback cf` for a filter; values go to `args`, never into the SQL text."""

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    clauses = ["true"]
    if f.date_from is not None:
        clauses.append(f"cf.check_date >= {param(f.date_from)}")
    if f.date_to is not None:
        clauses.append(f"cf.check_date <= {param(f.date_to)}")
    if f.department is not None:
        clauses.append(f"cf.department = {param(f.department)}")
    if f.item_code is not None:
        clauses.append(f"cf.item_code = {param(f.item_code)}")
    if f.list_type is not None:
        clauses.append(f"cf.list_types @> ARRAY[{param(f.list_type)}]::text[]")
    return " AND ".join(clauses)


# One row per (department, item) from the narrow per-check summary: few enough rows to sum into the totals and
# both breakdowns in Python, and a plain GROUP BY runs as a parallel aggregate where GROUPING SETS would not.
CHECK_FIGURES = """
SELECT cf.department, cf.item_code,
       count(*) AS checks,
       count(*) FILTER (WHERE cf.match_count > 0) AS checks_with_matches,
       count(*) FILTER (WHERE cf.required_count > 0 AND NOT cf.complete) AS awaiting_feedback,
       count(*) FILTER (WHERE cf.required_count > 0 AND NOT cf.complete AND cf.feedback_due_on < $1) AS overdue,
       coalesce(sum(cf.required_count), 0)::bigint AS required_measures,
       coalesce(sum(cf.applied), 0)::bigint AS applied,
       coalesce(sum(cf.not_applied), 0)::bigint AS not_applied,
       coalesce(sum(cf.not_applicable), 0)::bigint AS not_applicable
FROM check_feedback cf
WHERE {where}
GROUP BY cf.department, cf.item_code
"""

# With a list type, the measure figures count only the required measures that list type triggered.
LIST_TYPE_MEASURE_FIGURES = """
SELECT cf.department, cf.item_code,
       count(*) AS required_measures,
       count(*) FILTER (WHERE cf.statuses -> cm.measure_code ->> 'status' = 'applied') AS applied,
       count(*) FILTER (WHERE cf.statuses -> cm.measure_code ->> 'status' = 'not_applied') AS not_applied,
       count(*) FILTER (WHERE cf.statuses -> cm.measure_code ->> 'status' = 'not_applicable') AS not_applicable
FROM check_feedback cf
JOIN check_measures cm ON cm.check_id = cf.check_id AND cm.disposition = 'required' AND $1 = ANY(cm.list_types)
WHERE {where}
GROUP BY cf.department, cf.item_code
"""

NOT_APPLIED_REASONS = """
SELECT s.value ->> 'note' AS reason, count(*) AS n
FROM check_feedback cf
CROSS JOIN LATERAL jsonb_each(cf.statuses) AS s
WHERE cf.not_applied > 0 AND {where}
  AND s.value ->> 'status' = 'not_applied' AND (s.value ->> 'required')::boolean
  {list_type}
GROUP BY 1
ORDER BY n DESC, reason
LIMIT 20
"""

ITEM_NAMES_SQL = "SELECT code, name FROM items WHERE code = ANY($1::text[])"


async def stats_check_figures(
    conn: asyncpg.Connection, f: StatsFilter, *, today: dt.date
) -> list[asyncpg.Record]:
    args: list[Any] = [today]
    rows: list[asyncpg.Record] = await conn.fetch(CHECK_FIGURES.format(where=_where(f, args)), *args)
    return rows


async def stats_list_type_measures(conn: asyncpg.Connection, f: StatsFilter) -> list[asyncpg.Record]:
    args: list[Any] = [f.list_type]
    rows: list[asyncpg.Record] = await conn.fetch(
        LIST_TYPE_MEASURE_FIGURES.format(where=_where(f, args)), *args
    )
    return rows


async def stats_not_applied_reasons(conn: asyncpg.Connection, f: StatsFilter) -> list[asyncpg.Record]:
    args: list[Any] = []
    where = _where(f, args)
    list_type = ""
    if f.list_type is not None:
        args.append(f.list_type)
        list_type = (
            "AND EXISTS (SELECT 1 FROM check_measures cm WHERE cm.check_id = cf.check_id "
            f"AND cm.measure_code = s.key AND cm.disposition = 'required' AND ${len(args)} = ANY(cm.list_types))"
        )
    rows: list[asyncpg.Record] = await conn.fetch(
        NOT_APPLIED_REASONS.format(where=where, list_type=list_type), *args
    )
    return rows


async def item_names(conn: asyncpg.Connection, codes: list[str]) -> dict[str, str]:
    if not codes:
        return {}
    return {r["code"]: r["name"] for r in await conn.fetch(ITEM_NAMES_SQL, codes)}
