"""The relay with real commits: killed mid-batch, several replicas, the start-up hook (RELIABILITY C2).

A relay "killed" here is its task cancelled mid-delivery: what it had not recorded stays leased, exactly as a
dead process leaves it, until the lease runs out. The weakened relay (marks rows delivered before sending)
shows the test can fail.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest
import respx

from shared.db.engine import Database
from shared.outbox import relay
from shared.outbox.relay import deliver_due, relay_hook
from shared.settings import Settings
from tests.builders import make_client
from tests.conftest import AppFactory
from tests.feedback.builders import add_outbox, add_subscription
from tests.feedback.conftest import UPSTREAM

pytestmark = pytest.mark.committing

FEEDBACK_URL = UPSTREAM + "/feedback"
Deliver = Callable[..., Coroutine[Any, Any, int]]


class Upstream:
    """A deduping upstream: `accepted` counts the answers it completed per Idempotency-Key."""

    def __init__(self, *, answer_first: int) -> None:
        self.answer_first = answer_first
        self.accepted: collections.Counter[str] = collections.Counter()
        self.hanging = 0
        self.stuck = asyncio.Event()
        self.healthy = False

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        key = request.headers["idempotency-key"]
        if not self.healthy and sum(self.accepted.values()) >= self.answer_first:
            self.hanging += 1
            if self.hanging >= relay.SEND_CONCURRENCY:
                self.stuck.set()
            await asyncio.Event().wait()  # until the relay dies
        self.accepted[key] += 1
        return httpx.Response(200)


async def _pending(db: Database) -> int:
    async with db.connection() as conn:
        count: int = await conn.fetchval("SELECT count(*) FROM outbox WHERE state <> 'delivered'")
    return count


async def _lease_runs_out(db: Database) -> None:
    """Time passes: every lease the killed relay held has run out."""
    async with db.connection() as conn:
        await conn.execute("UPDATE outbox SET next_attempt_at = now() WHERE state = 'pending'")


async def _kill_mid_batch(db: Database, settings: Settings, deliver: Deliver) -> tuple[Upstream, list[str]]:
    ids = [str(await add_outbox(db)) for _ in range(30)]
    upstream = Upstream(answer_first=5)
    with respx.mock(assert_all_called=False) as mock:
        mock.post(FEEDBACK_URL).mock(side_effect=upstream)
        async with httpx.AsyncClient() as http:
            task = asyncio.create_task(deliver(db, settings, http, limit=30))
            await asyncio.wait_for(upstream.stuck.wait(), timeout=10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            upstream.healthy = True
            # While the dead relay's lease lasts, nobody sends its messages again.
            sent_before = sum(upstream.accepted.values())
            assert await deliver_due(db, settings, http, limit=100) == 0
            assert sum(upstream.accepted.values()) == sent_before
            await _lease_runs_out(db)
            for _ in range(10):  # the next relay pass (another process, or this one restarted)
                if not await deliver_due(db, settings, http, limit=100):
                    break
    return upstream, ids


async def test_a_relay_killed_mid_batch_still_delivers_everything(
    committed_db: Database, upstream_settings: Settings
) -> None:
    upstream, ids = await _kill_mid_batch(committed_db, upstream_settings, deliver_due)
    assert await _pending(committed_db) == 0
    assert all(upstream.accepted[i] >= 1 for i in ids)
    duplicates = sum(n - 1 for n in upstream.accepted.values())
    # Sent again: only what was accepted but not yet recorded when it died; never more than the killed batch.
    assert duplicates <= 30


async def _at_most_once(db: Database, settings: Settings, http: httpx.AsyncClient, *, limit: int) -> int:
    """The weakened relay: commits `delivered` first, then sends."""
    async with db.connection() as conn:
        rows = await relay.claim(conn, settings, limit=limit)
        await conn.execute(
            "UPDATE outbox SET state = 'delivered', delivered_at = now() WHERE id = ANY($1::bigint[])",
            [r["id"] for r in rows],
        )
    await asyncio.gather(*(relay._send(r, settings, http) for r in rows))
    return len(rows)


async def test_the_weakened_relay_loses_messages(committed_db: Database, upstream_settings: Settings) -> None:
    upstream, ids = await _kill_mid_batch(committed_db, upstream_settings, _at_most_once)
    lost = [i for i in ids if upstream.accepted[i] == 0]
    assert lost  # the same fault that the real relay survives


async def test_replicas_never_send_the_same_message_at_once(
    committed_db: Database, upstream_settings: Settings
) -> None:
    ids = [str(await add_outbox(committed_db)) for _ in range(60)]
    received: collections.Counter[str] = collections.Counter()

    async def slow(request: httpx.Request) -> httpx.Response:
        received[request.headers["idempotency-key"]] += 1
        await asyncio.sleep(0.01)
        return httpx.Response(200)

    with respx.mock(assert_all_called=False) as mock:
        mock.post(FEEDBACK_URL).mock(side_effect=slow)
        async with httpx.AsyncClient() as http:

            async def replica() -> int:
                total = 0
                while attempted := await deliver_due(committed_db, upstream_settings, http, limit=7):
                    total += attempted
                return total

            totals = await asyncio.gather(*(replica() for _ in range(4)))
    assert sum(totals) == 60
    assert sorted(received) == sorted(ids)
    assert set(received.values()) == {1}
    assert await _pending(committed_db) == 0


async def test_a_slow_callback_holds_no_lock_and_does_not_hold_up_feedback(
    committed_db: Database, upstream_settings: Settings
) -> None:
    """While a callback hangs: no transaction is open, its row is leased but not locked, and feedback claimed
    after it is delivered and recorded meanwhile. (The relay that held one transaction across the sends
    recorded nothing until the slowest send of the batch ended.)"""
    callback = "https://slow.example/hook"
    client_id, _ = await make_client(committed_db, scopes="lists:read")
    subscription_id = await add_subscription(
        committed_db, client_id=client_id, callback_url=callback, secret="s"
    )
    slow = await add_outbox(
        committed_db,
        topic="subscription",
        payload={"event": "published"},
        target_url=callback,
        subscription_id=subscription_id,
    )
    settings = upstream_settings.model_copy(update={"outbox_poll_seconds": 0.05})
    hanging = asyncio.Event()
    release = asyncio.Event()

    async def slow_receiver(request: httpx.Request) -> httpx.Response:
        hanging.set()
        await release.wait()
        return httpx.Response(200)

    with respx.mock(assert_all_called=False) as mock:
        mock.post(callback).mock(side_effect=slow_receiver)
        mock.post(FEEDBACK_URL).mock(return_value=httpx.Response(200))
        async with httpx.AsyncClient() as http:
            task = asyncio.create_task(relay.run_relay(committed_db, settings, http))
            try:
                await asyncio.wait_for(hanging.wait(), timeout=10)
                feedback = [await add_outbox(committed_db) for _ in range(5)]
                async with committed_db.connection() as conn:
                    for _ in range(200):
                        states = await conn.fetch(
                            "SELECT state FROM outbox WHERE message_id = ANY($1::uuid[])", feedback
                        )
                        if [r["state"] for r in states] == ["delivered"] * 5:
                            break
                        await asyncio.sleep(0.05)
                    assert [r["state"] for r in states] == ["delivered"] * 5
                    assert not release.is_set()  # the callback is still on the wire
                    async with conn.transaction():
                        leased = await conn.fetchrow(
                            "SELECT state, attempts, next_attempt_at > now() AS leased FROM outbox "
                            "WHERE message_id = $1 FOR UPDATE NOWAIT",  # fails if the relay held the row
                            slow,
                        )
                    assert leased is not None
                    assert (leased["state"], leased["attempts"], leased["leased"]) == ("pending", 1, True)
                    open_transactions = await conn.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
                    )
                    assert open_transactions == 0
                release.set()
                for _ in range(200):
                    async with committed_db.connection() as conn:
                        state = await conn.fetchval("SELECT state FROM outbox WHERE message_id = $1", slow)
                    if state == "delivered":
                        break
                    await asyncio.sleep(0.05)
                assert state == "delivered"
            finally:
                release.set()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task


async def test_the_hook_runs_one_relay_loop_per_process(
    committed_db: Database, upstream_settings: Settings, app_factory: AppFactory
) -> None:
    settings = upstream_settings.model_copy(
        update={"outbox_relay_enabled": True, "outbox_poll_seconds": 0.05}
    )
    app = app_factory(committed_db, "all", settings=settings)
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(FEEDBACK_URL).mock(return_value=httpx.Response(200))
        async with relay_hook(app), relay_hook(app):  # `onecheck serve`: two services list the hook
            loops = [t for t in asyncio.all_tasks() if t.get_name() == "outbox-relay"]
            assert len(loops) == 1
            ids = [await add_outbox(committed_db) for _ in range(5)]
            for _ in range(200):
                if await _pending(committed_db) == 0:
                    break
                await asyncio.sleep(0.05)
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "outbox-relay"]
    assert await _pending(committed_db) == 0
    assert {c.request.headers["idempotency-key"] for c in route.calls} == {str(i) for i in ids}


async def test_the_hook_does_nothing_when_disabled(
    committed_db: Database, test_settings: Settings, app_factory: AppFactory
) -> None:
    assert test_settings.outbox_relay_enabled is False
    app = app_factory(committed_db, "feedback")
    async with relay_hook(app):
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "outbox-relay"]
