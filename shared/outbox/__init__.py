"""The transactional outbox: `enqueue` (SQLAlchemy) or `enqueue_conn` (asyncpg) in the same transaction as the
change they announce; `shared.outbox.relay` delivers."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import OutboxMessage


async def enqueue(
    session: AsyncSession,
    *,
    topic: str,
    payload: dict[str, Any],
    target_url: str | None = None,
    subscription_id: uuid.UUID | None = None,
    message_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Add a message to the outbox. Does not commit: it lands with the caller's transaction or not at all."""
    message_id = message_id or uuid.uuid4()
    await session.execute(
        insert(OutboxMessage).values(
            message_id=message_id,
            topic=topic,
            target_url=target_url,
            subscription_id=subscription_id,
            payload=payload,
            next_attempt_at=dt.datetime.now(dt.UTC),
        )
    )
    return message_id


ENQUEUE_SQL = """
INSERT INTO outbox (message_id, topic, target_url, subscription_id, payload, next_attempt_at)
VALUES ($1, $2, $3, $4, $5, now())
"""


async def enqueue_conn(
    conn: asyncpg.Connection,
    *,
    topic: str,
    payload: dict[str, Any],
    target_url: str | None = None,
    subscription_id: uuid.UUID | None = None,
    message_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """`enqueue` for the raw asyncpg path: call it inside the caller's `conn.transaction()`."""
    message_id = message_id or uuid.uuid4()
    await conn.execute(
        ENQUEUE_SQL,
        message_id,
        topic,
        target_url,
        subscription_id,
        json.dumps(payload, ensure_ascii=False),
    )
    return message_id
