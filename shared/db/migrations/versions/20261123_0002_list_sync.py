"""list sync: index for the expiry job

Revision ID: 0002_list_sync
Revises: 0001
Create Date: 2026-11-23 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002_list_sync'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Fail fast instead of queueing behind a long transaction on a busy production table.
    op.execute("SET LOCAL lock_timeout = '5s'")
    # The expiry job looks up entries still stored as open whose `expires_on` has passed.
    op.create_index(
        'ix_list_entries_expiry_due',
        'list_entries',
        ['expires_on'],
        unique=False,
        postgresql_where=sa.text("status <> 'ended' AND expires_on IS NOT NULL"),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index(
        'ix_list_entries_expiry_due',
        table_name='list_entries',
        postgresql_where=sa.text("status <> 'ended' AND expires_on IS NOT NULL"),
    )
