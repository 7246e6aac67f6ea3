"""Evidence tables refuse UPDATE and DELETE for every role (the audit log, entry history, feedback versions)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from shared.audit import AuditRecord, record, subject_fields
from shared.db.engine import Database
from shared.settings import Settings
from tests.builders import load_catalogue, make_entry


async def test_audit_log_is_append_only(db: Database, test_settings: Settings) -> None:
    masked, digest = subject_fields("110105199003071239", "citizen_id", b"k" * 32)
    assert masked == "110105********1239"
    assert digest is not None
    assert len(digest) == 64
    async with db.connection() as conn:
        await record(
            conn,
            AuditRecord(
                client_id=uuid.uuid4(),
                department="d",
                action="check.create",
                subject_masked=masked,
                subject_hmac=digest,
                detail={"n": 1},
            ),
        )
        row = await conn.fetchrow("SELECT subject_masked, detail FROM audit_log")
        assert row["subject_masked"] == masked
        assert row["detail"] == {"n": 1}
    for statement in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            async with db.connection() as conn:
                await conn.execute(statement)


async def test_entry_history_is_append_only(db: Database) -> None:
    await load_catalogue(db)
    await make_entry(db, events=["objection"])
    async with db.connection() as conn:
        events = [r["event"] for r in await conn.fetch("SELECT event FROM entry_events ORDER BY id")]
    assert events == ["published", "objection"]
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with db.connection() as conn:
            await conn.execute("DELETE FROM entry_events")


async def test_organisation_subjects_are_audited_as_given(test_settings: Settings) -> None:
    masked, digest = subject_fields("91110105MA01ABCD5F", "uscc", b"k" * 32)
    assert masked == "91110105MA01ABCD5F"
    assert digest is None


async def test_lists_version_moves_with_every_entry_change(db: Database) -> None:
    await load_catalogue(db)
    async with db.connection() as conn:
        before = await conn.fetchval("SELECT nextval('lists_version_seq')")
    await make_entry(db)
    async with db.connection() as conn:
        after = await conn.fetchval("SELECT last_value FROM lists_version_seq")
    assert after > before
