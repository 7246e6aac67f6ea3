"""The one outbox relay: delivers `feedback` (to the upstream platform) and `subscription` (signed callbacks).

How a batch goes (`deliver_due`), with no transaction and no row lock held while anything is sent:

    claim    one statement (its own short transaction): up to `limit` due pending rows, FOR UPDATE SKIP LOCKED,
             get a lease: attempts + 1, next_attempt_at = now() + ONECHECK_OUTBOX_LEASE_SECONDS. Committed.
    send     each row outside any transaction (bounded concurrency, explicit timeouts, no redirects, the
             resolved address checked: shared/outbound.py); every send ends before the lease does
    record   each outcome as soon as it is known, one short statement: delivered | retry later | dead,
             only if the row is still under this claim (same attempts and lease), so a late relay whose lease
             was taken over never overwrites the new holder's outcome

A relay that dies mid-batch (kill -9, cancellation, lost connection) leaves its rows leased: when the lease
runs out they are due again and another relay (or this one, restarted) sends them. Delivery is at least once;
receivers dedupe on the `Idempotency-Key` (feedback) or `event_id` (subscription), which is the row's
`message_id` on every retry. Replicas never send one message at once: a row is claimed by one relay (SKIP
LOCKED, then the lease makes it not due), and a send never outlives its lease (a row whose lease is too short
to send within is given back untried). `run_relay` runs one lane per topic, so a slow callback never holds up
feedback.

Retries: jittered exponential backoff from 1 s, capped by `outbox_max_retry_delay_seconds`; a 429/503
`Retry-After` is honoured up to that cap. Dead letters (kept, listed by `GET /v1/outbox`, re-queued by
`onecheck outbox replay`):

    subscription   after ONECHECK_OUTBOX_MAX_ATTEMPTS (20); at once when it can never succeed (no secret,
                   refused URL or address)
    feedback       after ONECHECK_FEEDBACK_MAX_ATTEMPTS (1000) while the upstream is only unreachable or
                   overloaded (network error, timeout, 408/425/429/5xx): at the capped delay that rides out
                   more than a day of downtime, and a dead letter is replayed, not lost; one the upstream
                   refuses (other 4xx, a refused address) after ONECHECK_OUTBOX_MAX_ATTEMPTS
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from fastapi import FastAPI
from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.engine import Database
from shared.logging import mask_text
from shared.outbound import GuardedTransport, RefusedAddress, check_outbound_url
from shared.settings import Settings

log = logging.getLogger("onecheck.outbox")

BATCH_SIZE = 100
SEND_CONCURRENCY = 10
# A whole send (connect, upload, answer) may not take longer than this, whatever the upstream drips.
SEND_DEADLINE_SECONDS = 30.0
HTTP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
METRICS_EVERY_SECONDS = 15.0
# A send starts only with this much of its lease left, and ends this long before the lease does.
MIN_SEND_SECONDS = 2.0
LEASE_MARGIN_SECONDS = 2.0
MAX_ERROR_CHARS = 500
USER_AGENT = "OneCheck-outbox-relay/1.0"

OUTBOX_LAG = Gauge(
    "onecheck_outbox_lag_seconds", "Age of the oldest pending outbox message (0: none pending)", ["topic"]
)
OUTBOX_PENDING = Gauge("onecheck_outbox_pending", "Outbox messages waiting for delivery", ["topic"])
OUTBOX_DEAD = Gauge("onecheck_outbox_dead_letters", "Outbox messages given up on (replayable)", ["topic"])
DELIVERIES = Counter(
    "onecheck_outbox_deliveries_total", "Outbox delivery attempts by outcome", ["topic", "result"]
)
TOPICS = ("feedback", "subscription")

# One statement, so the row locks last only as long as it: the lease (attempts + 1, not due until it ends)
# is what keeps other relays off the rows afterwards. `lease_until` identifies this claim.
CLAIM_SQL = """
WITH due AS (
    SELECT o.id, s.secret, s.active
    FROM outbox o
    LEFT JOIN subscriptions s ON s.subscription_id = o.subscription_id
    WHERE o.state = 'pending' AND o.next_attempt_at <= now()
      AND ($2::bool OR o.topic <> 'feedback') AND ($4::text IS NULL OR o.topic = $4::text)
    ORDER BY o.next_attempt_at, o.id
    LIMIT $1
    FOR UPDATE OF o SKIP LOCKED
)
UPDATE outbox AS o
SET attempts = o.attempts + 1, next_attempt_at = now() + make_interval(secs => $3::float8)
FROM due
WHERE o.id = due.id
RETURNING o.id, o.message_id, o.topic, o.target_url, o.subscription_id, o.payload, o.attempts,
          o.next_attempt_at AS lease_until, due.secret, due.active
"""

# Only while the row is still under our claim: a relay that lost its lease records nothing.
RECORD_SQL = """
UPDATE outbox
SET state = $2::text,
    delivered_at = CASE WHEN $2::text = 'delivered' THEN now() END,
    next_attempt_at = CASE WHEN $2::text = 'pending' THEN now() + make_interval(secs => $3::float8) ELSE now() END,
    last_error = $4::text
WHERE id = $1 AND state = 'pending' AND attempts = $5 AND next_attempt_at = $6
"""

# A claimed row we could not start in time goes back untried: due now, the attempt not counted.
RELEASE_SQL = """
UPDATE outbox SET attempts = attempts - 1, next_attempt_at = now()
WHERE id = $1 AND state = 'pending' AND attempts = $2 AND next_attempt_at = $3
"""

PENDING_STATS_SQL = """
SELECT topic, count(*) AS pending, extract(epoch FROM now() - min(created_at))::float8 AS oldest_age
FROM outbox WHERE state = 'pending' GROUP BY topic
"""
DEAD_STATS_SQL = "SELECT topic, count(*) AS dead FROM outbox WHERE state = 'dead' GROUP BY topic"
COUNTS_SQL = "SELECT topic, state, count(*) AS n FROM outbox GROUP BY topic, state"
DEAD_LETTERS_SQL = """
SELECT message_id, topic, target_url, subscription_id, attempts, last_error, created_at, next_attempt_at
FROM outbox WHERE state = 'dead' ORDER BY id DESC LIMIT $1
"""
REPLAY_SQL = """
UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = now()
WHERE state = 'dead'
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    id: int
    topic: str
    state: str  # delivered | pending | dead
    delay: float
    error: str | None


@dataclass(frozen=True, slots=True)
class _Failure:
    error: str
    transient: bool  # the receiver is down or busy, not refusing this message
    retry_after: float | None = None
    final: bool = False  # no retry can ever succeed (no secret, refused URL …)


def backoff_delay(attempts: int, cap: float, *, retry_after: float | None = None) -> float:
    """Seconds before the next try after `attempts` failed ones: 1, 2, 4 … jittered to 50–100 %, capped."""
    base = min(cap, 2.0 ** min(attempts - 1, 30))
    delay = base * (0.5 + random.random() / 2)  # jitter spreads a burst of retries after an outage
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, cap)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`X-OneCheck-Signature`: `sha256=` + hex HMAC-SHA256 of `timestamp + "." + raw body`, keyed with the secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return "sha256=" + digest


def subscription_body(message_id: uuid.UUID, payload: dict[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed): the payload, with `event_id` the message id unless it has one."""
    return json.dumps(
        {"event_id": str(message_id), **payload}, ensure_ascii=False, separators=(",", ":")
    ).encode()


def _error_text(text: str) -> str:
    # Upstream answers may echo the payload: keep errors short and without personal id numbers.
    return mask_text(text.replace("\n", " ").strip())[:MAX_ERROR_CHARS]


def _http_failure(response: httpx.Response) -> _Failure:
    status = response.status_code
    transient = status in (408, 425, 429) or status >= 500
    retry_after = parse_retry_after(response.headers.get("retry-after")) if status in (429, 503) else None
    location = " (redirects are not followed)" if 300 <= status < 400 else ""
    snippet = _error_text(response.text[:200]) if response.content else ""
    return _Failure(f"HTTP {status}{location}: {snippet}".rstrip(": "), transient, retry_after)


async def _post(
    http: httpx.AsyncClient, url: str, *, content: bytes, headers: dict[str, str], refused_is_final: bool
) -> _Failure | None:
    try:
        async with asyncio.timeout(SEND_DEADLINE_SECONDS):
            response = await http.post(
                url,
                content=content,
                headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
                timeout=HTTP_TIMEOUT,
                follow_redirects=False,
            )
    except RefusedAddress as exc:  # the host resolves to a link-local / metadata / loopback address
        return _Failure(_error_text(str(exc)), transient=False, final=refused_is_final)
    except (httpx.HTTPError, TimeoutError) as exc:
        # Includes a timeout after the receiver accepted: the retry carries the same key, so it dedupes.
        return _Failure(_error_text(f"{type(exc).__name__}: {exc}"), transient=True)
    if 200 <= response.status_code < 300:
        return None
    return _http_failure(response)


async def _send(row: asyncpg.Record, settings: Settings, http: httpx.AsyncClient) -> _Failure | None:
    message_id: uuid.UUID = row["message_id"]
    payload: dict[str, Any] = row["payload"]
    if row["topic"] == "feedback":
        base = settings.feedback_upstream_url
        if not base:  # not claimed without a URL; kept for a URL removed mid-batch
            return _Failure("ONECHECK_FEEDBACK_UPSTREAM_URL is not set", transient=True)
        headers = {"Idempotency-Key": str(message_id)}
        if settings.feedback_upstream_token is not None:
            headers["Authorization"] = "Bearer " + settings.feedback_upstream_token.get_secret_value()
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        return await _post(http, base + "/feedback", content=body, headers=headers, refused_is_final=False)
    url: str | None = row["target_url"]
    if not url:
        return _Failure("subscription message without a target_url", transient=False, final=True)
    if row["secret"] is None or not row["active"]:
        return _Failure("subscription deleted or inactive: nothing to sign with", transient=False, final=True)
    try:
        check_outbound_url(url, allow_loopback=settings.outbound_allow_loopback)
    except ValueError as exc:
        return _Failure(f"refused callback URL: {exc}", transient=False, final=True)
    body = subscription_body(message_id, payload)
    timestamp = str(int(time.time()))
    headers = {
        "X-OneCheck-Timestamp": timestamp,
        "X-OneCheck-Signature": sign(row["secret"], timestamp, body),
        "X-OneCheck-Event-Id": str(message_id),
    }
    return await _post(http, url, content=body, headers=headers, refused_is_final=True)


def max_attempts(topic: str, failure: _Failure, settings: Settings) -> int:
    """Attempts before a message is dead: feedback rides out an upstream that is down (the contract loses
    nothing), but not one that refuses it; subscription callbacks have the contract's OUTBOX_MAX_ATTEMPTS."""
    if topic != "feedback":
        return settings.outbox_max_attempts
    if failure.transient:
        return settings.feedback_max_attempts
    return min(settings.outbox_max_attempts, settings.feedback_max_attempts)


def _outcome(row: asyncpg.Record, failure: _Failure | None, settings: Settings) -> Outcome:
    if failure is None:
        return Outcome(row["id"], row["topic"], "delivered", 0.0, None)
    attempts = row["attempts"]  # this one included: the claim counted it
    dead = failure.final or attempts >= max_attempts(row["topic"], failure, settings)
    delay = backoff_delay(attempts, settings.outbox_max_retry_delay_seconds, retry_after=failure.retry_after)
    return Outcome(row["id"], row["topic"], "dead" if dead else "pending", delay, failure.error)


async def claim(
    conn: asyncpg.Connection, settings: Settings, *, limit: int, topic: str | None = None
) -> list[asyncpg.Record]:
    """Lease up to `limit` due messages (committed at once unless `conn` is in a transaction)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        CLAIM_SQL, limit, bool(settings.feedback_upstream_url), settings.outbox_lease_seconds, topic
    )
    return rows


async def _record(db: Database, row: asyncpg.Record, outcome: Outcome) -> None:
    try:
        async with db.connection() as conn:
            await conn.execute(
                RECORD_SQL,
                row["id"],
                outcome.state,
                outcome.delay,
                outcome.error,
                row["attempts"],
                row["lease_until"],
            )
    except Exception as exc:  # the lease runs out and the message goes again: at least once holds
        log.warning("outbox message %s: outcome not recorded (%s); resent after its lease", row["id"], exc)


async def _release(db: Database, row: asyncpg.Record) -> None:
    try:
        async with db.connection() as conn:
            await conn.execute(RELEASE_SQL, row["id"], row["attempts"], row["lease_until"])
    except Exception as exc:
        log.warning("outbox message %s: not given back (%s); due after its lease", row["id"], exc)


async def deliver_due(
    db: Database, settings: Settings, http_client: httpx.AsyncClient, *, limit: int, topic: str | None = None
) -> int:
    """Claim up to `limit` due messages (of `topic`, or both), send each once and record its outcome.
    Returns how many were attempted (0: nothing was due)."""
    started = time.monotonic()  # before the claim: our deadline is never later than the database's lease
    async with db.connection() as conn:
        rows = await claim(conn, settings, limit=limit, topic=topic)
    if not rows:
        return 0
    lease_ends = started + settings.outbox_lease_seconds - LEASE_MARGIN_SECONDS
    gate = asyncio.Semaphore(SEND_CONCURRENCY)

    async def attempt(row: asyncpg.Record) -> Outcome | None:
        async with gate:
            budget = min(SEND_DEADLINE_SECONDS, lease_ends - time.monotonic())
            if budget < MIN_SEND_SECONDS:
                await _release(db, row)
                return None
            try:
                async with asyncio.timeout(budget):
                    failure = await _send(row, settings, http_client)
            except TimeoutError:
                failure = _Failure("the send did not finish within the relay's lease", transient=True)
            except Exception as exc:  # a message we cannot even send must not block the batch forever
                failure = _Failure(_error_text(f"{type(exc).__name__}: {exc}"), transient=False)
        outcome = _outcome(row, failure, settings)
        await _record(db, row, outcome)
        result = {"delivered": "delivered", "dead": "dead"}.get(outcome.state, "retry")
        DELIVERIES.labels(outcome.topic, result).inc()
        if outcome.state == "dead":
            log.warning("outbox message %s (%s) is dead: %s", outcome.id, outcome.topic, outcome.error)
        return outcome

    outcomes = await asyncio.gather(*(attempt(row) for row in rows))
    return sum(1 for o in outcomes if o is not None)


async def refresh_metrics(db: Database) -> None:
    """Set the lag, pending and dead-letter gauges (both partial indexes keep these counts cheap)."""
    async with db.connection() as conn:
        pending = {r["topic"]: r for r in await conn.fetch(PENDING_STATS_SQL)}
        dead = {r["topic"]: r["dead"] for r in await conn.fetch(DEAD_STATS_SQL)}
    for topic in TOPICS:
        row = pending.get(topic)
        OUTBOX_PENDING.labels(topic).set(row["pending"] if row else 0)
        OUTBOX_LAG.labels(topic).set(max(0.0, row["oldest_age"]) if row else 0.0)
        OUTBOX_DEAD.labels(topic).set(dead.get(topic, 0))


def _without_query(url: str | None) -> str | None:
    # Callback URLs may carry tokens in their query string; operators need the endpoint, not the token.
    if url is None:
        return None
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


async def outbox_status(conn: asyncpg.Connection, *, dead_limit: int) -> dict[str, Any]:
    """What `GET /v1/outbox` shows: counts by topic and state, lag, and the latest dead letters."""
    counts = {t: {"pending": 0, "delivered": 0, "dead": 0} for t in TOPICS}
    for r in await conn.fetch(COUNTS_SQL):
        counts.setdefault(r["topic"], {"pending": 0, "delivered": 0, "dead": 0})[r["state"]] = r["n"]
    ages = {r["topic"]: max(0.0, r["oldest_age"]) for r in await conn.fetch(PENDING_STATS_SQL)}
    dead = await conn.fetch(DEAD_LETTERS_SQL, dead_limit)
    return {
        "topics": [
            {"topic": topic, **by_state, "oldest_pending_age_seconds": ages.get(topic)}
            for topic, by_state in counts.items()
        ],
        "oldest_pending_age_seconds": max(ages.values()) if ages else None,
        "dead_letters": [
            {
                "message_id": str(r["message_id"]),
                "topic": r["topic"],
                "target_url": _without_query(r["target_url"]),
                "subscription_id": str(r["subscription_id"]) if r["subscription_id"] else None,
                "attempts": r["attempts"],
                "last_error": r["last_error"],
                "created_at": r["created_at"],
                "next_attempt_at": r["next_attempt_at"],
            }
            for r in dead
        ],
    }


async def replay_dead_letters(session: AsyncSession) -> int:
    """Re-queue every dead letter (pending, attempts 0, due now); `last_error` stays for the record.

    Does not commit: the caller's unit of work does."""
    result = await session.execute(text(REPLAY_SQL))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def replay_dead_letters_conn(conn: asyncpg.Connection) -> int:
    """`replay_dead_letters` on the raw asyncpg path (autocommit unless in a transaction)."""
    status: str = await conn.execute(REPLAY_SQL)
    return int(status.rsplit(" ", 1)[-1])


def make_http_client(settings: Settings) -> httpx.AsyncClient:
    """The relay's client: explicit timeouts, no redirects, no proxies from the environment, and every
    connection to an address shared/outbound.py allows (checked after resolution, at connect time)."""
    limits = httpx.Limits(max_connections=SEND_CONCURRENCY * 4, max_keepalive_connections=SEND_CONCURRENCY)
    return httpx.AsyncClient(
        timeout=HTTP_TIMEOUT,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        transport=GuardedTransport(allow_loopback=settings.outbound_allow_loopback, limits=limits),
        trust_env=False,
    )


async def _lane(
    db: Database, settings: Settings, http_client: httpx.AsyncClient, topic: str, batch_size: int
) -> None:
    """Deliver one topic forever: a full batch goes on at once, otherwise wait `outbox_poll_seconds`."""
    last_metrics = 0.0
    failures = 0
    while True:
        attempted = 0
        try:
            attempted = await deliver_due(db, settings, http_client, limit=batch_size, topic=topic)
            if topic == "feedback" and time.monotonic() - last_metrics >= METRICS_EVERY_SECONDS:
                await refresh_metrics(db)
                last_metrics = time.monotonic()
            failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is down or restarting: back off, never die
            failures += 1
            log.warning("outbox relay pass (%s) failed (%s); retrying", topic, type(exc).__name__)
        if attempted < batch_size:
            await asyncio.sleep(settings.outbox_poll_seconds * min(2**failures, 30))


async def run_relay(
    db: Database, settings: Settings, http_client: httpx.AsyncClient, *, batch_size: int = BATCH_SIZE
) -> None:
    """Deliver forever, one lane per topic: callbacks to slow business systems never delay feedback."""
    async with asyncio.TaskGroup() as lanes:
        for topic in TOPICS:
            lanes.create_task(
                _lane(db, settings, http_client, topic, batch_size), name=f"outbox-relay:{topic}"
            )


class _RelayState:
    running = False


@contextlib.asynccontextmanager
async def relay_hook(app: FastAPI) -> AsyncIterator[None]:
    """The `ServiceSpec` hook: one relay loop per process, when `outbox_relay_enabled`.

    Several services of one process (`onecheck serve`) may list this hook; only the first starts a loop.
    Several processes or replicas each run one; SKIP LOCKED keeps them off each other's rows."""
    settings: Settings = app.state.settings
    if not settings.outbox_relay_enabled or _RelayState.running:
        yield
        return
    _RelayState.running = True
    http_client = make_http_client(settings)
    task = asyncio.create_task(run_relay(app.state.db, settings, http_client), name="outbox-relay")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await http_client.aclose()
        _RelayState.running = False
