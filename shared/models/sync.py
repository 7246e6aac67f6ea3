"""List sources, their runs, raw payloads (kept with SHA-256 before parsing) and quarantined records."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base, created_at_column

RUN_COUNT_KEYS = (
    "received",
    "inserted",
    "updated",
    "unchanged",
    "duplicates",
    "stale",
    "quarantined",
    "ended",
    "unmapped_legacy",
)


class SyncSource(Base):
    __tablename__ = "sync_sources"
    __table_args__ = (CheckConstraint("kind IN ('feed', 'snapshot', 'file')", name="kind"),)

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    base_url: Mapped[str | None] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(Text)
    token: Mapped[str | None] = mapped_column(Text)  # never returned by the API
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    cursor: Mapped[str | None] = mapped_column(Text)  # feed: last committed cursor
    enabled: Mapped[bool] = mapped_column(Boolean, server_default="true")
    created_at: Mapped[dt.datetime] = created_at_column()


class SyncRun(Base):
    __tablename__ = "sync_runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'succeeded', 'failed', 'held', 'discarded')", name="status"),
        Index("ix_sync_runs_source_started", "source", "started_at"),
        # At most one running-or-held run per source, whatever the number of replicas.
        Index(
            "uq_sync_runs_source_open",
            "source",
            unique=True,
            postgresql_where=text("status IN ('running', 'held')"),
        ),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    source: Mapped[str] = mapped_column(ForeignKey("sync_sources.name"))
    status: Mapped[str] = mapped_column(Text, server_default="running")
    started_at: Mapped[dt.datetime] = created_at_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()
    heartbeat_at: Mapped[dt.datetime] = created_at_column()
    counts: Mapped[dict[str, int]] = mapped_column(JSONB, server_default="{}")
    error: Mapped[str | None] = mapped_column(Text)
    cursor_start: Mapped[str | None] = mapped_column(Text)
    cursor_end: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(Text)  # host:pid that runs it, to find dead runs


class SyncPage(Base):
    """A raw upstream page or file, stored with its hash before it is parsed."""

    __tablename__ = "sync_pages"
    __table_args__ = (Index("ix_sync_pages_run_id", "run_id", "seq"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sync_runs.run_id"))
    seq: Mapped[int] = mapped_column(Integer)
    cursor: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    received_at: Mapped[dt.datetime] = created_at_column()


class QuarantinedRecord(Base):
    __tablename__ = "sync_quarantine"
    __table_args__ = (Index("ix_sync_quarantine_run_id", "run_id", "line"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sync_runs.run_id"))
    line: Mapped[int] = mapped_column(Integer)  # record number in the run (file: the line in the file)
    raw: Mapped[object] = mapped_column(JSONB)
    reason: Mapped[str] = mapped_column(Text)
    rule: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_at_column()


SUBJECT_KINDS_CHECK = (
    "(subject_codes IS NULL) = (subject_kinds IS NULL) "
    "AND cardinality(subject_codes) = cardinality(subject_kinds) "
    "AND subject_kinds <@ ARRAY['uscc', 'citizen_id', 'org_code', 'registration_no']::text[]"
)


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (CheckConstraint(SUBJECT_KINDS_CHECK, name="subject_kinds"),)

    subscription_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    client_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    callback_url: Mapped[str] = mapped_column(Text)
    # Normalised codes, and the kind of each (same order): a code matches entries as a check of it would, and
    # only a USCC reaches entries recorded under its embedded organisation code (shared/entries.py MATCH_SQL).
    subject_codes: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    subject_kinds: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    list_kinds: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    # Needed in clear to sign callbacks (HMAC); shown to the client once.
    secret: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    created_at: Mapped[dt.datetime] = created_at_column()
