"""Subscriptions: creation rules, and the outbox messages every change path writes in its own transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI

from shared.codes import SubjectKind, normalise, org_code_check_char, uscc_check_char
from shared.db.engine import Database
from shared.entries import apply_event, expire_due_entries
from shared.lifecycle import business_date
from shared.settings import Settings
from tests.builders import make_client, make_entry
from tests.conftest import AppFactory, api_client
from tests.list_sync.helpers import BASE, add_source, citizen_id, envelope, fetch, page, record, run, uscc

COURT = "江门市人民法院"
# Contract (list-sync → Subscriptions): "event": "published" | "updated" | <event type> | "expired".
CONTRACT_EVENTS = {
    "published",
    "updated",
    "objection",
    "objection_upheld",
    "objection_rejected",
    "repair",
    "removal",
    "expired",
}


@pytest.fixture
def app(db: Database, app_factory: AppFactory) -> FastAPI:
    return app_factory(db, "list-sync")


@pytest.fixture
async def subscriber(db: Database, app: FastAPI, catalogue: None) -> AsyncIterator[httpx.AsyncClient]:
    _, key = await make_client(db, scopes="lists:read", department="江门市住房和城乡建设局", name="bidding")
    async with api_client(app, key) as client:
        yield client


async def subscribe(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/subscriptions", json={"callback_url": "https://hooks.example/onecheck", **body}
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def messages(db: Database) -> list[Any]:
    return await fetch(
        db, "SELECT message_id, topic, target_url, subscription_id, payload, state FROM outbox ORDER BY id"
    )


async def test_a_subscription_is_created_with_a_secret_shown_once(subscriber: httpx.AsyncClient) -> None:
    created = await subscribe(subscriber, subject_codes=[uscc(1).lower()], list_kinds=["black"])
    assert set(created) == {
        "subscription_id",
        "callback_url",
        "subject_codes",
        "list_kinds",
        "active",
        "created_at",
        "secret",
    }
    assert len(created["secret"]) >= 32
    assert created["subject_codes"] == [uscc(1)]
    assert created["list_kinds"] == ["black"]
    listed = (await subscriber.get("/v1/subscriptions")).json()["subscriptions"]
    assert [s["subscription_id"] for s in listed] == [created["subscription_id"]]
    assert "secret" not in listed[0]


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://hooks.example/x", True),
        ("http://receiver.test:8080/x", True),  # ONECHECK_CALLBACK_HTTP_HOSTS in the test settings
        ("http://hooks.example/x", False),
        ("ftp://hooks.example/x", False),
        ("https://169.254.169.254/x", False),
        ("https://2852039166/x", False),
        ("https://0xa9fea9fe/x", False),
        ("https://[::ffff:169.254.169.254]/x", False),
        ("https://[::169.254.169.254]/x", False),
        ("https://metadata.google.internal./x", False),
        ("http://receiver.test./x", True),  # the same host as receiver.test
        ("https://user:pw@hooks.example/x", False),
        ("not a url", False),
    ],
)
async def test_callback_urls(subscriber: httpx.AsyncClient, url: str, ok: bool) -> None:
    response = await subscriber.post("/v1/subscriptions", json={"callback_url": url})
    assert response.status_code == (201 if ok else 422), response.text


async def test_loopback_callbacks_only_when_configured(
    db: Database, app_factory: AppFactory, test_settings: Settings, catalogue: None
) -> None:
    refusing = test_settings.model_copy(update={"outbound_allow_loopback": False})
    _, key = await make_client(db, scopes="lists:read")
    for settings, status in ((refusing, 422), (test_settings, 201)):
        async with api_client(app_factory(db, "list-sync", settings=settings), key) as client:
            for url in ("http://127.0.0.1:9000/hook", "http://localhost:9000/hook"):
                response = await client.post("/v1/subscriptions", json={"callback_url": url})
                assert response.status_code == status, response.text


async def test_subscription_codes_are_validated(subscriber: httpx.AsyncClient) -> None:
    response = await subscriber.post(
        "/v1/subscriptions", json={"callback_url": "https://h.example/x", "subject_codes": ["123"]}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_subject_code"
    bad_kind = await subscriber.post(
        "/v1/subscriptions", json={"callback_url": "https://h.example/x", "list_kinds": ["grey"]}
    )
    assert bad_kind.status_code == 422


async def test_clients_see_only_their_own_subscriptions(
    db: Database, app: FastAPI, subscriber: httpx.AsyncClient
) -> None:
    mine = await subscribe(subscriber)
    _, key = await make_client(db, scopes="lists:read", name="someone-else")
    async with api_client(app, key) as other:
        assert (await other.get("/v1/subscriptions")).json() == {"subscriptions": []}
        assert (await other.delete(f"/v1/subscriptions/{mine['subscription_id']}")).status_code == 404
        assert (await other.get(f"/v1/subscriptions/{mine['subscription_id']}/deliveries")).status_code == 404
    stopped = await subscriber.delete(f"/v1/subscriptions/{mine['subscription_id']}")
    assert stopped.status_code == 200
    assert stopped.json()["active"] is False


async def test_publishing_notifies_matching_subscriptions_only(
    db: Database, app: FastAPI, subscriber: httpx.AsyncClient
) -> None:
    by_code = await subscribe(subscriber, subject_codes=[uscc(1)])
    by_kind = await subscribe(subscriber, list_kinds=["red"])
    everything = await subscribe(subscriber)
    entry_id = await make_entry(db, code=uscc(1), list_type="LT01")  # black, subject uscc(1)
    sent = await messages(db)
    assert {str(m["subscription_id"]) for m in sent} == {
        by_code["subscription_id"],
        everything["subscription_id"],
    }
    for message in sent:
        assert message["topic"] == "subscription"
        assert message["state"] == "pending"
        assert message["target_url"] == "https://hooks.example/onecheck"
        payload = message["payload"]
        assert set(payload) == {"event_id", "event", "occurred_at", "entry"}
        assert payload["event_id"] == str(message["message_id"])
        assert payload["event"] == "published"
        assert payload["entry"]["entry_id"] == str(entry_id)
        assert [h["event"] for h in payload["entry"]["history"]] == ["published"]
        assert dt.datetime.fromisoformat(payload["occurred_at"]).utcoffset() is not None
    assert by_kind["subscription_id"] not in {str(m["subscription_id"]) for m in sent}


async def test_every_lifecycle_event_is_notified(db: Database, subscriber: httpx.AsyncClient) -> None:
    await subscribe(subscriber, subject_codes=[uscc(2)])
    entry_id = await make_entry(db, code=uscc(2), events=["objection", "objection_rejected", "removal"])
    assert [m["payload"]["event"] for m in await messages(db)] == [
        "published",
        "objection",
        "objection_rejected",
        "removal",
    ]
    last = (await messages(db))[-1]["payload"]["entry"]
    assert (last["status"], last["end_reason"]) == ("ended", "removed")
    assert str(entry_id) == last["entry_id"]


async def test_personal_data_in_callbacks_follows_the_subscribers_scopes(
    db: Database, app: FastAPI, subscriber: httpx.AsyncClient
) -> None:
    await subscribe(subscriber, subject_codes=[citizen_id(9)])
    _, key = await make_client(db, scopes="lists:read,pii:read", name="with-pii")
    async with api_client(app, key) as trusted:
        await subscribe(trusted, subject_codes=[citizen_id(9)])
    await make_entry(db, code=citizen_id(9), kind="citizen_id", name="张小三", list_type="LT06")
    entries = {m["payload"]["entry"]["subject"]["name"]: m["payload"]["entry"] for m in await messages(db)}
    assert set(entries) == {"张*", "张小三"}
    assert entries["张*"]["subject"]["code"] == citizen_id(9)[:6] + "********" + citizen_id(9)[-4:]
    listed = (await subscriber.get("/v1/subscriptions")).json()["subscriptions"]
    assert citizen_id(9) not in str(listed)


async def test_matching_by_org_code_and_linked_person(db: Database, subscriber: httpx.AsyncClient) -> None:
    await subscribe(subscriber, subject_codes=[uscc(3)])  # its organisation code is uscc(3)[8:17]
    await subscribe(subscriber, subject_codes=[citizen_id(4)])
    await make_entry(db, code=uscc(3)[8:17], kind="org_code")  # recorded under the old org code
    await make_entry(
        db,
        code=uscc(5),
        linked_persons=[{"role": "legal_representative", "code": citizen_id(4), "name": "李四"}],
    )
    assert len(await messages(db)) == 2


async def test_a_subscription_to_a_legacy_code_follows_its_alias(
    db: Database, subscriber: httpx.AsyncClient
) -> None:
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO subject_aliases (alias_code, alias_kind, uscc) VALUES ('440703000123450', 'registration_no', $1)",
            uscc(6),
        )
    created = await subscribe(subscriber, subject_codes=["440703000123450"])
    assert created["subject_codes"] == ["440703000123450", uscc(6)]
    await make_entry(db, code=uscc(6))
    assert len(await messages(db)) == 1


async def test_a_revoked_or_stopped_subscriber_gets_nothing(
    db: Database, subscriber: httpx.AsyncClient
) -> None:
    created = await subscribe(subscriber)
    await subscriber.delete(f"/v1/subscriptions/{created['subscription_id']}")
    await make_entry(db)
    assert await messages(db) == []


async def test_sync_changes_are_notified(
    db: Database, catalogue: None, sync_settings: Settings, subscriber: httpx.AsyncClient
) -> None:
    await subscribe(subscriber)
    await add_source(db, "tax", "snapshot")
    t = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    deliveries = [
        [
            record("S-1", updated_at=t),
            record("S-2", updated_at=t),
            record("S-3", updated_at=t),
            record("S-4", updated_at=t),
            record("S-5", updated_at=t),
        ],
        [
            record("S-1", updated_at=t, reason="新"),
            record("S-2", status="removed", updated_at=t),
            record("S-3", updated_at=t),
            record("S-4", updated_at=t),
        ],
    ]
    settings = sync_settings.model_copy(update={"snapshot_max_end_share": 0.5})
    for entries in deliveries:
        with respx.mock(base_url=BASE) as mock:
            mock.get("/entries").mock(return_value=page(envelope(entries)))
            assert (await run(db, settings, "tax"))["status"] == "succeeded"
    sent = await messages(db)
    events = sorted((m["payload"]["entry"]["source"]["record_id"], m["payload"]["event"]) for m in sent)
    # A sync that ends an entry (upstream `removed`, or missing from a complete snapshot) says `removal`:
    # the contract's events are published | updated | <event type> | expired.
    assert events == sorted(
        [(f"S-{i}", "published") for i in range(1, 6)]
        + [("S-1", "updated"), ("S-2", "removal"), ("S-5", "removal")]
    )
    assert {m["payload"]["event"] for m in sent} <= CONTRACT_EVENTS
    # The entry's own history keeps what happened: ended by a sync (`removed`), not by the department.
    ended = {
        m["payload"]["entry"]["source"]["record_id"]: m["payload"]["entry"]
        for m in sent
        if m["payload"]["event"] == "removal"
    }
    for entry in ended.values():
        assert (entry["status"], entry["end_reason"]) == ("ended", "removed")
        assert entry["history"][-1]["event"] == "removed"


async def test_expiry_is_notified(db: Database, subscriber: httpx.AsyncClient) -> None:
    await subscribe(subscriber)
    today = business_date()
    entry_id = await make_entry(
        db, listed_on=today - dt.timedelta(days=100), expires_on=today - dt.timedelta(days=1)
    )
    async with db.session() as session:
        assert await expire_due_entries(session) == 1
        await session.commit()
    last = (await messages(db))[-1]["payload"]
    assert last["event"] == "expired"
    assert last["entry"]["entry_id"] == str(entry_id)
    assert (last["entry"]["status"], last["entry"]["end_reason"]) == ("ended", "expired")


async def test_the_outbox_row_is_in_the_changes_transaction(
    db: Database, subscriber: httpx.AsyncClient
) -> None:
    """A change rolled back takes its notification with it."""
    await subscribe(subscriber)
    entry_id = await make_entry(db)
    async with db.session() as session:
        await apply_event(session, entry_id, "objection", current_status="active", operator="o", basis="b")
        await session.rollback()
    assert [m["payload"]["event"] for m in await messages(db)] == ["published"]


async def test_dead_letters_of_own_subscriptions(db: Database, subscriber: httpx.AsyncClient) -> None:
    created = await subscribe(subscriber)
    await make_entry(db)
    async with db.connection() as conn:
        await conn.execute("UPDATE outbox SET state = 'dead', attempts = 20, last_error = 'HTTP 500'")
    response = await subscriber.get(f"/v1/subscriptions/{created['subscription_id']}/deliveries?state=dead")
    [dead] = response.json()["deliveries"]
    assert (dead["state"], dead["attempts"], dead["last_error"], dead["event"]) == (
        "dead",
        20,
        "HTTP 500",
        "published",
    )
    pending = await subscriber.get(f"/v1/subscriptions/{created['subscription_id']}/deliveries?state=pending")
    assert pending.json() == {"deliveries": []}
    assert (await subscriber.get(f"/v1/subscriptions/{uuid.uuid4()}/deliveries")).status_code == 404


def _citizen_id_embedding_an_org_code() -> str:
    """A citizen id whose characters 9-17 happen to pass GB 11714 (about 9 % of them do)."""
    for i in range(10_000):
        code = citizen_id(i)
        if code[16] == org_code_check_char(code[8:16]) and normalise(code).kind == SubjectKind.CITIZEN_ID:
            return code
    raise AssertionError("no such citizen id")  # pragma: no cover


async def _subscribers_of(db: Database) -> dict[str, set[str]]:
    """subscription_id → the entry ids it was sent."""
    out: dict[str, set[str]] = {}
    for m in await messages(db):
        out.setdefault(str(m["subscription_id"]), set()).add(m["payload"]["entry"]["entry_id"])
    return out


async def test_a_citizen_id_subscription_never_matches_by_an_embedded_org_code(
    db: Database, subscriber: httpx.AsyncClient
) -> None:
    person = _citizen_id_embedding_an_org_code()
    org = person[8:17]
    company = "91440703" + org + uscc_check_char("91440703" + org)
    sub = await subscribe(subscriber, subject_codes=[person])
    await make_entry(db, code=org, kind="org_code")  # another subject, recorded under an org code
    await make_entry(db, code=company)  # a company whose USCC embeds those characters
    own = await make_entry(db, code=person, kind="citizen_id", list_type="LT06")
    assert await _subscribers_of(db) == {sub["subscription_id"]: {str(own)}}


async def test_a_uscc_subscription_matches_its_org_code_entries_not_another_usccs(
    db: Database, subscriber: httpx.AsyncClient
) -> None:
    mine = uscc(21)
    org = mine[8:17]
    other = "91440704" + org + uscc_check_char("91440704" + org)  # another USCC, same embedded characters
    sub = await subscribe(subscriber, subject_codes=[mine])
    under_org = await make_entry(db, code=org, kind="org_code")
    await make_entry(db, code=other)
    own = await make_entry(db, code=mine)
    assert await _subscribers_of(db) == {sub["subscription_id"]: {str(under_org), str(own)}}


async def test_an_unmapped_org_code_subscription_is_only_itself(
    db: Database, subscriber: httpx.AsyncClient
) -> None:
    """As in a check: an org code no alias maps matches entries recorded under it, not USCCs embedding it."""
    org = uscc(22)[8:17]
    sub = await subscribe(subscriber, subject_codes=[org])
    await make_entry(db, code=uscc(22))
    own = await make_entry(db, code=org, kind="org_code")
    assert await _subscribers_of(db) == {sub["subscription_id"]: {str(own)}}


async def test_a_uscc_subscription_follows_an_alias_added_later(
    db: Database, subscriber: httpx.AsyncClient
) -> None:
    """An entry stored under a registration number before its alias was known is the USCC's, as in a check."""
    sub = await subscribe(subscriber, subject_codes=[uscc(23)])
    entry_id = await make_entry(db, code="440703000543214", kind="registration_no")
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO subject_aliases (alias_code, alias_kind, uscc) VALUES ('440703000543214', 'registration_no', $1)",
            uscc(23),
        )
    async with db.session() as session:
        await apply_event(session, entry_id, "objection", current_status="active", operator="o", basis="b")
        await session.commit()
    sent = [(str(m["subscription_id"]), m["payload"]["event"]) for m in await messages(db)]
    assert sent == [(sub["subscription_id"], "objection")]


async def test_a_person_matches_organisations_entries_naming_them(
    db: Database, subscriber: httpx.AsyncClient
) -> None:
    """As in a check (`responsible_person`): an organisation's entry naming the person, not another person's."""
    person = citizen_id(31)
    sub = await subscribe(subscriber, subject_codes=[person])
    named = [{"role": "legal_representative", "code": person, "name": "李四"}]
    company = await make_entry(db, code=uscc(24), linked_persons=named)
    await make_entry(db, code=citizen_id(32), kind="citizen_id", list_type="LT06", linked_persons=named)
    assert await _subscribers_of(db) == {sub["subscription_id"]: {str(company)}}


async def test_subscription_codes_are_stored_with_their_kinds(
    db: Database, subscriber: httpx.AsyncClient
) -> None:
    codes = [uscc(25), citizen_id(33), uscc(26)[8:17], "440703000543214"]
    created = await subscribe(subscriber, subject_codes=[uscc(25).lower(), *codes[1:]])
    [row] = await fetch(
        db,
        "SELECT subject_codes, subject_kinds FROM subscriptions WHERE subscription_id = $1",
        uuid.UUID(created["subscription_id"]),
    )
    assert row["subject_codes"] == codes
    assert row["subject_kinds"] == ["uscc", "citizen_id", "org_code", "registration_no"]
