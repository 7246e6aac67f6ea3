"""feedback: one summary row per check for statistics, kept by a trigger on checks

Revision ID: 0003_feedback
Revises: 0002_list_sync
Create Date: 2026-11-23 21:00:00

`check_feedback` becomes the narrow table enforcement statistics read: a row for every check (written by a
statement trigger on `checks`, so check-api needs no change), with the columns statistics filter and group
by, and `statuses`, the current status of each reported measure. Scanning it instead of `checks` (whose rows
carry the whole answer) keeps statistics over millions of checks well under a second.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0003_feedback'
down_revision: str | Sequence[str] | None = '0002_list_sync'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


SQL_UP = [
    """
    -- The list types a check matched, from its answer as stored (contract shape: matches[].list.code).
    CREATE FUNCTION onecheck_check_list_types(response jsonb) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
        SELECT coalesce(array_agg(DISTINCT m -> 'list' ->> 'code') FILTER (WHERE m -> 'list' ->> 'code' IS NOT NULL),
                        '{}')
        FROM jsonb_array_elements(coalesce(response -> 'matches', '[]'::jsonb)) AS m
    $$;
    """,
    """
    CREATE FUNCTION onecheck_checks_to_feedback() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO check_feedback (check_id, checked_at, check_date, department, item_code, match_count,
                                    list_types, required_count, complete, feedback_due_on)
        SELECT n.check_id, n.checked_at, n.check_date, n.department, n.item_code, n.match_count,
               onecheck_check_list_types(n.response::jsonb), cardinality(n.measure_codes),
               cardinality(n.measure_codes) = 0, n.feedback_due_on
        FROM new_checks n
        ON CONFLICT (check_id) DO NOTHING;
        RETURN NULL;
    END $$;
    """,
    """
    -- A statement trigger: one INSERT per batch of checks, whatever its size.
    CREATE TRIGGER checks_feedback_summary AFTER INSERT ON checks
        REFERENCING NEW TABLE AS new_checks
        FOR EACH STATEMENT EXECUTE FUNCTION onecheck_checks_to_feedback();
    """,
    """
    -- Checks stored before this revision.
    INSERT INTO check_feedback (check_id, checked_at, check_date, department, item_code, match_count, list_types,
                                required_count, complete, feedback_due_on)
    SELECT c.check_id, c.checked_at, c.check_date, c.department, c.item_code, c.match_count,
           onecheck_check_list_types(c.response::jsonb), cardinality(c.measure_codes),
           cardinality(c.measure_codes) = 0, c.feedback_due_on
    FROM checks c
    ON CONFLICT (check_id) DO UPDATE
        SET check_date = EXCLUDED.check_date, department = EXCLUDED.department, item_code = EXCLUDED.item_code,
            match_count = EXCLUDED.match_count, list_types = EXCLUDED.list_types;
    """,
    """
    UPDATE check_feedback cf SET statuses = cur.statuses
    FROM (
        SELECT v.check_id,
               jsonb_object_agg(v.measure_code, jsonb_build_object(
                   'status', v.status, 'note', v.note, 'required', v.measure_code = ANY(c.measure_codes))) AS statuses
        FROM (
            SELECT DISTINCT ON (check_id, measure_code) check_id, measure_code, status, note
            FROM feedback_measures ORDER BY check_id, measure_code, id DESC
        ) v
        JOIN check_feedback f ON f.check_id = v.check_id
        JOIN checks c ON c.check_id = f.check_id AND c.checked_at = f.checked_at
        GROUP BY v.check_id
    ) cur
    WHERE cf.check_id = cur.check_id;
    """,
]

SQL_DOWN = [
    "DROP TRIGGER IF EXISTS checks_feedback_summary ON checks;",
    "DROP FUNCTION IF EXISTS onecheck_checks_to_feedback();",
    "DROP FUNCTION IF EXISTS onecheck_check_list_types(jsonb);",
]


def upgrade() -> None:
    # Fail fast instead of queueing behind a long transaction on a busy production table.
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column('check_feedback', sa.Column('check_date', sa.Date(), nullable=True))
    op.add_column('check_feedback', sa.Column('department', sa.Text(), nullable=True))
    op.add_column('check_feedback', sa.Column('item_code', sa.Text(), nullable=True))
    op.add_column('check_feedback', sa.Column('match_count', sa.Integer(), server_default='0', nullable=False))
    op.add_column(
        'check_feedback',
        sa.Column('list_types', sa.ARRAY(sa.Text()), server_default='{}', nullable=False),
    )
    op.add_column(
        'check_feedback',
        sa.Column('statuses', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    )
    for statement in SQL_UP:
        op.execute(statement)
    op.alter_column('check_feedback', 'check_date', nullable=False)
    op.alter_column('check_feedback', 'department', nullable=False)
    op.alter_column('check_feedback', 'item_code', nullable=False)
    op.create_index('ix_check_feedback_check_date', 'check_feedback', ['check_date'], unique=False)


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    for statement in SQL_DOWN:
        op.execute(statement)
    op.drop_index('ix_check_feedback_check_date', table_name='check_feedback')
    op.drop_column('check_feedback', 'statuses')
    op.drop_column('check_feedback', 'list_types')
    op.drop_column('check_feedback', 'match_count')
    op.drop_column('check_feedback', 'item_code')
    op.drop_column('check_feedback', 'department')
    op.drop_column('check_feedback', 'check_date')
