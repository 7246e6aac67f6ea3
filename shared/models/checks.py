"""Checks (信用核查) and what they matched and required, kept as they were when answered.

`checks` is partitioned by month on `checked_at` (100 million rows is ~3 years of a province); check ids are
UUIDv7, so `shared.ids.uuid7_time(check_id)` gives the partition to look in. Child partitions are created by
migrations and by `shared.db.partitions.ensure_check_partitions` (they are not modelled here).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    ARRAY,
    JSON,
    Boolean,
    Date,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Text,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base


class Check(Base):
    __tablename__ = "checks"
    __table_args__ = (
        PrimaryKeyConstraint("check_id", "checked_at", name="pk_checks"),
        Index("ix_checks_client_checked_at", "client_id", "checked_at"),
        Index("ix_checks_item_checked_at", "item_code", "checked_at"),
        Index("ix_checks_subject_code", "subject_code"),
        {"postgresql_partition_by": "RANGE (checked_at)"},
    )

    check_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    checked_at: Mapped[dt.datetime] = mapped_column()
    check_date: Mapped[dt.date] = mapped_column(Date)  # Asia/Shanghai business date
    client_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    department: Mapped[str] = mapped_column(Text)  # the checking client's department
    item_code: Mapped[str] = mapped_column(Text)
    item_department: Mapped[str] = mapped_column(Text)
    # Organisations: the normalised code. Natural persons: the masked code (the full one only in `response`
    # for pii:read clients); `subject_hmac` correlates them without storing the number in clear.
    subject_code: Mapped[str] = mapped_column(Text)
    subject_kind: Mapped[str] = mapped_column(Text)
    subject_hmac: Mapped[str | None] = mapped_column(Text)
    operator: Mapped[str] = mapped_column(Text)
    business_ref: Mapped[str] = mapped_column(Text)
    batch_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    request_hash: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)  # clear | review | incentive | penalty | mixed
    match_count: Mapped[int] = mapped_column(Integer)
    entry_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid))
    measure_codes: Mapped[list[str]] = mapped_column(ARRAY(Text))  # `measures` (required)
    suspended_codes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    withheld_codes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    lists_version: Mapped[int] = mapped_column()
    catalogue_version: Mapped[int] = mapped_column()
    feedback_due_on: Mapped[dt.date | None] = mapped_column(Date)
    # `json`, not `jsonb`: PostgreSQL keeps the text as written, so GET returns the body exactly as answered.
    response: Mapped[dict[str, object]] = mapped_column(JSON)


class CheckMatch(Base):
    """One matched entry of a check: the issuing department's view (发起-响应-反馈) starts here."""

    __tablename__ = "check_matches"
    __table_args__ = (
        PrimaryKeyConstraint("check_id", "entry_id", "via", "matched_code", name="pk_check_matches"),
        Index("ix_check_matches_entry_id", "entry_id"),
    )

    check_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    checked_at: Mapped[dt.datetime] = mapped_column()
    entry_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    list_type: Mapped[str] = mapped_column(Text)
    list_kind: Mapped[str] = mapped_column(Text)
    issuing_department: Mapped[str] = mapped_column(Text)
    via: Mapped[str] = mapped_column(Text)
    matched_code: Mapped[str] = mapped_column(Text)
    matched_role: Mapped[str | None] = mapped_column(Text)
    entry_status: Mapped[str] = mapped_column(Text)  # active | objection_pending, at check time


class CheckMeasure(Base):
    """One measure of a check with its disposition; feedback and statistics count these."""

    __tablename__ = "check_measures"
    __table_args__ = (
        PrimaryKeyConstraint("check_id", "measure_code", "disposition", name="pk_check_measures"),
    )

    check_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    checked_at: Mapped[dt.datetime] = mapped_column()
    measure_code: Mapped[str] = mapped_column(Text)
    disposition: Mapped[str] = mapped_column(Text)  # required | suspended | withheld
    kind: Mapped[str] = mapped_column(Text)
    mandatory: Mapped[bool] = mapped_column(Boolean)
    target: Mapped[str] = mapped_column(Text)
    triggered_by: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid))
    list_types: Mapped[list[str]] = mapped_column(ARRAY(Text))
