"""GET /v1/entries/{entry_id}/enforcement: the issuing department's view (发起-响应-反馈)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from shared.db.engine import Database
from shared.ids import uuid7
from tests.builders import load_catalogue, make_client
from tests.conftest import AppFactory, api_client
from tests.feedback.builders import COURT, PERSON_CODE, Match, Measure, make_check, make_entry_row

PERSON_NAME = "张三丰"
MASKED_PERSON = PERSON_CODE[:6] + "********" + PERSON_CODE[-4:]


@dataclass(frozen=True)
class Scene:
    entry_id: uuid.UUID
    org_check: uuid.UUID
    person_check: uuid.UUID
    app: FastAPI


@pytest.fixture
async def scene(db: Database, app_factory: AppFactory) -> Scene:
    await load_catalogue(db)
    entry_id = await make_entry_row(db, issuing_department=COURT)
    other_entry = Match(list_type="LT05", issuing_department="江门市税务局")
    ours = Match(entry_id=entry_id)
    app = app_factory(db, "feedback")
    builder_id, builder_key = await make_client(db, scopes="feedback", department="江门市住房和城乡建设局")
    org_check = await make_check(
        db,
        client_id=builder_id,
        # Earlier than the next check, so the page order (UUIDv7 order) is certain.
        checked_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2),
        matches=[ours, other_entry],
        measures=[
            Measure("M01", triggered_by=(entry_id,)),
            Measure("M02", mandatory=False, triggered_by=(entry_id,)),
            Measure("M23", triggered_by=(other_entry.entry_id,)),
        ],
        withheld=[Measure("M30", kind="incentive", triggered_by=(entry_id,))],
    )
    async with api_client(app, builder_key) as api:
        response = await api.post(
            f"/v1/checks/{org_check}/feedback",
            json={
                "decision": "approved_with_conditions",
                "measures": [{"code": "M01", "status": "applied"}, {"code": "M23", "status": "applied"}],
                "operator": "clerk-9",
            },
        )
        assert response.status_code == 200, response.text
    # A natural person checked by another department, matched as the entry's linked person.
    market_id, _ = await make_client(db, scopes="check", department="江门市市场监督管理局")
    person_check = await make_check(
        db,
        client_id=market_id,
        department="江门市市场监督管理局",
        item_code="I02",
        subject_code=PERSON_CODE,
        subject_kind="citizen_id",
        subject_name=PERSON_NAME,
        matches=[
            Match(
                entry_id=entry_id,
                via="responsible_person",
                matched_code=PERSON_CODE,
                matched_role="legal_representative",
            )
        ],
        measures=[Measure("M05", target="responsible_person", triggered_by=(entry_id,))],
    )
    return Scene(entry_id, org_check, person_check, app)


async def _view(scene: Scene, key: str, **params: str) -> httpx.Response:
    async with api_client(scene.app, key) as api:
        return await api.get(f"/v1/entries/{scene.entry_id}/enforcement", params=params)


async def test_the_issuing_department_sees_checks_and_feedback(db: Database, scene: Scene) -> None:
    _, key = await make_client(db, scopes="lists:read", department=COURT)
    response = await _view(scene, key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["entry_id"] == str(scene.entry_id)
    assert (body["list_type"], body["issuing_department"]) == ("LT01", COURT)
    assert body["totals"] == {
        "checks": 2,
        "required_measures": 3,
        "applied": 1,
        "not_applied": 0,
        "not_applicable": 0,
        "awaiting": 2,
    }
    assert body["next_cursor"] is None
    first, second = body["checks"]
    assert first["check_id"] == str(scene.org_check)  # oldest first
    assert (first["department"], first["item_code"], first["business_ref"]) == (
        "江门市住房和城乡建设局",
        "I01",
        "SP-2026-000123",
    )
    assert first["decision"] == "approved_with_conditions"
    assert (first["complete"], first["overdue"]) == (False, False)
    assert first["matches"] == [
        {
            "via": "subject",
            "matched_code": "91110105MA01ABCD5F",
            "matched_role": None,
            "entry_status": "active",
        }
    ]
    # Only what this entry triggered or blocked: M23 came from another department's entry.
    assert [(m["code"], m["disposition"], m["status"], m["operator"]) for m in first["measures"]] == [
        ("M01", "required", "applied", "clerk-9"),
        ("M02", "required", "awaiting", None),
        ("M30", "withheld", None, None),
    ]
    assert second["check_id"] == str(scene.person_check)
    assert [(m["code"], m["target"], m["status"]) for m in second["measures"]] == [
        ("M05", "responsible_person", "awaiting")
    ]


async def test_personal_data_is_masked_without_pii_read(db: Database, scene: Scene) -> None:
    _, key = await make_client(db, scopes="lists:read", department=COURT)
    response = await _view(scene, key)
    person = response.json()["checks"][1]
    assert person["subject"] == {"code": MASKED_PERSON, "kind": "citizen_id", "name": "张*"}
    assert person["matches"][0]["matched_code"] == MASKED_PERSON
    assert person["matches"][0]["via"] == "responsible_person"
    assert PERSON_CODE not in response.text
    assert PERSON_NAME not in response.text

    _, pii_key = await make_client(db, scopes="lists:read,pii:read", department=COURT)
    clear = (await _view(scene, pii_key)).json()["checks"][1]
    assert clear["subject"] == {"code": PERSON_CODE, "kind": "citizen_id", "name": PERSON_NAME}
    assert clear["matches"][0]["matched_code"] == PERSON_CODE


async def test_other_departments_get_404_like_a_missing_entry(db: Database, scene: Scene) -> None:
    _, other = await make_client(db, scopes="lists:read,pii:read", department="江门市住房和城乡建设局")
    answers = []
    async with api_client(scene.app, other) as api:
        for entry in (str(scene.entry_id), str(uuid.uuid4()), str(uuid7()), "no-such-entry"):
            answers.append(await api.get(f"/v1/entries/{entry}/enforcement"))
    assert {r.status_code for r in answers} == {404}
    assert len({r.content for r in answers}) == 1
    _, no_scope = await make_client(db, scopes="feedback,stats:read", department=COURT)
    assert (await _view(scene, no_scope)).status_code == 403


async def test_pages_follow_the_cursor(db: Database, scene: Scene) -> None:
    _, key = await make_client(db, scopes="lists:read", department=COURT)
    page1 = (await _view(scene, key, limit="1")).json()
    assert [c["check_id"] for c in page1["checks"]] == [str(scene.org_check)]
    assert page1["next_cursor"] == str(scene.org_check)
    page2 = (await _view(scene, key, limit="1", cursor=page1["next_cursor"])).json()
    assert [c["check_id"] for c in page2["checks"]] == [str(scene.person_check)]
    page3 = (await _view(scene, key, limit="1", cursor=page2["next_cursor"])).json()
    assert (page3["checks"], page3["next_cursor"]) == ([], None)
    assert page3["totals"]["checks"] == 2
    assert (await _view(scene, key, cursor="nonsense")).status_code == 422
    assert (await _view(scene, key, limit="0")).status_code == 422
    assert (await _view(scene, key, limit="1001")).status_code == 422


async def test_reads_are_audited_masked(db: Database, scene: Scene) -> None:
    client_id, key = await make_client(db, scopes="lists:read,pii:read", department=COURT)
    await _view(scene, key)
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT * FROM audit_log WHERE action = 'entry.enforcement.read' AND client_id = $1", client_id
        )
    assert len(rows) == 1
    assert (rows[0]["object_id"], rows[0]["status"]) == (str(scene.entry_id), 200)
    assert PERSON_CODE not in json.dumps([dict(r) for r in rows], default=str)
