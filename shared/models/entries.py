"""List entries (名单条目), their append-only event history, linked persons and legacy-code aliases.

Sized for 10 million entries: a check looks entries up by subject code, by embedded organisation code and by
linked-person code, each through its own b-tree index.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Identity,
    Index,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base, created_at_column

ENTRY_STATUSES = ("active", "objection_pending", "ended")
END_REASONS = ("expired", "removed", "repaired", "objection_upheld")


class ListEntry(Base):
    __tablename__ = "list_entries"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'objection_pending', 'ended')", name="status"),
        CheckConstraint(
            "end_reason IS NULL OR end_reason IN ('expired', 'removed', 'repaired', 'objection_upheld')",
            name="end_reason",
        ),
        CheckConstraint("(status = 'ended') = (end_reason IS NOT NULL)", name="ended_has_reason"),
        CheckConstraint("expires_on IS NULL OR expires_on >= listed_on", name="expiry_after_listing"),
        CheckConstraint("list_kind IN ('red', 'black', 'watch')", name="list_kind"),
        Index("ix_list_entries_subject_code", "subject_code"),
        Index(
            "ix_list_entries_subject_org_code",
            "subject_org_code",
            postgresql_where=text("subject_org_code IS NOT NULL"),
        ),
        # One upstream record is one entry; a re-delivered record updates it.
        Index(
            "uq_list_entries_source_record",
            "source_name",
            "source_record_id",
            unique=True,
            postgresql_where=text("source_name IS NOT NULL"),
        ),
        Index("ix_list_entries_issuing_department", "issuing_department"),
        # The expiry job's lookup: entries still stored as open whose `expires_on` may have passed.
        Index(
            "ix_list_entries_expiry_due",
            "expires_on",
            postgresql_where=text("status <> 'ended' AND expires_on IS NOT NULL"),
        ),
    )

    entry_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    list_type: Mapped[str] = mapped_column(ForeignKey("list_types.code"))
    list_kind: Mapped[str] = mapped_column(Text)  # copied from the list type: the hot path needs no join
    # Normalised code (USCC where known, else the code as its own kind; citizen ids always 18 digits).
    subject_code: Mapped[str] = mapped_column(Text)
    subject_kind: Mapped[str] = mapped_column(Text)
    # Characters 9-17 of a USCC, or an org code itself: a USCC also matches entries under its org code.
    subject_org_code: Mapped[str | None] = mapped_column(Text)
    subject_name: Mapped[str] = mapped_column(Text)
    # The identifier as the source gave it, before alias mapping (kept for audit and for unmapped legacy codes).
    original_code: Mapped[str] = mapped_column(Text)
    original_kind: Mapped[str] = mapped_column(Text)
    linked_persons: Mapped[list[dict[str, str]]] = mapped_column(JSONB, server_default="[]")
    reason: Mapped[str] = mapped_column(Text)
    decision_no: Mapped[str] = mapped_column(Text)
    issuing_department: Mapped[str] = mapped_column(Text)
    listed_on: Mapped[dt.date] = mapped_column(Date)
    expires_on: Mapped[dt.date | None] = mapped_column(Date)
    # Stored status; an entry past `expires_on` *reads* ended/expired (see shared.lifecycle).
    status: Mapped[str] = mapped_column(Text, server_default="active")
    end_reason: Mapped[str | None] = mapped_column(Text)
    ended_on: Mapped[dt.date | None] = mapped_column(Date)  # date (Asia/Shanghai) of the event that ended it
    source_name: Mapped[str | None] = mapped_column(Text)  # null: published through the API
    source_record_id: Mapped[str | None] = mapped_column(Text)
    upstream_updated_at: Mapped[dt.datetime | None] = mapped_column()
    content_hash: Mapped[str] = mapped_column(Text)
    created_by_client: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = created_at_column()


class EntryPerson(Base):
    """A linked person (法定代表人 …) of an entry, indexed by code for `via: responsible_person` matches."""

    __tablename__ = "entry_persons"
    __table_args__ = (Index("ix_entry_persons_person_code", "person_code"),)

    entry_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("list_entries.entry_id", ondelete="CASCADE"), primary_key=True
    )
    person_code: Mapped[str] = mapped_column(Text, primary_key=True)
    role: Mapped[str] = mapped_column(Text, primary_key=True)
    person_name: Mapped[str] = mapped_column(Text)


class EntryEvent(Base):
    """Append-only history of an entry (a trigger refuses UPDATE and DELETE)."""

    __tablename__ = "entry_events"
    __table_args__ = (Index("ix_entry_events_entry_id", "entry_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    entry_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("list_entries.entry_id"))
    # published | updated | objection | objection_upheld | objection_rejected | repair | removal | expired
    event: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = created_at_column()
    operator: Mapped[str | None] = mapped_column(Text)
    basis: Mapped[str | None] = mapped_column(Text)
    client_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    status_after: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, object] | None] = mapped_column(JSONB)


class SubjectAlias(Base):
    """A legacy code (组织机构代码 / 工商注册号) known to belong to a USCC."""

    __tablename__ = "subject_aliases"
    __table_args__ = (
        CheckConstraint("alias_kind IN ('org_code', 'registration_no')", name="alias_kind"),
        Index("ix_subject_aliases_uscc", "uscc"),
    )

    alias_code: Mapped[str] = mapped_column(Text, primary_key=True)
    alias_kind: Mapped[str] = mapped_column(Text)
    uscc: Mapped[str] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_at_column()
