"""Over real sockets (tests/http_servers.py): signed callbacks to a local receiver that verifies them, and a
sync from a local feed that a check sees at once (issue 4: tests §7, "Done when")."""

from __future__ import annotations

import uuid

import httpx
import pytest

from shared.db.engine import Database
from shared.outbox import relay
from shared.outbox.relay import deliver_due
from shared.settings import Settings
from tests.builders import make_client
from tests.check_api.conftest import check_request
from tests.conftest import AppFactory, api_client
from tests.feedback.builders import make_due, outbox_rows
from tests.http_servers import FeedPages, LocalServer, SignedReceiver, free_port
from tests.list_sync.helpers import add_source, entries_of, fixture_bytes, run, uscc

COURT = "江门市人民法院"


async def test_a_published_entry_reaches_a_real_receiver_signed_and_again_after_a_500(
    db: Database, app_factory: AppFactory, test_settings: Settings, catalogue: None
) -> None:
    app = app_factory(db, "list-sync")
    _, reader = await make_client(
        db, scopes="lists:read", department="江门市住房和城乡建设局", name="bidding"
    )
    _, writer = await make_client(db, scopes="lists:read,lists:write", department=COURT, name="court")
    port = free_port()
    async with api_client(app, reader) as bidding:
        created = await bidding.post(
            "/v1/subscriptions", json={"callback_url": f"http://127.0.0.1:{port}/onecheck/hook"}
        )
    assert created.status_code == 201, created.text
    receiver = SignedReceiver(created.json()["secret"], 500, 204)  # fails once, then takes it
    async with api_client(app, writer) as court:
        published = await court.post(
            "/v1/entries",
            json={
                "list_type": "LT01",
                "subject": {"code": uscc(77), "name": "江门市某某建设工程有限公司"},
                "reason": "有履行能力而拒不履行生效法律文书确定义务",
                "decision_no": "(2026)粤0703执77号",
                "listed_on": "2026-03-01",
            },
        )
    assert published.status_code == 201, published.text
    entry = published.json()
    [message] = await outbox_rows(db)

    await make_due(db)  # enqueued at Python's now; the test transaction's now() is its start
    with LocalServer(receiver, port=port) as server:
        async with relay.make_http_client(test_settings) as http:  # the relay's own client, address-checked
            assert await deliver_due(db, test_settings, http, limit=10) == 1
            [first] = receiver.deliveries
            assert (first.valid, first.status) == (True, 500)
            [row] = await outbox_rows(db)
            assert (row["state"], row["attempts"], row["last_error"]) == ("pending", 1, "HTTP 500")
            await make_due(db)
            assert await deliver_due(db, test_settings, http, limit=10) == 1
    first, second = receiver.deliveries
    assert (second.valid, second.status) == (True, 204)
    assert [r.path for r in server.requests] == ["/onecheck/hook"] * 2
    assert all(r.headers["content-type"] == "application/json" for r in server.requests)
    assert "authorization" not in server.requests[0].headers
    # The contract's event body, the same on the redelivery (receivers dedupe on event_id).
    assert first.event == second.event
    assert set(second.event) == {"event_id", "event", "occurred_at", "entry"}
    assert second.event["event_id"] == str(message["message_id"])
    assert second.event["event"] == "published"
    assert second.event["entry"]["entry_id"] == entry["entry_id"]
    assert second.event["entry"]["subject"]["code"] == uscc(77)
    assert [h["event"] for h in second.event["entry"]["history"]] == ["published"]
    # Each attempt is signed anew over the raw body it carries; a receiver refuses anything else.
    body = server.requests[1].body
    assert receiver.verify(second.timestamp, second.signature, body)
    assert not receiver.verify(second.timestamp, second.signature, body + b" ")
    assert not SignedReceiver("another secret").verify(second.timestamp, second.signature, body)
    [row] = await outbox_rows(db)
    assert (row["state"], row["attempts"]) == ("delivered", 2)


async def test_a_check_sees_synced_entries_at_once(
    db: Database, app_factory: AppFactory, catalogue: None, sync_settings: Settings
) -> None:
    pages = {None: fixture_bytes("feed-page-1.json"), "c2": fixture_bytes("feed-page-2.json")}
    with LocalServer(FeedPages(pages)) as feed:
        await add_source(db, "court", base_url=feed.url + "/api")
        view = await run(db, sync_settings, "court")  # the sync's real client over TCP
    assert view["status"] == "succeeded", view["error"]
    assert view["counts"]["inserted"] == 5
    assert [r.query.get("cursor") for r in feed.requests] == [None, "c2"]
    assert all(r.headers["authorization"] == "Bearer upstream-token" for r in feed.requests)
    stored = await entries_of(db, "court")

    _, key = await make_client(db, scopes="check", any_department=True, name="platform")
    async with api_client(app_factory(db, "check-api"), key) as api:
        listed = await api.post("/v1/checks", json=check_request("I01", "91440703MA51AB1C6L"))  # F-1, LT01
        removed = await api.post("/v1/checks", json=check_request("I01", "91440703MA51AB5G49"))  # F-5
        person = await api.post(  # F-1's legal representative, synced with it
            "/v1/checks",
            json=check_request("I01", "", subject={"code": "440703198001011234", "kind": "citizen_id"}),
        )
    assert listed.status_code == 200, listed.text
    answer = listed.json()
    assert answer["outcome"] == "penalty"
    assert [m["entry_id"] for m in answer["matches"]] == [str(stored["F-1"]["entry_id"])]
    assert sorted(m["code"] for m in answer["measures"]) == ["M05", "M22"]
    assert removed.json()["outcome"] == "clear"  # synced as removed: ended at once too
    assert person.status_code == 200, person.text
    assert [m["via"] for m in person.json()["matches"]] == ["responsible_person"]


@pytest.mark.parametrize("status", [500, 503])
async def test_a_receiver_that_is_down_gets_the_callback_when_back(
    db: Database, app_factory: AppFactory, test_settings: Settings, catalogue: None, status: int
) -> None:
    """Connection refused, then a 5xx, then delivered: always the same event_id."""
    from tests.builders import make_entry

    _, reader = await make_client(db, scopes="lists:read", name=f"bidding-{uuid.uuid4().hex[:6]}")
    port = free_port()
    async with api_client(app_factory(db, "list-sync"), reader) as bidding:
        created = (
            await bidding.post("/v1/subscriptions", json={"callback_url": f"http://127.0.0.1:{port}/h"})
        ).json()
    await make_entry(db, code=uscc(78))
    await make_due(db)
    receiver = SignedReceiver(created["secret"], status, 200)
    server = LocalServer(receiver, port=port)
    async with relay.make_http_client(test_settings) as http:
        assert await deliver_due(db, test_settings, http, limit=10) == 1  # nobody listening
        [row] = await outbox_rows(db)
        assert row["state"] == "pending"
        assert row["last_error"].startswith("ConnectError")
        with server:
            for _ in range(2):
                await make_due(db)
                assert await deliver_due(db, test_settings, http, limit=10) == 1
    [row] = await outbox_rows(db)
    assert (row["state"], row["attempts"]) == ("delivered", 3)
    assert [d.status for d in receiver.deliveries] == [status, 200]
    assert {d.event["event_id"] for d in receiver.deliveries} == {str(row["message_id"])}
    assert all(d.valid for d in receiver.deliveries)


def test_the_receiver_helper_refuses_bad_signatures() -> None:
    with LocalServer(SignedReceiver("s3cret")) as server:
        response = httpx.post(
            server.url + "/h",
            content=b'{"event_id": "x"}',
            headers={"X-OneCheck-Timestamp": "1", "X-OneCheck-Signature": "sha256=00"},
        )
    assert response.status_code == 401
