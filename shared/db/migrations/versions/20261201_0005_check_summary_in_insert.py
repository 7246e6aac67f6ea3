"""check summary in the check's own insert: drop the statement trigger on checks

Revision ID: 0005_check_summary_in_insert
Revises: 0004_check_match_inputs
Create Date: 2026-12-01 22:30:00

check-api now writes each check's `check_feedback` summary in the same statement that inserts the check
(services/check_api/repository.py INSERT_CHECKS_SQL), with the matched list types it already has. The trigger
re-parsed every stored answer as jsonb to find them: measured at ~40 % of PostgreSQL's CPU for a stored check.
`onecheck_check_list_types` stays: feedback uses it for a check stored without a summary.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0005_check_summary_in_insert'
down_revision: str | Sequence[str] | None = '0004_check_match_inputs'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Fail fast instead of queueing behind a long transaction on a busy production table.
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("DROP TRIGGER IF EXISTS checks_feedback_summary ON checks")
    op.execute("DROP FUNCTION IF EXISTS onecheck_checks_to_feedback()")


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(
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
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER checks_feedback_summary AFTER INSERT ON checks
            REFERENCING NEW TABLE AS new_checks
            FOR EACH STATEMENT EXECUTE FUNCTION onecheck_checks_to_feedback()
        """
    )
