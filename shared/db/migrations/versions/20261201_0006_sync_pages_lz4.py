"""sync pages lz4: compress stored raw pages with lz4 instead of pglz

Revision ID: 0006_sync_pages_lz4
Revises: 0005_check_summary_in_insert
Create Date: 2026-12-01 23:30:00

Every page a sync run pulls is stored whole before it is parsed (`sync_pages.body`, ~440 kB per 1,000
records). PostgreSQL's default TOAST compression, pglz, took ~0.7 s per 100,000 records of a snapshot on the
benchmark machine; lz4 takes ~0.2 s and compresses these pages about as well (10 vs 9 MB per 100 pages).
Only pages stored from now on are compressed with lz4; stored ones stay readable as they are. A server built
without lz4 keeps pglz (the statement is skipped, not failed).
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0006_sync_pages_lz4'
down_revision: str | Sequence[str] | None = '0005_check_summary_in_insert'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(
        """
        DO $$
        BEGIN
            ALTER TABLE sync_pages ALTER COLUMN body SET COMPRESSION lz4;
        EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
            RAISE NOTICE 'lz4 is not available on this server: sync_pages.body stays pglz';
        END $$;
        """
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("ALTER TABLE sync_pages ALTER COLUMN body SET COMPRESSION default")
