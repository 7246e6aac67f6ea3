"""API clients, idempotency keys and the append-only audit log."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ARRAY, BigInteger, Boolean, Identity, Index, Integer, PrimaryKeyConstraint, Text, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base, created_at_column

SCOPES = (
    "check",
    "feedback",
    "lists:read",
    "lists:write",
    "catalogue:write",
    "sync:admin",
    "stats:read",
    "pii:read",
)


class ApiClient(Base):
    """One business system of one department. Only the SHA-256 of its key is stored."""

    __tablename__ = "api_clients"

    client_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    department: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    any_department: Mapped[bool] = mapped_column(Boolean, server_default="false")
    key_hash: Mapped[str] = mapped_column(Text, unique=True)
    key_prefix: Mapped[str] = mapped_column(Text)  # shown in logs and listings instead of the key
    created_at: Mapped[dt.datetime] = created_at_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()


class IdempotencyKey(Base):
    """An `Idempotency-Key` per client and route, kept 24 hours. The primary key closes the replay race."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        PrimaryKeyConstraint("client_id", "route", "key", name="pk_idempotency_keys"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    client_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    route: Mapped[str] = mapped_column(Text)
    key: Mapped[str] = mapped_column(Text)
    request_hash: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text, server_default="in_flight")  # in_flight | done
    response_status: Mapped[int | None] = mapped_column(Integer)
    # The answer's exact bytes (as text): a replay is byte-identical, which JSONB's key reordering would break.
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_at_column()
    expires_at: Mapped[dt.datetime] = mapped_column()


class AuditLog(Base):
    """Who read or wrote personal data, when, for which item: 查询记录 kept five years or more.

    Append-only: a trigger refuses UPDATE and DELETE for every role. Subjects are stored masked, with a
    keyed HMAC for correlation.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at", postgresql_using="brin"),
        Index("ix_audit_log_client_id", "client_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[dt.datetime] = created_at_column()
    client_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    department: Mapped[str | None] = mapped_column(Text)
    operator: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)  # e.g. check.create, check.read, entry.publish
    method: Mapped[str | None] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(Text)
    status: Mapped[int | None] = mapped_column(Integer)
    item_code: Mapped[str | None] = mapped_column(Text)
    subject_masked: Mapped[str | None] = mapped_column(Text)
    subject_hmac: Mapped[str | None] = mapped_column(Text)
    object_id: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, object] | None] = mapped_column(JSONB)
