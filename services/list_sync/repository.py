"""All SQL of the list-sync service except the entries' write path (shared/entries.py). Functions take an
asyncpg connection first; none commits. JSON goes in as text, comes back as objects."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Any

import asyncpg
from shared.entries import copy_text_rows
from shared.lifecycle import SHANGHAI

from services.list_sync.records import ListTypeInfo

# --- list types, entries ---------------------------------------------------------------------------------


async def list_types(conn: asyncpg.Connection) -> dict[str, ListTypeInfo]:
    rows = await conn.fetch("SELECT code, kind, default_validity_days FROM list_types")
    return {r["code"]: ListTypeInfo(r["kind"], r["default_validity_days"]) for r in rows}


async def lock_entry(conn: asyncpg.Connection, entry_id: uuid.UUID) -> asyncpg.Record | None:
    """The entry's lifecycle fields under a row lock: two events at once cannot both start from `active`."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT status, end_reason, ended_on, expires_on, issuing_department, subject_code, subject_kind "
        "FROM list_entries WHERE entry_id = $1 FOR UPDATE",
        entry_id,
    )
    return row


async def try_lock(conn: asyncpg.Connection, key: int) -> bool:
    """A session-level advisory lock (held until `unlock` or the session ends)."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))


async def unlock(conn: asyncpg.Connection, key: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", key)


async def set_bulk_limits(conn: asyncpg.Connection, statement_timeout_ms: int) -> None:
    """For the one transaction that applies a whole listing: the run's deadline, not the API's short
    statement timeout, and sorts of a million staged rows in memory rather than on disk."""
    await conn.execute(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}")
    await conn.execute("SET LOCAL work_mem = '64MB'")


# --- sources ---------------------------------------------------------------------------------------------

SOURCE_COLUMNS = "name, kind, base_url, path, token, interval_seconds, cursor, enabled, created_at"


async def insert_source(
    conn: asyncpg.Connection,
    *,
    name: str,
    kind: str,
    base_url: str | None,
    path: str | None,
    token: str | None,
    interval_seconds: int | None,
) -> asyncpg.Record | None:
    """The new source, or None if the name is taken (ON CONFLICT: no read-then-write race)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""INSERT INTO sync_sources (name, kind, base_url, path, token, interval_seconds)
        VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING RETURNING {SOURCE_COLUMNS}""",
        name,
        kind,
        base_url,
        path,
        token,
        interval_seconds,
    )
    return row


async def get_source(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {SOURCE_COLUMNS} FROM sync_sources WHERE name = $1", name
    )
    return row


async def list_sources(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(f"SELECT {SOURCE_COLUMNS} FROM sync_sources ORDER BY name")
    return rows


async def set_source_cursor(conn: asyncpg.Connection, name: str, cursor: str | None) -> None:
    await conn.execute("UPDATE sync_sources SET cursor = $2 WHERE name = $1", name, cursor)


async def due_sources(conn: asyncpg.Connection) -> list[str]:
    """Enabled sources with an interval whose last run started at least that long ago and none is open."""
    rows = await conn.fetch(
        """
        SELECT s.name FROM sync_sources s
        WHERE s.enabled AND s.interval_seconds IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM sync_runs r WHERE r.source = s.name AND r.status IN ('running', 'held'))
          AND coalesce((SELECT max(r.started_at) FROM sync_runs r WHERE r.source = s.name), '-infinity')
              <= now() - make_interval(secs => s.interval_seconds)
        ORDER BY s.name
        """
    )
    return [r["name"] for r in rows]


# --- runs ------------------------------------------------------------------------------------------------

RUN_COLUMNS = (
    "run_id, source, status, started_at, finished_at, counts, error, cursor_start, cursor_end, worker"
)


async def create_run(
    conn: asyncpg.Connection, *, run_id: uuid.UUID, source: str, cursor_start: str | None, worker: str
) -> asyncpg.Record | None:
    """The new running run, or None while another run of the source is running or held (the partial unique
    index `uq_sync_runs_source_open` decides, whatever the number of replicas)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""INSERT INTO sync_runs (run_id, source, status, cursor_start, worker, counts)
        VALUES ($1, $2, 'running', $3, $4, '{{}}'::jsonb)
        ON CONFLICT (source) WHERE status IN ('running', 'held') DO NOTHING
        RETURNING {RUN_COLUMNS}""",
        run_id,
        source,
        cursor_start,
        worker,
    )
    return row


async def get_run(conn: asyncpg.Connection, run_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {RUN_COLUMNS} FROM sync_runs WHERE run_id = $1", run_id
    )
    return row


async def lock_run(conn: asyncpg.Connection, run_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {RUN_COLUMNS} FROM sync_runs WHERE run_id = $1 FOR UPDATE", run_id
    )
    return row


async def take_held_run(conn: asyncpg.Connection, run_id: uuid.UUID, worker: str) -> asyncpg.Record | None:
    """A confirmed held run becomes `running` in `worker` (which holds the source lock), or None if it is no
    longer held (discarded, or confirmed by another request). Its counts start again from nothing, as a
    running snapshot's do: the apply recomputes them, and a run that fails has applied nothing."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""UPDATE sync_runs SET status = 'running', worker = $2, heartbeat_at = now(), counts = '{{}}'::jsonb
        WHERE run_id = $1 AND status = 'held' RETURNING {RUN_COLUMNS}""",
        run_id,
        worker,
    )
    return row


async def list_runs(conn: asyncpg.Connection, source: str | None, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT {RUN_COLUMNS} FROM sync_runs WHERE $1::text IS NULL OR source = $1
        ORDER BY started_at DESC LIMIT $2""",
        source,
        limit,
    )
    return rows


async def running_runs(conn: asyncpg.Connection, source: str | None = None) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT run_id, source, worker FROM sync_runs WHERE status = 'running' AND ($1::text IS NULL OR source = $1)",
        source,
    )
    return rows


async def save_progress(
    conn: asyncpg.Connection, run_id: uuid.UUID, counts: dict[str, int], cursor_end: str | None
) -> None:
    await conn.execute(
        "UPDATE sync_runs SET counts = $2::text::jsonb, cursor_end = $3, heartbeat_at = now() WHERE run_id = $1",
        run_id,
        json.dumps(counts),
        cursor_end,
    )


async def finish_run(
    conn: asyncpg.Connection,
    run_id: uuid.UUID,
    *,
    status: str,
    from_status: str,
    counts: dict[str, int] | None = None,
    error: str | None = None,
) -> bool:
    """Move a run from `from_status` to `status` (held runs are not finished: `finished_at` stays null)."""
    done = await conn.fetchval(
        """UPDATE sync_runs
        SET status = $2, counts = coalesce($4::text::jsonb, counts), error = $5, heartbeat_at = now(),
            finished_at = CASE WHEN $2 = 'held' THEN NULL ELSE clock_timestamp() END
        WHERE run_id = $1 AND status = $3 RETURNING true""",
        run_id,
        status,
        from_status,
        json.dumps(counts) if counts is not None else None,
        error,
    )
    return bool(done)


# --- pages and quarantine --------------------------------------------------------------------------------


async def store_page(
    conn: asyncpg.Connection, run_id: uuid.UUID, seq: int, cursor: str | None, body: bytes
) -> None:
    """The raw page (or file) with its SHA-256, stored before anything parses it, and the run's heartbeat:
    one statement, so one commit per page."""
    await conn.execute(
        """WITH beat AS (UPDATE sync_runs SET heartbeat_at = now() WHERE run_id = $1)
        INSERT INTO sync_pages (run_id, seq, cursor, sha256, size_bytes, body) VALUES ($1, $2, $3, $4, $5, $6)""",
        run_id,
        seq,
        cursor,
        hashlib.sha256(body).hexdigest(),
        len(body),
        body,
    )


async def page_ids(conn: asyncpg.Connection, run_id: uuid.UUID) -> list[int]:
    rows = await conn.fetch("SELECT id FROM sync_pages WHERE run_id = $1 ORDER BY seq, id", run_id)
    return [r["id"] for r in rows]


async def page_body(conn: asyncpg.Connection, page_id: int) -> bytes:
    """One page at a time: a million-entry snapshot is never all in memory."""
    body: bytes = await conn.fetchval("SELECT body FROM sync_pages WHERE id = $1", page_id)
    return body


async def copy_quarantine(conn: asyncpg.Connection, rows: bytes) -> None:
    """Quarantined records as COPY text rows of (run_id, line, raw, reason, rule), `raw` as JSON text."""
    await copy_text_rows(conn, "sync_quarantine", ("run_id", "line", "raw", "reason", "rule"), rows)


async def quarantine(conn: asyncpg.Connection, run_id: uuid.UUID, limit: int, after_line: int) -> list[Any]:
    rows: list[Any] = await conn.fetch(
        """SELECT run_id, line, raw, reason, rule FROM sync_quarantine
        WHERE run_id = $1 AND line > $2 ORDER BY line, id LIMIT $3""",
        run_id,
        after_line,
        limit,
    )
    return rows


# --- subscriptions ---------------------------------------------------------------------------------------

SUBSCRIPTION_COLUMNS = (
    "subscription_id, callback_url, subject_codes, subject_kinds, list_kinds, active, created_at"
)


async def insert_subscription(
    conn: asyncpg.Connection,
    *,
    client_id: uuid.UUID,
    callback_url: str,
    subject_codes: list[str] | None,
    subject_kinds: list[str] | None,
    list_kinds: list[str] | None,
    secret: str,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO subscriptions (subscription_id, client_id, callback_url, subject_codes, subject_kinds,
            list_kinds, secret)
        VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {SUBSCRIPTION_COLUMNS}""",
        uuid.uuid4(),
        client_id,
        callback_url,
        subject_codes,
        subject_kinds,
        list_kinds,
        secret,
    )
    return row


async def client_subscriptions(conn: asyncpg.Connection, client_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE client_id = $1 ORDER BY created_at, subscription_id",
        client_id,
    )
    return rows


async def deactivate_subscription(
    conn: asyncpg.Connection, client_id: uuid.UUID, subscription_id: uuid.UUID
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""UPDATE subscriptions SET active = false WHERE subscription_id = $1 AND client_id = $2
        RETURNING {SUBSCRIPTION_COLUMNS}""",
        subscription_id,
        client_id,
    )
    return row


async def subscription_deliveries(
    conn: asyncpg.Connection, client_id: uuid.UUID, subscription_id: uuid.UUID, state: str | None, limit: int
) -> list[asyncpg.Record] | None:
    """Outbox messages of one of the client's subscriptions (None: not the client's subscription)."""
    owned = await conn.fetchval(
        "SELECT true FROM subscriptions WHERE subscription_id = $1 AND client_id = $2",
        subscription_id,
        client_id,
    )
    if not owned:
        return None
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT message_id, state, attempts, last_error, created_at, delivered_at, next_attempt_at,
                  payload ->> 'event' AS event, payload -> 'entry' ->> 'entry_id' AS entry_id
        FROM outbox WHERE topic = 'subscription' AND subscription_id = $1 AND ($2::text IS NULL OR state = $2)
        ORDER BY id DESC LIMIT $3""",
        subscription_id,
        state,
        limit,
    )
    return rows


def iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(SHANGHAI).isoformat() if value is not None else None
