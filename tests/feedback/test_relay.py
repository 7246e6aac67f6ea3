"""The outbox relay: forwarding feedback upstream and signed subscription callbacks (RELIABILITY C3, R1, R5)."""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx
from prometheus_client import REGISTRY

from shared import outbound
from shared.db.engine import Database
from shared.outbox import relay
from shared.outbox.relay import (
    backoff_delay,
    deliver_due,
    parse_retry_after,
    refresh_metrics,
    replay_dead_letters,
)
from shared.settings import Settings
from tests.builders import make_client
from tests.conftest import AppFactory, api_client
from tests.feedback.builders import (
    PERSON_CODE,
    Match,
    add_outbox,
    add_subscription,
    make_check,
    make_due,
    outbox_rows,
)
from tests.feedback.conftest import UPSTREAM, Caller

FEEDBACK_URL = UPSTREAM + "/feedback"
CALLBACK = "https://receiver.test/onecheck/hook"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


async def _one_feedback(db: Database, caller: Caller) -> uuid.UUID:
    """A check with M01 and feedback on it through the API; returns the outbox message id."""
    check_id = await make_check(db, client_id=caller.client_id, matches=[Match()], measures=["M01"])
    response = await caller.api.post(
        f"/v1/checks/{check_id}/feedback",
        json={"decision": "approved", "measures": [{"code": "M01", "status": "applied"}], "operator": "c-1"},
    )
    assert response.status_code == 200, response.text
    [row] = await outbox_rows(db)
    message_id: uuid.UUID = row["message_id"]
    return message_id


async def _row(db: Database, message_id: uuid.UUID) -> dict[str, Any]:
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT *, extract(epoch FROM next_attempt_at - now())::float8 AS wait FROM outbox WHERE message_id = $1",
            message_id,
        )
    assert row is not None
    return dict(row)


# ---------------------------------------------------------------------------------------------- feedback


async def test_feedback_is_posted_with_bearer_and_a_stable_idempotency_key(
    db: Database, caller: Caller, upstream_settings: Settings, http: httpx.AsyncClient, mock: respx.MockRouter
) -> None:
    message_id = await _one_feedback(db, caller)
    route = mock.post(FEEDBACK_URL).mock(return_value=httpx.Response(202, json={"ok": True}))
    assert await deliver_due(db, upstream_settings, http, limit=10) == 1
    request = route.calls.last.request
    assert request.headers["authorization"] == "Bearer upstream-token"
    assert request.headers["idempotency-key"] == str(message_id)
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.content)
    assert set(body) >= {
        "check_id",
        "item_code",
        "department",
        "subject_code",
        "decision",
        "measures",
        "reported_at",
    }
    row = await _row(db, message_id)
    assert body == row["payload"]
    assert (row["state"], row["attempts"], row["last_error"]) == ("delivered", 1, None)
    assert row["delivered_at"] is not None
    assert await deliver_due(db, upstream_settings, http, limit=10) == 0  # nothing sent twice


async def test_upstream_down_loses_nothing_and_delivers_when_back(
    db: Database, caller: Caller, upstream_settings: Settings, http: httpx.AsyncClient, mock: respx.MockRouter
) -> None:
    message_id = await _one_feedback(db, caller)
    route = mock.post(FEEDBACK_URL).mock(side_effect=httpx.ConnectError("connection refused"))
    for attempt in range(1, 8):  # well past outbox_max_attempts (3): the contract keeps feedback coming
        assert await deliver_due(db, upstream_settings, http, limit=10) == 1
        row = await _row(db, message_id)
        assert (row["state"], row["attempts"]) == ("pending", attempt)
        assert row["last_error"].startswith("ConnectError")
        assert 0 < row["wait"] <= upstream_settings.outbox_max_retry_delay_seconds
        assert await deliver_due(db, upstream_settings, http, limit=10) == 0  # not due yet
        await make_due(db)
    route.mock(return_value=httpx.Response(200))
    assert await deliver_due(db, upstream_settings, http, limit=10) == 1
    assert (await _row(db, message_id))["state"] == "delivered"
    assert {c.request.headers["idempotency-key"] for c in route.calls} == {str(message_id)}


async def test_5xx_backs_off_exponentially_with_jitter(
    db: Database, caller: Caller, upstream_settings: Settings, http: httpx.AsyncClient, mock: respx.MockRouter
) -> None:
    message_id = await _one_feedback(db, caller)
    mock.post(FEEDBACK_URL).mock(return_value=httpx.Response(502, text="Bad Gateway"))
    waits = []
    for _ in range(4):
        await deliver_due(db, upstream_settings, http, limit=10)
        row = await _row(db, message_id)
        assert row["last_error"] == "HTTP 502: Bad Gateway"
        waits.append(row["wait"])
        await make_due(db)
    for attempt, wait in enumerate(waits, start=1):
        assert 2 ** (attempt - 1) * 0.5 <= wait <= 2 ** (attempt - 1) + 1e-6


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        ("120", 120, 120),
        ("3600", 300, 300),  # capped by outbox_max_retry_delay_seconds
        (None, 0.5, 1.0),
        ("soon", 0.5, 1.0),  # unreadable: plain backoff
    ],
)
async def test_429_retry_after_is_respected_up_to_the_cap(
    db: Database,
    caller: Caller,
    upstream_settings: Settings,
    http: httpx.AsyncClient,
    mock: respx.MockRouter,
    retry_after: str | None,
    low: float,
    high: float,
) -> None:
    message_id = await _one_feedback(db, caller)
    headers = {"Retry-After": retry_after} if retry_after else {}
    mock.post(FEEDBACK_URL).mock(return_value=httpx.Response(429, headers=headers))
    await deliver_due(db, upstream_settings, http, limit=10)
    row = await _row(db, message_id)
    assert row["state"] == "pending"
    assert low - 1e-6 <= row["wait"] <= high + 1e-6


async def test_a_timeout_after_acceptance_is_redelivered_with_the_same_key(
    db: Database, caller: Caller, upstream_settings: Settings, http: httpx.AsyncClient, mock: respx.MockRouter
) -> None:
    message_id = await _one_feedback(db, caller)
    accepted: dict[str, int] = {}
    calls: list[str] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        key = request.headers["idempotency-key"]
        calls.append(key)
        first = key not in accepted
        accepted[key] = accepted.get(key, 0) + (1 if first else 0)  # the upstream dedupes on the key
        if first:
            raise httpx.ReadTimeout("accepted, but the answer never came", request=request)
        return httpx.Response(200, json={"duplicate": True})

    mock.post(FEEDBACK_URL).mock(side_effect=upstream)
    await deliver_due(db, upstream_settings, http, limit=10)
    row = await _row(db, message_id)
    assert (row["state"], row["attempts"]) == ("pending", 1)
    assert row["last_error"].startswith("ReadTimeout")
    await make_due(db)
    await deliver_due(db, upstream_settings, http, limit=10)
    assert (await _row(db, message_id))["state"] == "delivered"
    assert calls == [str(message_id), str(message_id)]
    assert accepted == {str(message_id): 1}


async def test_a_refused_feedback_is_dead_after_max_attempts(
    db: Database, caller: Caller, upstream_settings: Settings, http: httpx.AsyncClient, mock: respx.MockRouter
) -> None:
    message_id = await _one_feedback(db, caller)
    route = mock.post(FEEDBACK_URL).mock(
        return_value=httpx.Response(422, json={"error": f"unknown subject {PERSON_CODE}"})
    )
    for _ in range(upstream_settings.outbox_max_attempts):
        await make_due(db)
        await deliver_due(db, upstream_settings, http, limit=10)
    row = await _row(db, message_id)
    assert (row["state"], row["attempts"]) == ("dead", 3)
    assert row["last_error"].startswith("HTTP 422")
    assert PERSON_CODE not in row["last_error"]  # upstream answers may echo personal ids: masked
    await make_due(db)
    assert await deliver_due(db, upstream_settings, http, limit=10) == 0
    assert route.call_count == 3


async def test_redirects_are_not_followed(
    db: Database, caller: Caller, upstream_settings: Settings, http: httpx.AsyncClient, mock: respx.MockRouter
) -> None:
    message_id = await _one_feedback(db, caller)
    mock.post(FEEDBACK_URL).mock(
        return_value=httpx.Response(307, headers={"Location": "http://169.254.169.254/latest"})
    )
    elsewhere = mock.route(host="169.254.169.254").mock(return_value=httpx.Response(200))
    async with httpx.AsyncClient(follow_redirects=True) as following:  # even a client that would follow
        await deliver_due(db, upstream_settings, following, limit=10)
    row = await _row(db, message_id)
    assert row["state"] == "pending"
    assert "redirects are not followed" in row["last_error"]
    assert not elsewhere.called


async def test_without_an_upstream_url_feedback_waits(
    db: Database,
    caller: Caller,
    test_settings: Settings,
    upstream_settings: Settings,
    http: httpx.AsyncClient,
    mock: respx.MockRouter,
) -> None:
    message_id = await _one_feedback(db, caller)
    assert test_settings.feedback_upstream_url is None
    assert await deliver_due(db, test_settings, http, limit=10) == 0
    row = await _row(db, message_id)
    assert (row["state"], row["attempts"]) == ("pending", 0)
    mock.post(FEEDBACK_URL).mock(return_value=httpx.Response(200))
    assert await deliver_due(db, upstream_settings, http, limit=10) == 1


# ----------------------------------------------------------------------------------------- subscriptions


async def test_subscription_callbacks_are_signed(
    db: Database, caller: Caller, upstream_settings: Settings, http: httpx.AsyncClient, mock: respx.MockRouter
) -> None:
    secret = "whsec_" + uuid.uuid4().hex
    subscription_id = await add_subscription(
        db, client_id=caller.client_id, callback_url=CALLBACK, secret=secret
    )
    payload = {
        "event": "published",
        "occurred_at": "2026-11-23T10:00:00+08:00",
        "entry": {"entry_id": str(uuid.uuid4()), "subject": {"name": "北京某建设工程有限公司"}},
    }
    message_id = await add_outbox(
        db, topic="subscription", payload=payload, target_url=CALLBACK, subscription_id=subscription_id
    )
    route = mock.post(CALLBACK).mock(return_value=httpx.Response(204))
    before = int(dt.datetime.now(dt.UTC).timestamp())
    assert await deliver_due(db, upstream_settings, http, limit=10) == 1
    request = route.calls.last.request
    timestamp = request.headers["x-onecheck-timestamp"]
    assert before <= int(timestamp) <= before + 5
    # An independent check, as a receiver would write it.
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + request.content, hashlib.sha256
    ).hexdigest()
    assert request.headers["x-onecheck-signature"] == "sha256=" + expected
    assert json.loads(request.content) == {"event_id": str(message_id), **payload}
    assert "authorization" not in request.headers  # the upstream token never goes to a callback
    assert (await _row(db, message_id))["state"] == "delivered"


async def test_subscription_is_dead_after_max_attempts_then_replayed(
    db: Database,
    caller: Caller,
    upstream_settings: Settings,
    http: httpx.AsyncClient,
    mock: respx.MockRouter,
    app_factory: AppFactory,
) -> None:
    subscription_id = await add_subscription(
        db, client_id=caller.client_id, callback_url=CALLBACK, secret="s"
    )
    message_id = await add_outbox(
        db,
        topic="subscription",
        payload={"event": "updated"},
        target_url=CALLBACK + "?token=abc",
        subscription_id=subscription_id,
    )
    route = mock.post(CALLBACK).mock(return_value=httpx.Response(500, text="boom"))
    for attempt in range(1, upstream_settings.outbox_max_attempts + 1):
        await deliver_due(db, upstream_settings, http, limit=10)
        row = await _row(db, message_id)
        assert row["attempts"] == attempt
        assert row["state"] == ("dead" if attempt == upstream_settings.outbox_max_attempts else "pending")
        await make_due(db)
    assert await deliver_due(db, upstream_settings, http, limit=10) == 0

    _, admin_key = await make_client(db, scopes="sync:admin")
    async with api_client(app_factory(db, "feedback"), admin_key) as admin:
        status = (await admin.get("/v1/outbox")).json()
        assert {
            "topic": "subscription",
            "pending": 0,
            "delivered": 0,
            "dead": 1,
            "oldest_pending_age_seconds": None,
        } in status["topics"]
        [dead] = status["dead_letters"]
        assert dead["message_id"] == str(message_id)
        assert dead["last_error"] == "HTTP 500: boom"
        assert dead["attempts"] == 3
        assert dead["target_url"] == CALLBACK  # without its query string
        replayed = await admin.post("/v1/outbox/replay")
        assert replayed.json() == {"requeued": 1}
    row = await _row(db, message_id)
    assert (row["state"], row["attempts"]) == ("pending", 0)
    route.mock(return_value=httpx.Response(200))
    assert await deliver_due(db, upstream_settings, http, limit=10) == 1
    assert (await _row(db, message_id))["state"] == "delivered"


async def test_replay_dead_letters_for_the_cli(
    db: Database, caller: Caller, upstream_settings: Settings
) -> None:
    ids = [await add_outbox(db) for _ in range(3)]
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE outbox SET state = 'dead', attempts = 20, last_error = 'x' WHERE message_id = ANY($1)",
            ids[:2],
        )
    async with db.session() as session:
        assert await replay_dead_letters(session) == 2
        await session.commit()
    for message_id in ids[:2]:
        row = await _row(db, message_id)
        assert (row["state"], row["attempts"], row["last_error"]) == ("pending", 0, "x")
        assert row["wait"] <= 0


async def test_undeliverable_subscriptions_are_dead_at_once(
    db: Database, caller: Caller, upstream_settings: Settings, http: httpx.AsyncClient, mock: respx.MockRouter
) -> None:
    inactive = await add_subscription(
        db, client_id=caller.client_id, callback_url=CALLBACK, secret="s", active=False
    )
    gone = await add_outbox(db, topic="subscription", target_url=CALLBACK, subscription_id=inactive)
    metadata = await add_subscription(db, client_id=caller.client_id, callback_url=CALLBACK, secret="s")
    refused = await add_outbox(
        db,
        topic="subscription",
        target_url="http://169.254.169.254/latest/meta-data",
        subscription_id=metadata,
    )
    route = mock.post(CALLBACK).mock(return_value=httpx.Response(200))
    assert await deliver_due(db, upstream_settings, http, limit=10) == 2
    assert not route.called
    assert (await _row(db, gone))["state"] == "dead"
    assert "inactive" in (await _row(db, gone))["last_error"]
    assert (await _row(db, refused))["state"] == "dead"
    assert "refused" in (await _row(db, refused))["last_error"]


# -------------------------------------------------------------------------------------------- operations


async def test_outbox_endpoint_needs_sync_admin(db: Database, app_factory: AppFactory) -> None:
    _, key = await make_client(db, scopes="feedback,lists:read,stats:read")
    async with api_client(app_factory(db, "feedback"), key) as api:
        assert (await api.get("/v1/outbox")).status_code == 403
        assert (await api.post("/v1/outbox/replay")).status_code == 403
    async with api_client(app_factory(db, "feedback")) as api:
        assert (await api.get("/v1/outbox")).status_code == 401


async def test_lag_and_dead_letters_are_metrics(db: Database, app_factory: AppFactory) -> None:
    await add_outbox(db)
    dead = await add_outbox(db, topic="subscription", target_url=CALLBACK)
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE outbox SET created_at = now() - interval '90 seconds' WHERE topic = 'feedback'"
        )
        await conn.execute("UPDATE outbox SET state = 'dead' WHERE message_id = $1", dead)
    await refresh_metrics(db)

    def sample(name: str, topic: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"topic": topic})

    assert sample("onecheck_outbox_lag_seconds", "feedback") == pytest.approx(90, abs=1)
    assert sample("onecheck_outbox_pending", "feedback") == 1
    assert sample("onecheck_outbox_dead_letters", "subscription") == 1
    assert sample("onecheck_outbox_lag_seconds", "subscription") == 0
    async with api_client(app_factory(db, "feedback")) as api:
        text = (await api.get("/metrics")).text
    assert 'onecheck_outbox_lag_seconds{topic="feedback"}' in text
    assert 'onecheck_outbox_dead_letters{topic="subscription"} 1.0' in text


def test_backoff_grows_jittered_and_capped() -> None:
    for attempts in range(1, 40):
        for _ in range(20):
            delay = backoff_delay(attempts, 300.0)
            base = min(300.0, 2.0 ** (attempts - 1))
            assert base / 2 <= delay <= base
    assert backoff_delay(1, 300.0, retry_after=42) == 42
    assert backoff_delay(1, 300.0, retry_after=4200) == 300


def test_retry_after_as_seconds_or_http_date() -> None:
    assert parse_retry_after("30") == 30
    now = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
    later = email.utils.format_datetime(now + dt.timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(90)
    assert parse_retry_after(email.utils.format_datetime(now, usegmt=True), now=now.timestamp() + 5) == 0
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("tomorrow-ish") is None


def test_signature_matches_the_contract_formula() -> None:
    body = relay.subscription_body(uuid.UUID(int=1), {"event": "expired"})
    assert json.loads(body)["event_id"] == str(uuid.UUID(int=1))
    digest = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert relay.sign("k", "1700000000", body) == "sha256=" + digest


async def test_a_message_that_cannot_be_sent_does_not_block_the_others(
    db: Database,
    caller: Caller,
    upstream_settings: Settings,
    http: httpx.AsyncClient,
    mock: respx.MockRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    poison = await add_outbox(db, payload={"check_id": "poison"})
    good = await add_outbox(db, payload={"check_id": "good"})
    real_send = relay._send

    async def send(row: Any, settings: Settings, client: httpx.AsyncClient) -> Any:
        if row["payload"].get("check_id") == "poison":
            raise TypeError("not serialisable")
        return await real_send(row, settings, client)

    monkeypatch.setattr(relay, "_send", send)
    mock.post(FEEDBACK_URL).mock(return_value=httpx.Response(200))
    assert await deliver_due(db, upstream_settings, http, limit=10) == 2
    assert (await _row(db, good))["state"] == "delivered"
    bad = await _row(db, poison)
    assert (bad["state"], bad["attempts"]) == ("pending", 1)
    assert bad["last_error"] == "TypeError: not serialisable"


# ------------------------------------------------------------------------------------------------- leases


async def test_a_claimed_message_is_leased_and_a_late_relay_records_nothing(
    db: Database, caller: Caller, upstream_settings: Settings
) -> None:
    message_id = await add_outbox(db)
    async with db.connection() as conn:
        [first] = await relay.claim(conn, upstream_settings, limit=10)
    row = await _row(db, message_id)
    assert (row["state"], row["attempts"]) == ("pending", 1)  # counted at the claim: a crash mid-send counts
    assert row["wait"] == pytest.approx(upstream_settings.outbox_lease_seconds, abs=1)
    async with db.connection() as conn:
        assert await relay.claim(conn, upstream_settings, limit=10) == []  # leased: nobody else takes it
    await make_due(db)  # the lease ran out (its relay died): another relay takes the message over
    async with db.connection() as conn:
        [second] = await relay.claim(conn, upstream_settings, limit=10)
    assert second["attempts"] == 2
    delivered = relay.Outcome(first["id"], "feedback", "delivered", 0.0, None)
    await relay._record(db, first, delivered)  # the first relay wakes up late
    assert ((await _row(db, message_id))["state"], (await _row(db, message_id))["attempts"]) == ("pending", 2)
    await relay._record(db, second, delivered)
    assert (await _row(db, message_id))["state"] == "delivered"


async def test_a_message_the_lease_has_no_time_left_for_goes_back_untried(
    db: Database,
    caller: Caller,
    upstream_settings: Settings,
    http: httpx.AsyncClient,
    mock: respx.MockRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message_id = await _one_feedback(db, caller)
    monkeypatch.setattr(relay, "MIN_SEND_SECONDS", upstream_settings.outbox_lease_seconds)
    route = mock.post(FEEDBACK_URL).mock(return_value=httpx.Response(200))
    assert await deliver_due(db, upstream_settings, http, limit=10) == 0
    assert not route.called
    row = await _row(db, message_id)
    assert (row["state"], row["attempts"], row["last_error"]) == ("pending", 0, None)
    assert row["wait"] <= 0  # due again at once


# ----------------------------------------------------------------------------------------- dead letters


async def test_feedback_is_dead_after_feedback_max_attempts_then_replayed(
    db: Database, caller: Caller, upstream_settings: Settings, http: httpx.AsyncClient, mock: respx.MockRouter
) -> None:
    """ONECHECK_FEEDBACK_MAX_ATTEMPTS bounds the retries of an upstream that stays down; nothing is lost:
    the dead letter is replayed and goes with the same Idempotency-Key."""
    settings = upstream_settings.model_copy(update={"feedback_max_attempts": 5})  # outbox_max_attempts: 3
    message_id = await _one_feedback(db, caller)
    route = mock.post(FEEDBACK_URL).mock(return_value=httpx.Response(503, text="down for maintenance"))
    for attempt in range(1, 6):
        assert await deliver_due(db, settings, http, limit=10) == 1
        row = await _row(db, message_id)
        assert (row["state"], row["attempts"]) == ("dead" if attempt == 5 else "pending", attempt)
        await make_due(db)
    assert await deliver_due(db, settings, http, limit=10) == 0
    async with db.session() as session:
        assert await replay_dead_letters(session) == 1
        await session.commit()
    route.mock(return_value=httpx.Response(200))
    assert await deliver_due(db, settings, http, limit=10) == 1
    assert (await _row(db, message_id))["state"] == "delivered"
    assert route.call_count == 6
    assert {c.request.headers["idempotency-key"] for c in route.calls} == {str(message_id)}


def test_which_limit_applies() -> None:
    settings = Settings(outbox_max_attempts=20, feedback_max_attempts=1000)
    down = relay._Failure("HTTP 503", transient=True)
    refused = relay._Failure("HTTP 422", transient=False)
    assert relay.max_attempts("feedback", down, settings) == 1000
    assert relay.max_attempts("feedback", refused, settings) == 20
    assert relay.max_attempts("subscription", down, settings) == 20
    assert relay.max_attempts("subscription", refused, settings) == 20


# ------------------------------------------------------------------------------------ connect-time guard


@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names that pass every static check but resolve to the metadata address."""
    asked: list[str] = []

    async def dns(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["169.254.169.254"]

    monkeypatch.setattr(outbound, "resolve", dns)
    return asked


async def test_a_feedback_upstream_resolving_to_metadata_is_refused_at_connect(
    db: Database, caller: Caller, upstream_settings: Settings, rebinding_dns: list[str]
) -> None:
    message_id = await _one_feedback(db, caller)
    async with relay.make_http_client(upstream_settings) as http:  # the relay's own, guarded client
        assert await deliver_due(db, upstream_settings, http, limit=10) == 1
    row = await _row(db, message_id)
    assert rebinding_dns == ["upstream.test"]
    assert (
        row["state"] == "pending"
    )  # the operator's URL: kept (and dead after OUTBOX_MAX_ATTEMPTS), not lost
    assert row["last_error"] == (
        "refused: 'upstream.test' resolves to 169.254.169.254, a cloud metadata address"
    )


async def test_a_callback_resolving_to_metadata_is_dead_at_once(
    db: Database, caller: Caller, upstream_settings: Settings, rebinding_dns: list[str]
) -> None:
    subscription_id = await add_subscription(
        db, client_id=caller.client_id, callback_url=CALLBACK, secret="s"
    )
    message_id = await add_outbox(
        db,
        topic="subscription",
        payload={"event": "published"},
        target_url=CALLBACK,
        subscription_id=subscription_id,
    )
    async with relay.make_http_client(upstream_settings) as http:
        assert await deliver_due(db, upstream_settings, http, limit=10) == 1
    row = await _row(db, message_id)
    assert rebinding_dns == ["receiver.test"]
    assert (row["state"], row["attempts"]) == ("dead", 1)
    assert "resolves to 169.254.169.254" in row["last_error"]


async def test_a_callback_url_in_a_bypass_spelling_is_dead_at_once(
    db: Database, caller: Caller, upstream_settings: Settings, http: httpx.AsyncClient, mock: respx.MockRouter
) -> None:
    subscription_id = await add_subscription(
        db, client_id=caller.client_id, callback_url=CALLBACK, secret="s"
    )
    for url in ("http://2852039166/x", "http://0xa9fea9fe/x", "http://[::ffff:169.254.169.254]/x"):
        await add_outbox(db, topic="subscription", target_url=url, subscription_id=subscription_id)
    route = mock.route().mock(return_value=httpx.Response(200))
    assert await deliver_due(db, upstream_settings, http, limit=10) == 3
    assert not route.called
    rows = await outbox_rows(db)
    assert [r["state"] for r in rows] == ["dead"] * 3
    assert all(r["last_error"].startswith("refused callback URL: refused address") for r in rows)
