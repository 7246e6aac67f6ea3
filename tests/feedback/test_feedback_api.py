"""POST and GET /v1/checks/{check_id}/feedback: versions, completeness, validation, object access, audit."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg
import pytest

from shared.db.engine import Database
from shared.ids import uuid7
from shared.lifecycle import business_date
from tests.builders import make_client
from tests.conftest import AppFactory, api_client
from tests.feedback.builders import (
    CHECKING_DEPARTMENT,
    PERSON_CODE,
    Match,
    Measure,
    make_check,
    outbox_rows,
)
from tests.feedback.conftest import Caller

STATUS_KEYS = {"check_id", "decision", "complete", "feedback_due_on", "overdue", "measures"}
MEASURE_KEYS = {"code", "status", "note", "operator", "reported_at", "history", "required"}


async def _typical_check(db: Database, caller: Caller, **kwargs: Any) -> uuid.UUID:
    """M01 mandatory and M02 advisory required, M05 suspended (objection pending), M30 withheld."""
    court, pending = Match(), Match(entry_status="objection_pending", list_type="LT05", list_kind="black")
    defaults: dict[str, Any] = {
        "matches": [court, pending],
        "measures": [
            Measure("M01", triggered_by=(court.entry_id,)),
            Measure("M02", mandatory=False, triggered_by=(court.entry_id,)),
        ],
        "suspended": [Measure("M05", triggered_by=(pending.entry_id,))],
        "withheld": [Measure("M30", kind="incentive", triggered_by=(court.entry_id,))],
    }
    return await make_check(db, client_id=caller.client_id, **(defaults | kwargs))


def _body(
    *measures: dict[str, Any], decision: str = "approved", operator: str = "clerk-017"
) -> dict[str, Any]:
    return {"decision": decision, "measures": list(measures), "operator": operator}


async def test_feedback_in_parts_reaches_complete(db: Database, caller: Caller) -> None:
    check_id = await _typical_check(db, caller)
    url = f"/v1/checks/{check_id}/feedback"

    before = await caller.api.get(url)
    assert before.status_code == 200, before.text
    start = before.json()
    assert set(start) == STATUS_KEYS
    assert start["decision"] is None
    assert start["complete"] is False
    assert start["overdue"] is False
    assert start["feedback_due_on"] == (business_date() + dt.timedelta(days=30)).isoformat()
    assert [(m["code"], m["status"], m["history"]) for m in start["measures"]] == [
        ("M01", "awaiting", []),
        ("M02", "awaiting", []),
    ]

    first = await caller.api.post(url, json=_body({"code": "M01", "status": "applied"}))
    assert first.status_code == 200, first.text
    status = first.json()
    assert set(status) == STATUS_KEYS
    assert status["decision"] == "approved"
    assert status["complete"] is False
    m01, m02 = status["measures"]
    assert set(m01) == MEASURE_KEYS
    assert (m01["code"], m01["status"], m01["operator"], m01["required"]) == (
        "M01",
        "applied",
        "clerk-017",
        True,
    )
    assert dt.datetime.fromisoformat(m01["reported_at"]).utcoffset() == dt.timedelta(hours=8)
    assert m01["history"] == [
        {"status": "applied", "note": None, "operator": "clerk-017", "reported_at": m01["reported_at"]}
    ]
    assert (m02["status"], m02["note"], m02["operator"], m02["reported_at"]) == ("awaiting", None, None, None)

    second = await caller.api.post(
        url,
        json=_body(
            {"code": "M02", "status": "not_applied", "note": "申请人已提交信用修复材料"},
            decision="approved_with_conditions",
            operator="clerk-018",
        ),
    )
    assert second.status_code == 200, second.text
    done = second.json()
    assert done["complete"] is True
    assert done["decision"] == "approved_with_conditions"
    assert [(m["code"], m["status"], m["note"], m["operator"]) for m in done["measures"]] == [
        ("M01", "applied", None, "clerk-017"),
        ("M02", "not_applied", "申请人已提交信用修复材料", "clerk-018"),
    ]
    # POST answers exactly what GET shows.
    assert (await caller.api.get(url)).json() == done


async def test_a_new_status_is_a_new_version_and_history_is_oldest_first(
    db: Database, caller: Caller
) -> None:
    check_id = await _typical_check(db, caller)
    url = f"/v1/checks/{check_id}/feedback"
    reports = [
        {"code": "M01", "status": "not_applicable", "note": "项目未进入招投标环节"},
        {"code": "M01", "status": "applied"},
        {"code": "M01", "status": "applied"},  # the same again: no new version
        {"code": "M01", "status": "not_applied", "note": "法院已出具履行完毕证明"},
    ]
    for report in reports:
        response = await caller.api.post(url, json=_body(report))
        assert response.status_code == 200, response.text
    m01 = (await caller.api.get(url)).json()["measures"][0]
    assert [(h["status"], h["note"]) for h in m01["history"]] == [
        ("not_applicable", "项目未进入招投标环节"),
        ("applied", None),
        ("not_applied", "法院已出具履行完毕证明"),
    ]
    assert (m01["status"], m01["note"]) == ("not_applied", "法院已出具履行完毕证明")
    times = [dt.datetime.fromisoformat(h["reported_at"]) for h in m01["history"]]
    assert times == sorted(times)
    assert m01["reported_at"] == m01["history"][-1]["reported_at"]
    async with db.connection() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM feedback_submissions WHERE check_id = $1", check_id)
            == 4
        )
        assert (
            await conn.fetchval("SELECT count(*) FROM feedback_measures WHERE check_id = $1", check_id) == 3
        )


async def test_suspended_measures_are_accepted_but_do_not_count(db: Database, caller: Caller) -> None:
    check_id = await _typical_check(db, caller)
    url = f"/v1/checks/{check_id}/feedback"
    response = await caller.api.post(
        url, json=_body({"code": "M05", "status": "not_applicable", "note": "核实期间暂不执行"})
    )
    assert response.status_code == 200, response.text
    status = response.json()
    assert status["complete"] is False
    assert [(m["code"], m["status"], m["required"]) for m in status["measures"]] == [
        ("M01", "awaiting", True),
        ("M02", "awaiting", True),
        ("M05", "not_applicable", False),
    ]
    async with db.connection() as conn:
        summary = await conn.fetchrow("SELECT * FROM check_feedback WHERE check_id = $1", check_id)
    assert summary is not None
    assert (summary["applied"], summary["not_applied"], summary["not_applicable"]) == (0, 0, 0)
    assert summary["required_count"] == 2


async def test_summary_row_follows_every_submission(db: Database, caller: Caller) -> None:
    check_id = await _typical_check(db, caller)
    async with db.connection() as conn:
        # Written with the check itself (a trigger on `checks`), before any feedback.
        fresh = await conn.fetchrow("SELECT * FROM check_feedback WHERE check_id = $1", check_id)
    assert fresh is not None
    assert (fresh["decision"], fresh["complete"], fresh["required_count"], fresh["statuses"]) == (
        None,
        False,
        2,
        {},
    )
    assert (fresh["department"], fresh["item_code"], fresh["match_count"]) == (CHECKING_DEPARTMENT, "I01", 2)
    assert sorted(fresh["list_types"]) == ["LT01", "LT05"]
    assert fresh["check_date"] == business_date()

    url = f"/v1/checks/{check_id}/feedback"
    await caller.api.post(url, json=_body({"code": "M01", "status": "applied"}))
    await caller.api.post(
        url,
        json=_body(
            {"code": "M02", "status": "not_applicable", "note": "不涉及"},
            {"code": "M05", "status": "applied"},
            decision="rejected",
        ),
    )
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM check_feedback WHERE check_id = $1", check_id)
    assert row is not None
    ignored = {"updated_at": None, "checked_at": None, "list_types": None}
    assert dict(row) | ignored == ignored | {
        "check_id": check_id,
        "check_date": business_date(),
        "department": CHECKING_DEPARTMENT,
        "item_code": "I01",
        "match_count": 2,
        "decision": "rejected",
        "complete": True,
        "required_count": 2,
        "applied": 1,  # M05 is suspended: reported, kept, not counted
        "not_applied": 0,
        "not_applicable": 1,
        "statuses": {
            "M01": {"status": "applied", "note": None, "required": True},
            "M02": {"status": "not_applicable", "note": "不涉及", "required": True},
            "M05": {"status": "applied", "note": None, "required": False},
        },
        "feedback_due_on": business_date() + dt.timedelta(days=30),
    }


async def test_a_check_stored_before_the_summary_trigger_still_takes_feedback(
    db: Database, caller: Caller
) -> None:
    check_id = await _typical_check(db, caller)
    async with db.connection() as conn:
        await conn.execute("TRUNCATE check_feedback")
    response = await caller.api.post(
        f"/v1/checks/{check_id}/feedback", json=_body({"code": "M01", "status": "applied"})
    )
    assert response.status_code == 200, response.text
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM check_feedback WHERE check_id = $1", check_id)
    assert row is not None
    assert (row["department"], row["applied"], sorted(row["list_types"])) == (
        CHECKING_DEPARTMENT,
        1,
        ["LT01", "LT05"],
    )


async def test_overdue_after_the_due_date_until_complete(db: Database, caller: Caller) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=45)
    check_id = await _typical_check(db, caller, checked_at=old)
    url = f"/v1/checks/{check_id}/feedback"
    status = (await caller.api.get(url)).json()
    assert status["feedback_due_on"] == (business_date(old) + dt.timedelta(days=30)).isoformat()
    assert status["overdue"] is True
    partial = await caller.api.post(url, json=_body({"code": "M01", "status": "applied"}))
    assert partial.json()["overdue"] is True
    done = await caller.api.post(url, json=_body({"code": "M02", "status": "applied"}))
    assert done.json()["complete"] is True
    assert done.json()["overdue"] is False


async def test_due_today_is_not_overdue(db: Database, caller: Caller) -> None:
    at = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    check_id = await _typical_check(db, caller, checked_at=at)
    status = (await caller.api.get(f"/v1/checks/{check_id}/feedback")).json()
    assert status["feedback_due_on"] == (business_date(at) + dt.timedelta(days=30)).isoformat()
    assert status["overdue"] is (business_date() > business_date(at) + dt.timedelta(days=30))


async def test_a_check_without_measures_is_complete_and_takes_a_decision(
    db: Database, caller: Caller
) -> None:
    check_id = await make_check(db, client_id=caller.client_id)
    url = f"/v1/checks/{check_id}/feedback"
    status = (await caller.api.get(url)).json()
    assert status == {
        "check_id": str(check_id),
        "decision": None,
        "complete": True,
        "feedback_due_on": None,
        "overdue": False,
        "measures": [],
    }
    response = await caller.api.post(url, json=_body(decision="withdrawn"))
    assert response.status_code == 200, response.text
    assert response.json()["decision"] == "withdrawn"


# ------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("body", "loc_prefix"),
    [
        (_body({"code": "M01", "status": "not_applied"}), ["body", "measures", 0]),
        (_body({"code": "M01", "status": "not_applicable"}), ["body", "measures", 0]),
        (_body({"code": "M01", "status": "not_applied", "note": "   "}), ["body", "measures", 0]),
        (_body({"code": "M01", "status": "awaiting"}), ["body", "measures", 0, "status"]),
        (_body({"code": "M01", "status": "done"}), ["body", "measures", 0, "status"]),
        (_body({"code": "", "status": "applied"}), ["body", "measures", 0, "code"]),
        (_body({"status": "applied"}), ["body", "measures", 0, "code"]),
        (_body({"code": "M01", "status": "applied", "extra": 1}), ["body", "measures", 0, "extra"]),
        (
            _body({"code": "M01", "status": "applied"}, {"code": "M01", "status": "applied"}),
            ["body", "measures"],
        ),
        (_body({"code": "M01", "status": "applied", "note": "x" * 2001}), ["body", "measures", 0, "note"]),
        (_body(decision="maybe"), ["body", "decision"]),
        (_body(operator=""), ["body", "operator"]),
        (_body(operator="   "), ["body", "operator"]),
        ({"decision": "approved", "measures": []}, ["body", "operator"]),
        ({"decision": "approved", "operator": "x"}, ["body", "measures"]),
        ({"operator": "x", "measures": []}, ["body", "decision"]),
        (_body() | {"client_id": str(uuid.uuid4())}, ["body", "client_id"]),
        (_body() | {"check_id": str(uuid.uuid4())}, ["body", "check_id"]),
        (_body() | {"status": "complete"}, ["body", "status"]),
        (_body(*({"code": f"M{i}", "status": "applied"} for i in range(201))), ["body", "measures"]),
        ({"decision": "approved", "measures": {"code": "M01"}, "operator": "x"}, ["body", "measures"]),
    ],
)
async def test_invalid_bodies_are_422(
    db: Database, caller: Caller, body: dict[str, Any], loc_prefix: list[Any]
) -> None:
    check_id = await _typical_check(db, caller)
    response = await caller.api.post(f"/v1/checks/{check_id}/feedback", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert any(e["loc"][: len(loc_prefix)] == loc_prefix for e in problem["errors"]), problem["errors"]
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM feedback_submissions") == 0


async def test_malformed_json_is_422(db: Database, caller: Caller) -> None:
    check_id = await _typical_check(db, caller)
    response = await caller.api.post(
        f"/v1/checks/{check_id}/feedback",
        content=b'{"decision": "approved", ',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


@pytest.mark.parametrize(
    ("code", "message"),
    [("M99", "M99 is not a measure of this check"), ("M30", "M30 is a withheld incentive")],
)
async def test_codes_outside_the_check_are_422_naming_them(
    db: Database, caller: Caller, code: str, message: str
) -> None:
    check_id = await _typical_check(db, caller)
    response = await caller.api.post(
        f"/v1/checks/{check_id}/feedback",
        json=_body({"code": "M01", "status": "applied"}, {"code": code, "status": "applied"}),
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert code in problem["detail"]
    assert problem["errors"] == [{"loc": ["body", "measures", 1, "code"], "msg": problem["errors"][0]["msg"]}]
    assert problem["errors"][0]["msg"].startswith(message)
    async with db.connection() as conn:
        # Nothing of the submission is kept, not even its valid part.
        assert await conn.fetchval("SELECT count(*) FROM feedback_measures") == 0
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0


# ---------------------------------------------------------------------------------------- object access


async def test_another_clients_check_is_404_like_a_missing_one(
    db: Database, caller: Caller, app_factory: AppFactory
) -> None:
    check_id = await _typical_check(db, caller)
    _, other_key = await make_client(db, scopes="check,feedback", department=CHECKING_DEPARTMENT)
    body = _body({"code": "M01", "status": "applied"})
    ids = {
        "other": str(check_id),
        "random_v7": str(uuid7()),
        "random_v4": str(uuid.uuid4()),
        "v7_past_year_9999": str(uuid.UUID(int=(2**48 - 1) << 80 | 0x7 << 76 | 0b10 << 62)),
        "v7_epoch": str(uuid.UUID(int=0x7 << 76 | 0b10 << 62)),
        "not_a_uuid": "not-a-check",
    }
    async with api_client(app_factory(db, "feedback"), other_key) as other:
        posts = {k: await other.post(f"/v1/checks/{v}/feedback", json=body) for k, v in ids.items()}
        gets = {k: await other.get(f"/v1/checks/{v}/feedback") for k, v in ids.items()}
        keyed = await other.post(
            f"/v1/checks/{check_id}/feedback", json=body, headers={"Idempotency-Key": "probe-1"}
        )
    for answers in (posts, gets):
        for response in answers.values():
            assert response.status_code == 404
            assert response.headers["content-type"] == "application/problem+json"
        assert len({r.content for r in answers.values()}) == 1  # byte-identical
    assert keyed.status_code == 404
    assert keyed.content == posts["random_v7"].content
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM feedback_submissions") == 0
    # The owner still sees an untouched check.
    assert (await caller.api.get(f"/v1/checks/{check_id}/feedback")).json()["decision"] is None


async def test_scopes(db: Database, caller: Caller, app_factory: AppFactory) -> None:
    check_id = await _typical_check(db, caller)
    url = f"/v1/checks/{check_id}/feedback"
    body = _body({"code": "M01", "status": "applied"})
    app = app_factory(db, "feedback")
    # A key of the same client with only `check` reads feedback but may not write it.
    check_only = await make_client(db, scopes="check", department=CHECKING_DEPARTMENT)
    async with db.connection() as conn:
        await conn.execute("UPDATE checks SET client_id = $1 WHERE check_id = $2", check_only[0], check_id)
    async with api_client(app, check_only[1]) as api:
        assert (await api.get(url)).status_code == 200
        denied = await api.post(url, json=body)
        assert denied.status_code == 403
        assert denied.json()["code"] == "forbidden"
    _, stats_key = await make_client(db, scopes="stats:read")
    async with api_client(app, stats_key) as api:
        assert (await api.get(url)).status_code == 403
    async with api_client(app) as api:
        assert (await api.get(url)).status_code == 401
        assert (await api.post(url, json=body)).status_code == 401
    async with api_client(app, "oc_not-a-key") as api:
        assert (await api.post(url, json=body)).status_code == 401


# ------------------------------------------------------------------------------------- audit and outbox


async def test_submission_writes_audit_and_one_outbox_message(db: Database, caller: Caller) -> None:
    check_id = await _typical_check(
        db, caller, subject_code=PERSON_CODE, subject_kind="citizen_id", subject_name="张某某"
    )
    url = f"/v1/checks/{check_id}/feedback"
    response = await caller.api.post(
        url, json=_body({"code": "M01", "status": "applied"}), headers={"X-Request-Id": "req-1"}
    )
    assert response.status_code == 200
    async with db.connection() as conn:
        audit = await conn.fetch("SELECT * FROM audit_log WHERE action = 'feedback.submit'")
    assert len(audit) == 1
    row = audit[0]
    assert (row["client_id"], row["department"], row["operator"], row["status"]) == (
        caller.client_id,
        CHECKING_DEPARTMENT,
        "clerk-017",
        200,
    )
    assert (row["method"], row["path"], row["object_id"], row["request_id"]) == (
        "POST",
        url,
        str(check_id),
        "req-1",
    )
    assert row["item_code"] == "I01"
    assert row["subject_masked"] == PERSON_CODE[:6] + "********" + PERSON_CODE[-4:]
    assert row["subject_hmac"]
    assert PERSON_CODE not in json.dumps(dict(row), default=str)

    [message] = await outbox_rows(db)
    assert message["topic"] == "feedback"
    assert message["state"] == "pending"
    assert message["target_url"] is None
    payload = message["payload"]
    assert set(payload) >= {
        "check_id",
        "item_code",
        "department",
        "subject_code",
        "decision",
        "measures",
        "reported_at",
    }
    assert payload["check_id"] == str(check_id)
    assert payload["item_code"] == "I01"
    assert payload["department"] == CHECKING_DEPARTMENT
    # Documented choice: the upstream government platform gets the identifier it listed, unmasked.
    assert payload["subject_code"] == PERSON_CODE
    assert payload["decision"] == "approved"
    assert [(m["code"], m["status"], m["required"]) for m in payload["measures"]] == [
        ("M01", "applied", True)
    ]
    assert payload["reported_at"] == response.json()["measures"][0]["reported_at"]
    assert row["detail"]["outbox_message_id"] == str(message["message_id"])


async def test_a_code_the_check_never_kept_is_forwarded_masked(db: Database, caller: Caller) -> None:
    check_id = await _typical_check(
        db,
        caller,
        subject_code=PERSON_CODE,
        subject_kind="citizen_id",
        subject_name="张某某",
        pii_client=False,
    )
    await caller.api.post(f"/v1/checks/{check_id}/feedback", json=_body({"code": "M01", "status": "applied"}))
    [message] = await outbox_rows(db)
    assert message["payload"]["subject_code"] == PERSON_CODE[:6] + "********" + PERSON_CODE[-4:]


async def test_every_change_is_forwarded_and_a_repeat_is_not(db: Database, caller: Caller) -> None:
    check_id = await _typical_check(db, caller)
    url = f"/v1/checks/{check_id}/feedback"
    await caller.api.post(url, json=_body({"code": "M01", "status": "applied"}))
    await caller.api.post(url, json=_body({"code": "M01", "status": "applied"}))  # nothing changed
    await caller.api.post(url, json=_body({"code": "M01", "status": "applied"}, decision="rejected"))
    await caller.api.post(
        url, json=_body({"code": "M02", "status": "not_applied", "note": "已修复"}, decision="rejected")
    )
    messages = await outbox_rows(db)
    assert len(messages) == 3
    last = messages[-1]["payload"]
    # Each message carries the whole current picture, so the upstream may keep the latest one.
    assert [(m["code"], m["status"]) for m in last["measures"]] == [
        ("M01", "applied"),
        ("M02", "not_applied"),
    ]
    assert last["complete"] is True
    assert len({m["message_id"] for m in messages}) == 3


async def test_refused_submissions_are_audited_too(db: Database, caller: Caller) -> None:
    check_id = await _typical_check(db, caller)
    await caller.api.post(f"/v1/checks/{uuid7()}/feedback", json=_body({"code": "M01", "status": "applied"}))
    await caller.api.post(f"/v1/checks/{check_id}/feedback", json=_body({"code": "M77", "status": "applied"}))
    async with db.connection() as conn:
        statuses = [r["status"] for r in await conn.fetch("SELECT status FROM audit_log ORDER BY id")]
    assert statuses == [404, 422]


async def test_feedback_versions_are_append_only(db: Database, caller: Caller) -> None:
    check_id = await _typical_check(db, caller)
    await caller.api.post(f"/v1/checks/{check_id}/feedback", json=_body({"code": "M01", "status": "applied"}))
    for statement in ("UPDATE feedback_measures SET status = 'not_applied'", "DELETE FROM feedback_measures"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with db.connection() as conn:  # a savepoint each: the refusal aborts only it
                await conn.execute(statement)


# ------------------------------------------------------------------------------------------ idempotency


async def test_idempotent_replay_answers_the_first_answer(db: Database, caller: Caller) -> None:
    check_id = await _typical_check(db, caller)
    url = f"/v1/checks/{check_id}/feedback"
    body = _body({"code": "M01", "status": "applied"})
    headers = {"Idempotency-Key": "fb-1"}
    first = await caller.api.post(url, json=body, headers=headers)
    again = await caller.api.post(url, json=dict(reversed(list(body.items()))), headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again.headers.get("idempotent-replayed") == "true"
    other_body = await caller.api.post(
        url, json=_body({"code": "M01", "status": "applied"}, decision="rejected"), headers=headers
    )
    assert other_body.status_code == 422
    assert other_body.json()["code"] == "idempotency_key_reused"
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM feedback_submissions") == 1
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 1


async def test_the_same_key_on_another_check_is_another_request(db: Database, caller: Caller) -> None:
    first_check, second_check = await _typical_check(db, caller), await _typical_check(db, caller)
    body = _body({"code": "M01", "status": "applied"})
    headers = {"Idempotency-Key": "fb-shared"}
    one = await caller.api.post(f"/v1/checks/{first_check}/feedback", json=body, headers=headers)
    two = await caller.api.post(f"/v1/checks/{second_check}/feedback", json=body, headers=headers)
    assert one.status_code == two.status_code == 200
    assert two.json()["check_id"] == str(second_check)


async def test_a_failed_attempt_frees_its_key(db: Database, caller: Caller) -> None:
    check_id = await _typical_check(db, caller)
    url = f"/v1/checks/{check_id}/feedback"
    headers = {"Idempotency-Key": "fb-retry"}
    bad = await caller.api.post(url, json=_body({"code": "M99", "status": "applied"}), headers=headers)
    assert bad.status_code == 422
    # Another body under the same key is now a fresh request, not `idempotency_key_reused`.
    good = await caller.api.post(url, json=_body({"code": "M01", "status": "applied"}), headers=headers)
    assert good.status_code == 200, good.text


async def test_idempotency_key_too_long_is_422(db: Database, caller: Caller) -> None:
    check_id = await _typical_check(db, caller)
    response = await caller.api.post(
        f"/v1/checks/{check_id}/feedback",
        json=_body({"code": "M01", "status": "applied"}),
        headers={"Idempotency-Key": "k" * 201},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
