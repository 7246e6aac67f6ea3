"""Entries API: publish, read, lifecycle events (contract: list-sync → Entries)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from shared.db.engine import Database
from shared.lifecycle import HISTORY_EVENTS, TRANSITIONS, business_date
from tests.builders import make_client, make_entry
from tests.conftest import AppFactory, api_client
from tests.list_sync.helpers import citizen_id, fetch, uscc

COURT = "江门市人民法院"
WRITE = "lists:read,lists:write"


@pytest.fixture
async def court(db: Database, app_factory: AppFactory, catalogue: None) -> AsyncIterator[httpx.AsyncClient]:
    """A court's publishing system (no pii:read)."""
    _, key = await make_client(db, scopes=WRITE, department=COURT, name="court-system")
    async with api_client(app_factory(db, "list-sync"), key) as client:
        yield client


def body(**overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "list_type": "LT01",
        "subject": {"code": uscc(1), "name": "江门市某某建设工程有限公司"},
        "reason": "有履行能力而拒不履行生效法律文书确定义务",
        "decision_no": "(2026)粤0703执1号",
        "listed_on": "2026-03-01",
    }
    out.update(overrides)
    return out


async def test_publish_answers_201_with_the_entry_and_its_history(court: httpx.AsyncClient) -> None:
    response = await court.post("/v1/entries", json=body(linked_persons=[]))
    assert response.status_code == 201, response.text
    entry = response.json()
    uuid.UUID(entry["entry_id"])
    assert entry["status"] == "active"
    assert entry["end_reason"] is None
    assert entry["list_type"] == "LT01"
    assert entry["subject"] == {
        "code": uscc(1),
        "name": "江门市某某建设工程有限公司",
        "kind": "uscc",
        "original_code": uscc(1),
        "original_kind": "uscc",
    }
    assert entry["issuing_department"] == COURT
    assert entry["listed_on"] == "2026-03-01"
    assert entry["expires_on"] == "2028-02-29"  # LT01: 730 days
    assert entry["reason"] == body()["reason"]
    assert entry["decision_no"] == body()["decision_no"]
    [published] = entry["history"]
    assert published["event"] == "published"
    assert published["operator"] == "court-system"  # no operator given: the client's name
    assert published["basis"] == body()["decision_no"]
    assert dt.datetime.fromisoformat(published["at"]).utcoffset() is not None
    read = await court.get(f"/v1/entries/{entry['entry_id']}")
    assert read.status_code == 200
    assert read.json() == entry


@pytest.mark.parametrize(
    ("given", "list_type", "expected"),
    [
        ({}, "LT01", "2028-02-29"),  # omitted: the list type's default validity
        ({}, "LT04", None),  # omitted, no default validity: open-ended
        ({"expires_on": None}, "LT01", None),  # explicit null: open-ended
        ({"expires_on": "2026-09-01"}, "LT01", "2026-09-01"),
    ],
)
async def test_expiry_defaults(
    court: httpx.AsyncClient, given: dict[str, Any], list_type: str, expected: str | None
) -> None:
    response = await court.post("/v1/entries", json=body(list_type=list_type, **given))
    assert response.status_code == 201, response.text
    assert response.json()["expires_on"] == expected


async def test_past_and_future_listing_dates_are_allowed(court: httpx.AsyncClient) -> None:
    past = await court.post("/v1/entries", json=body(listed_on="2015-01-05", expires_on="2016-01-05"))
    assert past.status_code == 201
    assert past.json()["status"] == "ended"
    assert past.json()["end_reason"] == "expired"
    future = (business_date() + dt.timedelta(days=10)).isoformat()
    ahead = await court.post("/v1/entries", json=body(listed_on=future))
    assert ahead.status_code == 201
    assert ahead.json()["listed_on"] == future


async def test_operator_is_recorded(court: httpx.AsyncClient) -> None:
    response = await court.post("/v1/entries", json=body(operator="clerk-017"))
    assert response.json()["history"][0]["operator"] == "clerk-017"


@pytest.mark.parametrize(
    ("change", "code", "rule"),
    [
        ({"subject": {"code": uscc(1)[:17] + "0", "name": "x"}}, "invalid_subject_code", "uscc.check_char"),
        ({"subject": {"code": "12345", "name": "x"}}, "invalid_subject_code", "code.length"),
        (
            {
                "linked_persons": [
                    {"role": "legal_representative", "code": "440703198001011230", "name": "张三"}
                ]
            },
            "invalid_subject_code",
            "citizen_id.check_char",
        ),
    ],
)
async def test_codes_are_validated(
    court: httpx.AsyncClient, change: dict[str, Any], code: str, rule: str
) -> None:
    response = await court.post("/v1/entries", json=body(**change))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == code
    assert problem["errors"][0]["rule"] == rule
    assert response.headers["content-type"] == "application/problem+json"


async def test_codes_are_normalised(court: httpx.AsyncClient) -> None:
    given = " " + uscc(2).lower() + " "
    response = await court.post(
        "/v1/entries", json=body(subject={"code": given, "name": "x", "kind": "uscc"})
    )
    assert response.status_code == 201, response.text
    assert response.json()["subject"]["code"] == uscc(2)


@pytest.mark.parametrize(
    "change",
    [
        {"list_type": "LT99"},
        {"listed_on": "2026/03/01"},
        {"listed_on": "2026-02-30"},
        {"listed_on": 1767225600},
        {"expires_on": "2026-02-01"},  # before listed_on
        {"status": "active"},  # unknown field
        {"reason": ""},
        {"subject": {"code": uscc(1), "name": "x", "kind": "passport"}},
        {"linked_persons": [{"role": "boss", "code": citizen_id(1), "name": "张三"}]},
    ],
)
async def test_invalid_bodies_answer_422(court: httpx.AsyncClient, change: dict[str, Any]) -> None:
    response = await court.post("/v1/entries", json=body(**change))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"


async def test_only_the_clients_own_department_may_publish(court: httpx.AsyncClient) -> None:
    own = await court.post("/v1/entries", json=body(issuing_department=COURT))
    assert own.status_code == 201
    other = await court.post("/v1/entries", json=body(issuing_department="江门市税务局"))
    assert other.status_code == 403
    assert other.json()["code"] == "forbidden"


async def test_scopes(db: Database, app_factory: AppFactory, catalogue: None) -> None:
    _, reader = await make_client(db, scopes="lists:read", department=COURT)
    async with api_client(app_factory(db, "list-sync"), reader) as api:
        assert (await api.post("/v1/entries", json=body())).status_code == 403
    _, checker = await make_client(db, scopes="check", department=COURT)
    entry_id = await make_entry(db)
    async with api_client(app_factory(db, "list-sync"), checker) as api:
        assert (await api.get(f"/v1/entries/{entry_id}")).status_code == 403


@pytest.mark.parametrize("entry_id", [str(uuid.uuid4()), "not-a-uuid", "1"])
async def test_unknown_entries_answer_404(court: httpx.AsyncClient, entry_id: str) -> None:
    read = await court.get(f"/v1/entries/{entry_id}")
    assert read.status_code == 404
    assert read.json()["code"] == "not_found"
    event = await court.post(
        f"/v1/entries/{entry_id}/events", json={"type": "objection", "basis": "b", "operator": "o"}
    )
    assert event.status_code == 404


# --- masking -----------------------------------------------------------------------------------------------


def _person_body() -> dict[str, Any]:
    return body(
        list_type="LT06",
        subject={"code": citizen_id(7), "name": "欧阳修远", "kind": "citizen_id"},
        linked_persons=[{"role": "legal_representative", "code": citizen_id(8), "name": "张三"}],
    )


async def test_personal_data_is_masked_without_pii_read(court: httpx.AsyncClient) -> None:
    response = await court.post("/v1/entries", json=_person_body())
    entry = response.json()
    assert entry["subject"]["code"] == citizen_id(7)[:6] + "********" + citizen_id(7)[-4:]
    assert entry["subject"]["original_code"] == entry["subject"]["code"]
    assert entry["subject"]["name"] == "欧阳*"
    assert entry["linked_persons"] == [
        {
            "role": "legal_representative",
            "code": citizen_id(8)[:6] + "********" + citizen_id(8)[-4:],
            "name": "张*",
        }
    ]
    assert citizen_id(7) not in response.text
    assert citizen_id(8) not in response.text
    read = await court.get(f"/v1/entries/{entry['entry_id']}")
    assert citizen_id(7) not in read.text
    assert "张三" not in read.text


async def test_pii_read_sees_personal_data(db: Database, app_factory: AppFactory, catalogue: None) -> None:
    _, key = await make_client(db, scopes="lists:read,lists:write,pii:read", department=COURT)
    async with api_client(app_factory(db, "list-sync"), key) as api:
        entry = (await api.post("/v1/entries", json=_person_body())).json()
    assert entry["subject"]["code"] == citizen_id(7)
    assert entry["subject"]["name"] == "欧阳修远"
    assert entry["linked_persons"][0]["code"] == citizen_id(8)


async def test_legacy_codes_map_through_aliases(db: Database, court: httpx.AsyncClient) -> None:
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO subject_aliases (alias_code, alias_kind, uscc) VALUES ('440703000123450', 'registration_no', $1)",
            uscc(3),
        )
    response = await court.post("/v1/entries", json=body(subject={"code": "440703000123450", "name": "x"}))
    subject = response.json()["subject"]
    assert subject["code"] == uscc(3)
    assert subject["kind"] == "uscc"
    assert subject["original_code"] == "440703000123450"
    assert subject["original_kind"] == "registration_no"


# --- audit and idempotency -----------------------------------------------------------------------------------


async def test_publish_read_and_events_are_audited(db: Database, court: httpx.AsyncClient) -> None:
    entry = (await court.post("/v1/entries", json=_person_body())).json()
    await court.get(f"/v1/entries/{entry['entry_id']}")
    await court.post(
        f"/v1/entries/{entry['entry_id']}/events",
        json={"type": "objection", "basis": "异议", "operator": "clerk-1"},
    )
    rows = await fetch(
        db,
        "SELECT action, subject_masked, subject_hmac, object_id, status, operator FROM audit_log ORDER BY id",
    )
    assert [r["action"] for r in rows] == ["entry.publish", "entry.read", "entry.event"]
    for row in rows:
        assert row["object_id"] == entry["entry_id"]
        assert row["subject_masked"] == entry["subject"]["code"]  # masked
        assert row["subject_hmac"]
    assert rows[2]["operator"] == "clerk-1"


async def test_idempotent_publish(db: Database, court: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "publish-1"}
    first = await court.post("/v1/entries", json=body(), headers=headers)
    again = await court.post("/v1/entries", json=body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other = await court.post("/v1/entries", json=body(reason="另一事由"), headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    [count] = await fetch(db, "SELECT count(*) FROM list_entries")
    assert count[0] == 1


# --- lifecycle ---------------------------------------------------------------------------------------------

STARTS = {
    "active": [],
    "objection_pending": ["objection"],
    "ended_repaired": ["repair"],
    "ended_removed": ["removal"],
    "ended_upheld": ["objection", "objection_upheld"],
}
EXPECTED = {  # event → (status after, end reason after), per the contract's table
    "objection": ("objection_pending", None),
    "objection_rejected": ("active", None),
    "objection_upheld": ("ended", "objection_upheld"),
    "repair": ("ended", "repaired"),
    "removal": ("ended", "removed"),
}


def _reads(start: str) -> str:
    return "ended" if start.startswith("ended") or start == "expired" else start


@pytest.mark.parametrize("start", [*STARTS, "expired"])
@pytest.mark.parametrize("event", list(EXPECTED))
async def test_every_transition_allowed_and_refused(
    db: Database, court: httpx.AsyncClient, start: str, event: str
) -> None:
    today = business_date()
    if start == "expired":
        entry_id = await make_entry(
            db, listed_on=today - dt.timedelta(days=400), expires_on=today - dt.timedelta(days=1)
        )
    else:
        entry_id = await make_entry(db, events=STARTS[start])
    response = await court.post(
        f"/v1/entries/{entry_id}/events", json={"type": event, "basis": "依据", "operator": "clerk-9"}
    )
    current = _reads(start)
    allowed = current in TRANSITIONS[event][0]
    if allowed:
        assert response.status_code == 200, response.text
        entry = response.json()
        assert (entry["status"], entry["end_reason"]) == EXPECTED[event]
        assert entry["history"][-1] == {
            **entry["history"][-1],
            "event": event,
            "operator": "clerk-9",
            "basis": "依据",
        }
    else:
        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "conflict"
        assert problem["current_status"] == current
        assert repr(current) in problem["detail"]
        history = (await court.get(f"/v1/entries/{entry_id}")).json()["history"]
        assert [h["event"] for h in history] == ["published", *STARTS.get(start, [])]


async def test_the_expected_table_is_the_contracts() -> None:
    allowed = {event: sorted(starts) for event, (starts, _, _) in TRANSITIONS.items()}
    assert allowed == {
        "objection": ["active"],
        "objection_rejected": ["objection_pending"],
        "objection_upheld": ["objection_pending"],
        "repair": ["active", "objection_pending"],
        "removal": ["active", "objection_pending"],
    }
    assert {e: (a, r) for e, (_, a, r) in TRANSITIONS.items()} == EXPECTED


async def test_a_full_history_is_kept(db: Database, court: httpx.AsyncClient) -> None:
    entry = (await court.post("/v1/entries", json=body())).json()
    url = f"/v1/entries/{entry['entry_id']}/events"
    for event, basis in (
        ("objection", "主体提出异议"),
        ("objection_rejected", "异议不成立"),
        ("repair", "信用修复"),
    ):
        assert (
            await court.post(url, json={"type": event, "basis": basis, "operator": "clerk-2"})
        ).status_code == 200
    final = (await court.get(f"/v1/entries/{entry['entry_id']}")).json()
    assert [(h["event"], h["basis"]) for h in final["history"]] == [
        ("published", body()["decision_no"]),
        ("objection", "主体提出异议"),
        ("objection_rejected", "异议不成立"),
        ("repair", "信用修复"),
    ]
    assert final["status"] == "ended"
    assert final["end_reason"] == "repaired"
    assert final["ended_on"] == business_date().isoformat()
    [row] = await fetch(
        db, "SELECT count(*) FROM entry_events WHERE entry_id = $1", uuid.UUID(entry["entry_id"])
    )
    assert row[0] == 4
    assert {h["event"] for h in final["history"]} <= set(HISTORY_EVENTS)


async def test_only_the_issuing_department_changes_an_entry(
    db: Database, app_factory: AppFactory, catalogue: None
) -> None:
    entry_id = await make_entry(db, issuing_department=COURT)
    _, key = await make_client(db, scopes=WRITE, department="江门市税务局", any_department=True)
    async with api_client(app_factory(db, "list-sync"), key) as api:
        response = await api.post(
            f"/v1/entries/{entry_id}/events", json={"type": "objection", "basis": "b", "operator": "o"}
        )
    assert response.status_code == 403


@pytest.mark.parametrize(
    "event",
    [
        {"type": "expire", "basis": "b", "operator": "o"},
        {"type": "repair", "operator": "o"},
        {"type": "repair", "basis": "b"},
    ],
)
async def test_invalid_events_answer_422(
    db: Database, court: httpx.AsyncClient, event: dict[str, str]
) -> None:
    entry_id = await make_entry(db)
    response = await court.post(f"/v1/entries/{entry_id}/events", json=event)
    assert response.status_code == 422
