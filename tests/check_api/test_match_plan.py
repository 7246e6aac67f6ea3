"""The match query's cached (generic) plan looks entries up by index, never by scanning whole tables.

A bare `json_to_recordset` is estimated at 100 rows, which made the generic plan hash-join a sequential
scan of `entry_persons` for every natural-person check (migration 0004 fixed it with ROWS 1 wrappers).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from services.check_api.repository import MATCH_SQL
from shared.db.engine import Database
from tests.builders import load_catalogue

BIG_TABLES = ("list_entries", "entry_persons")


async def _seed(db: Database, n: int = 20_000) -> None:
    async with db.connection() as conn:
        await conn.execute(
            """
            INSERT INTO list_entries (entry_id, list_type, list_kind, subject_code, subject_kind, subject_org_code,
                subject_name, original_code, original_kind, reason, decision_no, issuing_department, listed_on,
                content_hash)
            SELECT gen_random_uuid(), 'LT01', 'black', '9111' || lpad(i::text, 14, '0'), 'uscc',
                   lpad(i::text, 9, '0'), 'n', 'c', 'uscc', 'r', 'd', 'dep', current_date - 10, 'h'
            FROM generate_series(1, $1) AS i
            """,
            n,
        )
        await conn.execute(
            """
            INSERT INTO entry_persons (entry_id, person_code, role, person_name)
            SELECT entry_id, '1101051990' || lpad((row_number() OVER ())::text, 8, '0'), 'legal_representative', 'x'
            FROM list_entries LIMIT $1
            """,
            n // 5,
        )
        await conn.execute("ANALYZE list_entries")
        await conn.execute("ANALYZE entry_persons")


@pytest.mark.parametrize(
    ("subjects", "persons"),
    [
        ([{"idx": 0, "code": "110105199003071239", "kind": "citizen_id"}], []),
        (
            [{"idx": 0, "code": "91110105MA01ABCD5F", "kind": "uscc"}],
            [{"idx": 0, "code": "110105199003071239", "role": "legal_representative"}],
        ),
        ([{"idx": i, "code": f"9111{i:014d}", "kind": "uscc"} for i in range(1000)], []),
        ([{"idx": 0, "code": "MA01ABCD5", "kind": "org_code"}], []),
    ],
    ids=["natural-person", "organisation-with-related-person", "batch-of-1000", "org-code"],
)
async def test_generic_plan_uses_indexes(
    db: Database, subjects: list[dict[str, object]], persons: list[dict[str, object]]
) -> None:
    await load_catalogue(db)
    await _seed(db)
    async with db.connection() as conn:
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute("PREPARE match_plan(json, json, date) AS " + MATCH_SQL)
        try:
            # EXECUTE takes literals, not parameters; the values are our own constants.
            literal = f"'{json.dumps(subjects)}'::json, '{json.dumps(persons)}'::json, '{dt.date.today().isoformat()}'::date"
            rows = await conn.fetch(f"EXPLAIN (COSTS OFF) EXECUTE match_plan({literal})")
        finally:
            await conn.execute("DEALLOCATE match_plan")
    plan = "\n".join(r[0] for r in rows)
    for table in BIG_TABLES:
        assert f"Seq Scan on {table}" not in plan, plan
