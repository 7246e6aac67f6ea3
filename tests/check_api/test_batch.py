"""POST /v1/checks/batch: order, per-subject problems, limits, whole-batch errors, storage."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.db.engine import Database
from tests.builders import load_demo_subjects
from tests.check_api.conftest import BEIJING, CHEN, CHENGDU, HANGZHOU, SHENZHEN, WANG, Keys
from tests.conftest import api_client

pytestmark = pytest.mark.usefixtures("catalogue")


def _batch(item: str, subjects: list[dict[str, Any]]) -> dict[str, Any]:
    return {"item_code": item, "business_ref": "BATCH-1", "operator": "clerk-2", "subjects": subjects}


async def test_results_come_in_request_order_with_problems_inline(
    db: Database, api: httpx.AsyncClient
) -> None:
    await load_demo_subjects(db)
    response = await api.post(
        "/v1/checks/batch",
        json=_batch(
            "I10",
            [
                {"code": BEIJING, "name": "北京某建设工程有限公司"},
                {"code": "91110105MA01ABCD5G"},
                {"code": HANGZHOU, "related_persons": [{"role": "legal_representative", "code": WANG}]},
                {"code": "110105199003072194"},
                {"code": CHENGDU, "kind": "uscc"},
                {"code": HANGZHOU, "related_persons": [{"role": "legal_representative", "code": "123"}]},
            ],
        ),
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r.get("outcome") or r["code"] for r in results] == [
        "penalty",
        "invalid_subject_code",
        "penalty",
        "ambiguous_subject_code",
        "penalty",
        "invalid_subject_code",
    ]
    assert results[1]["errors"] == [
        {
            "loc": ["body", "subjects", 1, "code"],
            "msg": "check character should be 'F', got 'G'",
            "rule": "uscc.check_char",
        }
    ]
    assert results[1]["status"] == 422
    assert results[1]["type"] == "/problems/invalid_subject_code"
    assert results[5]["errors"][0]["loc"] == ["body", "subjects", 5, "related_persons", 0, "code"]
    assert results[0]["subject"]["name"] == "北京某建设工程有限公司"
    assert results[2]["matches"][0]["via"] == "responsible_person"
    assert [w["code"] for w in results[4]["withheld_incentives"]] == ["M31"]
    assert len({r["check_id"] for r in results if "check_id" in r}) == 3


async def test_each_result_is_a_stored_check_of_the_batch(db: Database, api: httpx.AsyncClient) -> None:
    await load_demo_subjects(db)
    answer = (
        await api.post("/v1/checks/batch", json=_batch("I02", [{"code": SHENZHEN}, {"code": CHEN}]))
    ).json()
    batch_id = uuid.UUID(answer["batch_id"])
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT check_id, response::text AS text, business_ref, operator FROM checks WHERE batch_id = $1",
            batch_id,
        )
        audits = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE detail->>'batch_id' = $1", str(batch_id)
        )
    assert len(rows) == 2
    assert audits == 2
    assert {r["business_ref"] for r in rows} == {"BATCH-1"}
    for result in answer["results"]:
        read = await api.get(f"/v1/checks/{result['check_id']}")
        assert read.json() == result
    assert answer["results"][0]["suspended_measures"][0]["reason"] == "核实期间暂不执行"


@pytest.mark.parametrize("size", [0, 1001])
async def test_a_batch_has_1_to_1000_subjects(api: httpx.AsyncClient, size: int) -> None:
    response = await api.post("/v1/checks/batch", json=_batch("I07", [{"code": HANGZHOU}] * size))
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_a_batch_of_1000_is_answered(db: Database, api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/checks/batch", json=_batch("I07", [{"code": HANGZHOU}] * 1000))
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1000
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checks") == 1000


async def test_an_unknown_item_fails_the_whole_batch(db: Database, api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/checks/batch", json=_batch("I99", [{"code": HANGZHOU}, {"code": "bad"}]))
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_item"
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checks") == 0


async def test_another_departments_item_fails_the_whole_batch(app: FastAPI, keys: Keys) -> None:
    async with api_client(app, keys.finance) as api:
        denied = await api.post("/v1/checks/batch", json=_batch("I01", [{"code": HANGZHOU}]))
        allowed = await api.post("/v1/checks/batch", json=_batch("I07", [{"code": HANGZHOU}]))
    assert denied.status_code == 403
    assert allowed.status_code == 200


async def test_a_batch_of_only_bad_codes_stores_nothing(db: Database, api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/checks/batch", json=_batch("I07", [{"code": "x"}, {"code": ""}]))
    assert response.status_code == 200
    assert [r["code"] for r in response.json()["results"]] == ["invalid_subject_code"] * 2
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checks") == 0


async def test_unknown_fields_in_a_batch_are_refused(api: httpx.AsyncClient) -> None:
    body = _batch("I07", [{"code": HANGZHOU, "client_id": "x"}])
    assert (await api.post("/v1/checks/batch", json=body)).status_code == 422


async def test_a_batch_is_idempotent(db: Database, api: httpx.AsyncClient) -> None:
    body = _batch("I07", [{"code": HANGZHOU}, {"code": BEIJING}])
    first = await api.post("/v1/checks/batch", json=body, headers={"Idempotency-Key": "b-1"})
    again = await api.post("/v1/checks/batch", json=body, headers={"Idempotency-Key": "b-1"})
    assert again.content == first.content
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checks") == 2
