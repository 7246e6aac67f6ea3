"""Feedback (反馈实施情况): every reported version is kept; `check_feedback` holds the current summary."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ARRAY, BigInteger, Boolean, Date, Identity, Index, Integer, Text, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base, created_at_column


class FeedbackSubmission(Base):
    """One POST of feedback: a decision and some measure statuses."""

    __tablename__ = "feedback_submissions"
    __table_args__ = (Index("ix_feedback_submissions_check_id", "check_id"),)

    submission_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    check_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    client_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    decision: Mapped[str] = mapped_column(Text)
    operator: Mapped[str] = mapped_column(Text)
    reported_at: Mapped[dt.datetime] = created_at_column()


class FeedbackMeasure(Base):
    """One version of one measure's status (append-only)."""

    __tablename__ = "feedback_measures"
    __table_args__ = (Index("ix_feedback_measures_check_measure", "check_id", "measure_code", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    submission_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    check_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    measure_code: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)  # applied | not_applied | not_applicable
    note: Mapped[str | None] = mapped_column(Text)
    operator: Mapped[str] = mapped_column(Text)
    reported_at: Mapped[dt.datetime] = created_at_column()


class CheckFeedback(Base):
    """The feedback summary of a check, one row per check: what enforcement statistics read.

    check-api writes the row in the statement that stores the check (migration 0005), so statistics
    never scan `checks` itself; each feedback submission updates it in the same transaction. `statuses` holds
    the current status of each reported measure: {code: {"status", "note", "required"}}.
    """

    __tablename__ = "check_feedback"
    __table_args__ = (
        Index("ix_check_feedback_checked_at", "checked_at"),
        Index("ix_check_feedback_check_date", "check_date"),
    )

    check_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    checked_at: Mapped[dt.datetime] = mapped_column()
    check_date: Mapped[dt.date] = mapped_column(Date)  # copied from the check (Asia/Shanghai)
    department: Mapped[str] = mapped_column(Text)  # the checking client's department
    item_code: Mapped[str] = mapped_column(Text)
    match_count: Mapped[int] = mapped_column(Integer, server_default="0")
    list_types: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")  # of the matched entries
    decision: Mapped[str | None] = mapped_column(Text)
    complete: Mapped[bool] = mapped_column(Boolean, server_default="false")
    required_count: Mapped[int] = mapped_column(Integer, server_default="0")
    applied: Mapped[int] = mapped_column(Integer, server_default="0")
    not_applied: Mapped[int] = mapped_column(Integer, server_default="0")
    not_applicable: Mapped[int] = mapped_column(Integer, server_default="0")
    statuses: Mapped[dict[str, object]] = mapped_column(JSONB, server_default="{}")
    feedback_due_on: Mapped[dt.date | None] = mapped_column(Date)
    updated_at: Mapped[dt.datetime] = created_at_column()
