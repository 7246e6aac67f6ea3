"""The transactional outbox: rows written in the same transaction as the change they announce.

One relay (`shared.outbox.relay`) delivers both topics: `feedback` (to the upstream platform) and
`subscription` (signed callbacks to business systems).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, CheckConstraint, Identity, Index, Integer, Text, Uuid, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base, created_at_column


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint("topic IN ('feedback', 'subscription')", name="topic"),
        CheckConstraint("state IN ('pending', 'delivered', 'dead')", name="state"),
        Index("ix_outbox_due", "next_attempt_at", postgresql_where=text("state = 'pending'")),
        Index("ix_outbox_dead", "id", postgresql_where=text("state = 'dead'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # Sent as `Idempotency-Key` (feedback) or `event_id` (subscription); the same on every retry.
    message_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    topic: Mapped[str] = mapped_column(Text)
    # feedback: null (the upstream URL comes from settings at send time); subscription: the callback URL.
    target_url: Mapped[str | None] = mapped_column(Text)
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    payload: Mapped[dict[str, object]] = mapped_column(JSONB)
    state: Mapped[str] = mapped_column(Text, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[dt.datetime] = created_at_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_at_column()
    delivered_at: Mapped[dt.datetime | None] = mapped_column()
