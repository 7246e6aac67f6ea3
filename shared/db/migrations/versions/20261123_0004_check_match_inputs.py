"""check match inputs: row-estimated set functions for the check's subjects and persons

Revision ID: 0004_check_match_inputs
Revises: 0003_feedback
Create Date: 2026-11-23 19:30:00

The check's match query reads its subjects from JSON. `json_to_recordset` is estimated at 100 rows, so the
cached generic plan hash-joined whole tables (a sequential scan of `entry_persons` for every natural-person
check). These PL/pgSQL wrappers are not inlined, so the planner takes their `ROWS 1` and plans index lookups
per subject, for one subject and for a batch of 1,000 alike.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0004_check_match_inputs'
down_revision: str | Sequence[str] | None = '0003_feedback'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(
        """
        CREATE FUNCTION onecheck_check_subjects(subjects json)
        RETURNS TABLE (idx integer, code text, kind text)
        LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 1 AS $$
        BEGIN
            RETURN QUERY SELECT g.idx, g.code, g.kind FROM json_to_recordset(subjects) AS g(idx int, code text, kind text);
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION onecheck_check_persons(persons json)
        RETURNS TABLE (idx integer, code text, role text)
        LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 1 AS $$
        BEGIN
            RETURN QUERY SELECT p.idx, p.code, p.role FROM json_to_recordset(persons) AS p(idx int, code text, role text);
        END $$
        """
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("DROP FUNCTION IF EXISTS onecheck_check_persons(json)")
    op.execute("DROP FUNCTION IF EXISTS onecheck_check_subjects(json)")
