"""subscription kinds: the kind of each subscription code, so only USCCs match by their embedded org code

Revision ID: 0007_subscription_kinds
Revises: 0006_sync_pages_lz4
Create Date: 2026-12-02 00:30:00

Subscriptions matched the embedded-organisation-code rule on any 18-character code: a citizen id whose
characters 9-17 happen to pass GB 11714 (about 8 % do) received another organisation's entries, and a USCC
those of another USCC embedding the same characters. Matching now follows the check (services/check_api
MATCH_SQL): only a USCC reaches entries recorded under its embedded org code (`subject_kind = 'org_code'`).
For that the kind of each code is stored next to it (`subject_kinds`, same order as `subject_codes`).

Stored codes were normalised when the subscription was made (a legacy 15-digit citizen id already turned
into 18 digits; a code passing both the USCC and the citizen-id rules refused), so the kind follows from the
code: 9 characters an org code, 15 a registration number, 18 a USCC if it passes the GB 32100 rules (both
check characters, digits at 3-8), else a citizen id. The backfill computes that in SQL (a temporary
function), so it also runs in offline (`--sql`) mode.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0007_subscription_kinds'
down_revision: str | Sequence[str] | None = '0006_sync_pages_lz4'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHECK = (
    "(subject_codes IS NULL) = (subject_kinds IS NULL) "
    "AND cardinality(subject_codes) = cardinality(subject_kinds) "
    "AND subject_kinds <@ ARRAY['uscc', 'citizen_id', 'org_code', 'registration_no']::text[]"
)

_KIND_FUNCTION = """
CREATE FUNCTION pg_temp.onecheck_0007_code_kind(code text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
SELECT CASE length(code)
    WHEN 9 THEN 'org_code'
    WHEN 15 THEN 'registration_no'
    WHEN 18 THEN CASE WHEN code ~ '^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$'
        -- GB 32100 (position 18): values are indexes in the USCC alphabet, weights 3^(i-1) mod 31
        AND substr('0123456789ABCDEFGHJKLMNPQRTUWXY', (31 - (
                SELECT sum((strpos('0123456789ABCDEFGHJKLMNPQRTUWXY', substr(code, i, 1)) - 1)
                           * ((ARRAY[1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28])[i]))
                FROM generate_series(1, 17) AS i)::int % 31) % 31 + 1, 1) = substr(code, 18, 1)
        -- GB 11714 (position 17) over positions 9-16: A=10 … Z=35, weights 3 7 9 10 5 8 4 2
        AND (SELECT CASE 11 - s % 11 WHEN 10 THEN 'X' WHEN 11 THEN '0' ELSE (11 - s % 11)::text END
             FROM (SELECT sum((strpos('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ', substr(code, 8 + i, 1)) - 1)
                              * ((ARRAY[3, 7, 9, 10, 5, 8, 4, 2])[i]))::int AS s
                   FROM generate_series(1, 8) AS i) w) = substr(code, 17, 1)
        THEN 'uscc' ELSE 'citizen_id' END
    -- Never stored (codes are normalised); fail closed: a personal code matches only itself.
    ELSE 'citizen_id' END
$$
"""


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("ALTER TABLE subscriptions ADD COLUMN subject_kinds text[]")
    op.execute(_KIND_FUNCTION)
    op.execute(
        """
        UPDATE subscriptions SET subject_kinds = ARRAY(
            SELECT pg_temp.onecheck_0007_code_kind(u.code)
            FROM unnest(subject_codes) WITH ORDINALITY AS u(code, n) ORDER BY u.n)
        WHERE subject_codes IS NOT NULL
        """
    )
    op.execute("DROP FUNCTION pg_temp.onecheck_0007_code_kind(text)")
    op.create_check_constraint(op.f('ck_subscriptions_subject_kinds'), 'subscriptions', _CHECK)


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_constraint(op.f('ck_subscriptions_subject_kinds'), 'subscriptions', type_='check')
    op.drop_column('subscriptions', 'subject_kinds')
