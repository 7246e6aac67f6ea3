"""All SQL of the check-api service (raw asyncpg; constant SQL text, so asyncpg prepares each once per connection).

The hot path is two statements: `MATCH_SQL` (every candidate entry of every subject of a check or batch, the
clean-record aggregate and both data versions) and `INSERT_CHECKS_SQL` (the checks, their matches and measures
and the audit rows, in one statement and so one transaction).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

# --- matching --------------------------------------------------------------------------------------------

# $1 the subjects [{idx, code, kind}], $2 the related persons [{idx, code, role}] (JSON), $3 the check date.
# JSON rather than arrays on purpose: PostgreSQL estimates a constant array's length exactly, so with arrays
# every execution looked cheaper re-planned (a custom plan: ~1.5 ms of planning per check); a JSON recordset
# has the same estimate bound or not, so the prepared statement settles on its cached generic plan. The JSON is
# read through `onecheck_check_subjects` / `onecheck_check_persons` (migration 0004), declared ROWS 1: a bare
# `json_to_recordset` is estimated at 100 rows, and the generic plan then hash-joined whole tables.
MATCH_SQL = """
WITH given AS (
    SELECT * FROM onecheck_check_subjects($1::json)
),
-- A legacy code (组织机构代码 / 工商注册号) is checked as its USCC where the mapping is known.
subj AS (
    SELECT g.idx,
           coalesce(a.uscc, g.code) AS code,
           CASE WHEN a.uscc IS NOT NULL THEN 'uscc' ELSE g.kind END AS kind
    FROM given g
    LEFT JOIN subject_aliases a ON g.kind IN ('org_code', 'registration_no') AND a.alias_code = g.code
),
-- Every code the subject's own entries may be recorded under: the code, and the legacy codes of a USCC
-- (entries stored before their alias was known keep the legacy code). An unmapped org code is only itself.
subj_codes AS (
    SELECT idx, code FROM subj
    UNION
    SELECT s.idx, a.alias_code FROM subj s JOIN subject_aliases a ON a.uscc = s.code WHERE s.kind = 'uscc'
),
-- The subject's own entries. A USCC also matches entries recorded under its embedded organisation code
-- (characters 9-17), i.e. entries of kind org_code only: an entry recorded under another USCC embedding the
-- same characters is another subject's. Each entry has one subject_code, so each is found once per subject
-- (UNION drops the repeat when a known alias is the embedded code itself). Both lookups use the subject_code
-- index.
own AS (
    SELECT c.idx, e.entry_id, c.code AS matched_code
    FROM subj_codes c JOIN list_entries e ON e.subject_code = c.code
    UNION
    SELECT s.idx, e.entry_id, e.subject_code
    FROM subj s JOIN list_entries e ON e.subject_code = substr(s.code, 9, 9) AND e.subject_kind = 'org_code'
    WHERE s.kind = 'uscc'
),
persons AS (
    SELECT * FROM onecheck_check_persons($2::json)
),
natural_persons AS (
    SELECT idx, code FROM subj WHERE kind = 'citizen_id'
    UNION
    SELECT idx, code FROM persons
),
hits AS (
    SELECT idx, entry_id, 'subject' AS via, matched_code, NULL::text AS matched_role FROM own
    UNION ALL
    SELECT p.idx, e.entry_id, 'related_person', p.code, p.role
    FROM persons p JOIN list_entries e ON e.subject_code = p.code
    UNION ALL
    -- A checked natural person (the subject or a related person) named on an organisation's entry.
    SELECT n.idx, ep.entry_id, 'responsible_person', n.code, ep.role
    FROM natural_persons n
    JOIN entry_persons ep ON ep.person_code = n.code
    JOIN list_entries e ON e.entry_id = ep.entry_id AND e.subject_kind <> 'citizen_id'
),
matched AS (
    SELECT DISTINCT ON (h.idx, h.entry_id, h.via, h.matched_code)
           h.idx, h.via, h.matched_code, h.matched_role, e.entry_id, e.list_type, e.list_kind,
           e.subject_code, e.subject_kind, e.subject_name, e.reason, e.issuing_department, e.decision_no,
           e.listed_on, e.expires_on, e.status
    FROM hits h JOIN list_entries e ON e.entry_id = h.entry_id
    -- In effect on the check date; a stored 'ended' never matches, nor does an entry past its expiry.
    WHERE e.status IN ('active', 'objection_pending')
      AND e.listed_on <= $3 AND (e.expires_on IS NULL OR e.expires_on >= $3)
    ORDER BY h.idx, h.entry_id, h.via, h.matched_code, h.matched_role
),
-- MATERIALIZED: computed once. Inlined, the planner (which takes every input as one row) put it on the inner
-- side of the final nested loop and re-aggregated every subject's matches once per subject of a batch.
match_json AS MATERIALIZED (
    SELECT m.idx,
           json_agg(json_build_object(
               'entry_id', m.entry_id, 'via', m.via, 'matched_code', m.matched_code,
               'matched_role', m.matched_role, 'list_type', m.list_type,
               'list_name', coalesce(lt.name, m.list_type), 'list_kind', m.list_kind,
               'subject_code', m.subject_code, 'subject_kind', m.subject_kind, 'subject_name', m.subject_name,
               'reason', m.reason, 'issuing_department', m.issuing_department, 'decision_no', m.decision_no,
               'listed_on', m.listed_on, 'expires_on', m.expires_on, 'status', m.status
           ) ORDER BY CASE m.via WHEN 'subject' THEN 0 WHEN 'related_person' THEN 1 ELSE 2 END,
                      m.list_type, m.listed_on, m.entry_id, m.matched_code) AS matches
    FROM matched m LEFT JOIN list_types lt ON lt.code = m.list_type
    GROUP BY m.idx
),
-- clean_record_years: the subject's own black/watch entries, ended ones included.
record AS (
    SELECT o.idx,
           bool_or(e.status IN ('active', 'objection_pending')
                   AND e.listed_on <= $3 AND (e.expires_on IS NULL OR e.expires_on >= $3)) AS in_effect,
           max(CASE
                   WHEN e.status = 'ended' THEN
                       -- Wrongly listed (objection upheld): never a record; nor is an entry that ended on or
                       -- before the day it was to take effect (a future `listed_on`, removed before it). Else
                       -- the earlier of the ending event and the natural expiry.
                       CASE WHEN e.end_reason <> 'objection_upheld'
                                 AND least(e.ended_on, e.expires_on + 1) > e.listed_on
                            THEN least(e.ended_on, e.expires_on + 1) END
                   WHEN e.expires_on < $3 THEN e.expires_on + 1
               END) AS last_end
    FROM own o JOIN list_entries e ON e.entry_id = o.entry_id
    WHERE e.list_kind IN ('black', 'watch')
    GROUP BY o.idx
)
SELECT s.idx, s.code, s.kind,
       coalesce(mj.matches, '[]'::json) AS matches,
       coalesce(r.in_effect, false) AS record_in_effect,
       r.last_end,
       (SELECT last_value FROM lists_version_seq) AS lists_version,
       (SELECT coalesce(max(version), 0) FROM catalogue_versions) AS catalogue_version
FROM subj s
LEFT JOIN match_json mj ON mj.idx = s.idx
LEFT JOIN record r ON r.idx = s.idx
ORDER BY s.idx
"""


@dataclass(frozen=True, slots=True)
class SubjectQuery:
    code: str
    kind: str
    persons: Sequence[tuple[str, str]]  # (normalised citizen id, role)


@dataclass(frozen=True, slots=True)
class SubjectRecord:
    """What the database knows of one subject on the check date."""

    code: str  # after alias mapping
    kind: str
    matches: list[dict[str, Any]]
    record_in_effect: bool
    last_end: dt.date | None
    lists_version: int
    catalogue_version: int


def _dumps(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"), default=str)


async def fetch_matches(
    conn: asyncpg.Connection, subjects: Sequence[SubjectQuery], check_date: dt.date
) -> list[SubjectRecord]:
    """One round trip for any number of subjects; the answer is in the order of `subjects`."""
    given = [{"idx": i, "code": s.code, "kind": s.kind} for i, s in enumerate(subjects)]
    persons = [
        {"idx": i, "code": code, "role": role} for i, s in enumerate(subjects) for code, role in s.persons
    ]
    rows = await conn.fetch(MATCH_SQL, _dumps(given), _dumps(persons), check_date)
    return [
        SubjectRecord(
            code=row["code"],
            kind=row["kind"],
            matches=row["matches"],
            record_in_effect=row["record_in_effect"],
            last_end=row["last_end"],
            lists_version=int(row["lists_version"]),
            catalogue_version=int(row["catalogue_version"]),
        )
        for row in rows
    ]


# --- storing checks --------------------------------------------------------------------------------------

# The audit columns filled from shared.audit.AuditRecord fields (used by GET_CHECK_SQL).
_AUDIT_COLUMNS = (
    "client_id, department, operator, action, method, path, status, item_code, subject_masked, "
    "subject_hmac, object_id, request_id, detail"
)

# One statement (one round trip, one transaction) for every check of a request: the checks, their feedback
# summaries (what enforcement statistics read), matches, measures and audit rows. What is the same for every
# check of the request is a scalar; the rest are arrays, one element per row, so the text never changes with
# the number of subjects and asyncpg prepares it once. Nested arrays travel as array literals (`_array`).
# `response` is the exact JSON text answered; the `json` type keeps it byte for byte.
INSERT_CHECKS_SQL = """
WITH u AS (
    SELECT * FROM unnest($12::uuid[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
                         $18::int[], $19::text[], $20::text[], $21::text[], $22::text[], $23::text[],
                         $24::date[], $25::text[])
        AS u(check_id, subject_code, subject_kind, subject_hmac, request_hash, outcome, match_count, entry_ids,
             measure_codes, suspended_codes, withheld_codes, list_types, feedback_due_on, response)
), c AS (
    INSERT INTO checks (check_id, checked_at, check_date, client_id, department, item_code, item_department,
                        subject_code, subject_kind, subject_hmac, operator, business_ref, batch_id, request_hash,
                        outcome, match_count, entry_ids, measure_codes, suspended_codes, withheld_codes,
                        lists_version, catalogue_version, feedback_due_on, response)
    SELECT u.check_id, $1, $2, $3, $4, $5, $6, u.subject_code, u.subject_kind, u.subject_hmac, $7, $8, $9,
           u.request_hash, u.outcome, u.match_count, u.entry_ids::uuid[], u.measure_codes::text[],
           u.suspended_codes::text[], u.withheld_codes::text[], $10, $11, u.feedback_due_on, u.response::json
    FROM u
), f AS (
    INSERT INTO check_feedback (check_id, checked_at, check_date, department, item_code, match_count,
                                list_types, required_count, complete, feedback_due_on)
    SELECT u.check_id, $1, $2, $4, $5, u.match_count, u.list_types::text[],
           cardinality(u.measure_codes::text[]), cardinality(u.measure_codes::text[]) = 0, u.feedback_due_on
    FROM u
), m AS (
    INSERT INTO check_matches (check_id, checked_at, entry_id, list_type, list_kind, issuing_department, via,
                               matched_code, matched_role, entry_status)
    SELECT m.check_id, $1, m.entry_id, m.list_type, m.list_kind, m.issuing_department, m.via, m.matched_code,
           m.matched_role, m.entry_status
    FROM unnest($28::uuid[], $29::uuid[], $30::text[], $31::text[], $32::text[], $33::text[], $34::text[],
                $35::text[], $36::text[])
        AS m(check_id, entry_id, list_type, list_kind, issuing_department, via, matched_code, matched_role,
             entry_status)
    -- Masked codes of two people may coincide; the match row is the same fact either way.
    ON CONFLICT DO NOTHING
), ms AS (
    INSERT INTO check_measures (check_id, checked_at, measure_code, disposition, kind, mandatory, target,
                                triggered_by, list_types)
    SELECT x.check_id, $1, x.measure_code, x.disposition, x.kind, x.mandatory, x.target, x.triggered_by::uuid[],
           x.list_types::text[]
    FROM unnest($37::uuid[], $38::text[], $39::text[], $40::text[], $41::bool[], $42::text[], $43::text[],
                $44::text[])
        AS x(check_id, measure_code, disposition, kind, mandatory, target, triggered_by, list_types)
)
INSERT INTO audit_log (client_id, department, operator, action, method, path, status, item_code, subject_masked,
                       subject_hmac, object_id, request_id, detail)
SELECT $3, $4, $7, 'check.create', 'POST', $26, 200, $5, u.subject_code, u.subject_hmac, u.check_id::text, $27,
       jsonb_build_object('outcome', u.outcome, 'business_ref', $8::text, 'batch_id', $9::text)
FROM u
"""


def array_literal(values: Sequence[str]) -> str:
    """A PostgreSQL array literal of text values ('{"M01","M05"}'), each quoted, so any text is safe."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


@dataclass(frozen=True, slots=True)
class CheckHeader:
    """What every check of one request shares."""

    checked_at: dt.datetime
    check_date: dt.date
    client_id: uuid.UUID
    department: str
    item_code: str
    item_department: str
    operator: str
    business_ref: str
    batch_id: uuid.UUID | None
    lists_version: int
    catalogue_version: int
    path: str
    request_id: str | None


@dataclass(slots=True)
class CheckRows:
    """The rows of one request's checks, each a tuple in the column order of INSERT_CHECKS_SQL."""

    # (check_id, subject_code, subject_kind, subject_hmac, request_hash, outcome, match_count, entry_ids,
    #  measure_codes, suspended_codes, withheld_codes, list_types, feedback_due_on, response)
    checks: list[tuple[Any, ...]] = field(default_factory=list)
    # (check_id, entry_id, list_type, list_kind, issuing_department, via, matched_code, matched_role, status)
    matches: list[tuple[Any, ...]] = field(default_factory=list)
    # (check_id, measure_code, disposition, kind, mandatory, target, triggered_by, list_types)
    measures: list[tuple[Any, ...]] = field(default_factory=list)


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


async def insert_checks(conn: asyncpg.Connection, header: CheckHeader, rows: CheckRows) -> None:
    """Checks, summaries, matches, measures and audit rows in one statement: stored together or not at all."""
    await conn.execute(
        INSERT_CHECKS_SQL,
        header.checked_at,
        header.check_date,
        header.client_id,
        header.department,
        header.item_code,
        header.item_department,
        header.operator,
        header.business_ref,
        header.batch_id,
        header.lists_version,
        header.catalogue_version,
        *_columns(rows.checks, 14),
        header.path,
        header.request_id,
        *_columns(rows.matches, 9),
        *_columns(rows.measures, 8),
    )


# --- reading checks --------------------------------------------------------------------------------------

# checked_at bounds let PostgreSQL prune to the month partition the UUIDv7 points at. The read is audited in
# the same statement; nothing is written for a check this client may not see.
GET_CHECK_SQL = f"""
WITH c AS (
    SELECT check_id, response::text AS response, operator, business_ref, department, item_code,
           subject_code, subject_hmac
    FROM checks
    WHERE check_id = $1 AND client_id = $2 AND checked_at >= $3 AND checked_at < $4
), a AS (
    INSERT INTO audit_log ({_AUDIT_COLUMNS})
    SELECT $2, $5, NULL, $6, 'GET', $7, 200, c.item_code, c.subject_code, c.subject_hmac,
           c.check_id::text, $8, NULL
    FROM c
)
SELECT response, operator, business_ref, department FROM c
"""


@dataclass(frozen=True, slots=True)
class StoredCheck:
    response: str  # the JSON text as answered
    operator: str
    business_ref: str
    department: str


async def get_check(
    conn: asyncpg.Connection,
    check_id: uuid.UUID,
    client_id: uuid.UUID,
    *,
    around: dt.datetime,
    department: str,
    action: str,
    path: str,
    request_id: str | None,
) -> StoredCheck | None:
    margin = dt.timedelta(seconds=1)
    row = await conn.fetchrow(
        GET_CHECK_SQL,
        check_id,
        client_id,
        around - margin,
        around + margin,
        department,
        action,
        path,
        request_id,
    )
    if row is None:
        return None
    return StoredCheck(row["response"], row["operator"], row["business_ref"], row["department"])


# An idempotent replay shows stored checks again: one `check.replay` audit row per check, its subject as the
# check stored it (masked, with the HMAC of a natural person). checked_at bounds prune to the partitions.
AUDIT_REPLAY_SQL = f"""
INSERT INTO audit_log ({_AUDIT_COLUMNS})
SELECT c.client_id, $5, c.operator, 'check.replay', 'POST', $6, $7, c.item_code, c.subject_code,
       c.subject_hmac, c.check_id::text, $8,
       jsonb_build_object('outcome', c.outcome, 'business_ref', c.business_ref, 'batch_id', c.batch_id::text)
FROM checks c
WHERE c.check_id = ANY($1::uuid[]) AND c.client_id = $2 AND c.checked_at >= $3 AND c.checked_at < $4
"""


async def audit_replay(
    conn: asyncpg.Connection,
    check_ids: Sequence[uuid.UUID],
    client_id: uuid.UUID,
    *,
    between: tuple[dt.datetime, dt.datetime],
    department: str,
    path: str,
    status: int,
    request_id: str | None,
) -> int:
    """Audit rows for the stored checks `check_ids` of this client shown again; returns how many."""
    margin = dt.timedelta(seconds=1)
    result = await conn.execute(
        AUDIT_REPLAY_SQL,
        list(check_ids),
        client_id,
        between[0] - margin,
        between[1] + margin,
        department,
        path,
        status,
        request_id,
    )
    return int(result.split()[-1])


# --- the catalogue ---------------------------------------------------------------------------------------

CATALOGUE_VERSION_SQL = "SELECT coalesce(max(version), 0) FROM catalogue_versions"

# One statement, so the tables and the version come from one snapshot.
LOAD_CATALOGUE_SQL = """
SELECT
    (SELECT coalesce(max(version), 0) FROM catalogue_versions) AS version,
    (SELECT coalesce(json_agg(row_to_json(t) ORDER BY t.code), '[]'::json)
       FROM (SELECT code, name, kind, issuing_authority, default_validity_days, removal_rule, legal_basis
             FROM list_types) t) AS list_types,
    (SELECT coalesce(json_agg(row_to_json(t) ORDER BY t.code), '[]'::json)
       FROM (SELECT code, title, doc_no, kind, list_types FROM memoranda) t) AS memoranda,
    (SELECT coalesce(json_agg(row_to_json(t) ORDER BY t.code), '[]'::json)
       FROM (SELECT code, kind, category, nature, mandatory, content, targets, implementing_department,
                    legal_basis, basis_level, memorandum FROM measures) t) AS measures,
    (SELECT coalesce(json_agg(row_to_json(t) ORDER BY t.code), '[]'::json)
       FROM (SELECT code, name, type, department, section, system FROM items) t) AS items,
    (SELECT coalesce(json_agg(row_to_json(t) ORDER BY t.item_code, t.list_type, t.measure_code), '[]'::json)
       FROM (SELECT item_code, list_type, measure_code, targets FROM item_mappings) t) AS mappings
"""


async def catalogue_version(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(CATALOGUE_VERSION_SQL))


async def load_catalogue(conn: asyncpg.Connection) -> dict[str, Any]:
    row = await conn.fetchrow(LOAD_CATALOGUE_SQL)
    assert row is not None
    return dict(row)
