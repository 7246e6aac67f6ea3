"""Concurrent submissions with real commits (RELIABILITY I1, I2)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from shared.db.engine import Database
from tests.builders import make_client
from tests.conftest import AppFactory, api_client
from tests.feedback.builders import CHECKING_DEPARTMENT, Match, make_check

pytestmark = pytest.mark.committing


async def test_concurrent_replays_record_one_submission(
    committed_db: Database, app_factory: AppFactory
) -> None:
    client_id, key = await make_client(committed_db, scopes="feedback", department=CHECKING_DEPARTMENT)
    check_id = await make_check(committed_db, client_id=client_id, matches=[Match()], measures=["M01", "M02"])
    body: dict[str, Any] = {
        "decision": "approved",
        "measures": [
            {"code": "M01", "status": "applied"},
            {"code": "M02", "status": "not_applied", "note": "申请人已履行"},
        ],
        "operator": "clerk-017",
    }
    url = f"/v1/checks/{check_id}/feedback"
    async with api_client(app_factory(committed_db, "feedback"), key) as api:
        responses = await asyncio.gather(
            *(api.post(url, json=body, headers={"Idempotency-Key": "same-key"}) for _ in range(50))
        )
        after = await api.post(url, json=body, headers={"Idempotency-Key": "same-key"})
        reused = await api.post(
            url, json=body | {"decision": "rejected"}, headers={"Idempotency-Key": "same-key"}
        )
    statuses = {r.status_code for r in responses}
    assert statuses <= {200, 409}, [r.text for r in responses if r.status_code not in (200, 409)]
    assert 200 in statuses
    assert len({r.content for r in responses if r.status_code == 200}) == 1
    assert all(r.json()["code"] == "conflict" for r in responses if r.status_code == 409)
    assert after.status_code == 200
    assert after.content == next(r.content for r in responses if r.status_code == 200)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    async with committed_db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM feedback_submissions") == 1
        assert await conn.fetchval("SELECT count(*) FROM feedback_measures") == 2
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 1
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE status = 200") == 1


async def test_concurrent_different_submissions_keep_a_consistent_summary(
    committed_db: Database, app_factory: AppFactory
) -> None:
    client_id, key = await make_client(committed_db, scopes="feedback", department=CHECKING_DEPARTMENT)
    codes = [f"M{i:02d}" for i in range(1, 21)]
    check_id = await make_check(committed_db, client_id=client_id, matches=[Match()], measures=codes)
    url = f"/v1/checks/{check_id}/feedback"

    def body(code: str, status: str) -> dict[str, Any]:
        report = {"code": code, "status": status} | ({"note": "不涉及"} if status != "applied" else {})
        return {"decision": "approved", "measures": [report], "operator": f"clerk-{code}"}

    async with api_client(app_factory(committed_db, "feedback"), key) as api:
        # Every measure reported twice at once: not_applicable then applied, racing each other.
        responses = await asyncio.gather(
            *(
                api.post(url, json=body(code, status))
                for code in codes
                for status in ("not_applicable", "applied")
            )
        )
        final = (await api.get(url)).json()
    assert {r.status_code for r in responses} == {200}
    assert final["complete"] is True
    async with committed_db.connection() as conn:
        summary = await conn.fetchrow("SELECT * FROM check_feedback WHERE check_id = $1", check_id)
        versions = await conn.fetchval("SELECT count(*) FROM feedback_measures")
    assert versions == 40
    assert summary is not None
    current = [m["status"] for m in final["measures"]]
    assert summary["applied"] == current.count("applied")
    assert summary["not_applicable"] == current.count("not_applicable")
    assert summary["applied"] + summary["not_applicable"] == 20
    assert summary["complete"] is True
    for measure in final["measures"]:
        times = [dt.datetime.fromisoformat(h["reported_at"]) for h in measure["history"]]
        # Versions are stamped after the check's lock, so history order and time order agree.
        assert times == sorted(times)
        assert measure["status"] == measure["history"][-1]["status"]
