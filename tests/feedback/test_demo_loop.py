"""The whole loop on the demo data (issue 5, "Done when"): a check, its feedback, the statistics, the issuing
department's view, and delivery to a local upstream receiver (127.0.0.1) that is down first and comes back."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from shared.db.engine import Database
from shared.demo import DEMO_DEPARTMENT, load_demo
from shared.lifecycle import business_date
from shared.outbox import relay
from shared.outbox.relay import deliver_due
from shared.settings import Settings
from tests.builders import make_client
from tests.conftest import AppFactory, api_client
from tests.feedback.builders import make_due, outbox_rows
from tests.http_servers import LocalServer, Scripted, free_port

BEIJING = "91110105MA01ABCD5F"  # demo: LT01 (江门市人民法院) and LT06 entries; I01 requires M05, M11, M22
COURT = "江门市人民法院"
CONTRACT_BODY = {"check_id", "item_code", "department", "subject_code", "decision", "measures", "reported_at"}


async def test_the_whole_loop_on_the_demo_data(
    db: Database, app_factory: AppFactory, test_settings: Settings
) -> None:
    async with db.session() as session:
        _, _, demo_key = await load_demo(session, business_date())
    app = app_factory(db)  # all three services, as `onecheck serve` runs them

    # 发起: the check.
    async with api_client(app, demo_key) as demo:
        checked = await demo.post(
            "/v1/checks",
            json={
                "item_code": "I01",
                "subject": {"code": BEIJING},
                "business_ref": "SP-2026-0001",
                "operator": "c",
            },
        )
        assert checked.status_code == 200, checked.text
        check = checked.json()
        assert check["outcome"] == "penalty"
        assert [m["code"] for m in check["measures"]] == ["M05", "M11", "M22"]
        lt01 = next(m["entry_id"] for m in check["matches"] if m["list"]["code"] == "LT01")

        # 响应-反馈: what the business system did with each required measure.
        reported = await demo.post(
            f"/v1/checks/{check['check_id']}/feedback",
            json={
                "decision": "approved_with_conditions",
                "measures": [
                    {"code": "M05", "status": "applied"},
                    {"code": "M11", "status": "applied"},
                    {"code": "M22", "status": "not_applied", "note": "申请人已提交履行完毕证明"},
                ],
                "operator": "clerk-017",
            },
        )
        assert reported.status_code == 200, reported.text
        status = (await demo.get(f"/v1/checks/{check['check_id']}/feedback")).json()
        assert (status["decision"], status["complete"], status["overdue"]) == (
            "approved_with_conditions",
            True,
            False,
        )
        assert {m["code"]: m["status"] for m in status["measures"]} == {
            "M05": "applied",
            "M11": "applied",
            "M22": "not_applied",
        }

        # 通报: the statistics.
        stats = (await demo.get("/v1/stats/enforcement")).json()
        assert stats["totals"] == {
            "checks": 1,
            "checks_with_matches": 1,
            "awaiting_feedback": 0,
            "overdue": 0,
            "required_measures": 3,
            "applied": 2,
            "not_applied": 1,
            "not_applicable": 0,
        }
        assert [(d["department"], d["checks"]) for d in stats["by_department"]] == [(DEMO_DEPARTMENT, 1)]
        assert [(i["item_code"], i["applied"]) for i in stats["by_item"]] == [("I01", 2)]
        # Another department's entry: the demo client is not its issuing department.
        assert (await demo.get(f"/v1/entries/{lt01}/enforcement")).status_code == 404

    # The issuing department's view of its LT01 entry.
    _, court_key = await make_client(db, scopes="lists:read", department=COURT, name="court")
    async with api_client(app, court_key) as court:
        view = await court.get(f"/v1/entries/{lt01}/enforcement")
    assert view.status_code == 200, view.text
    enforcement = view.json()
    assert enforcement["totals"] == {
        "checks": 1,
        "required_measures": 2,
        "applied": 1,
        "not_applied": 1,
        "not_applicable": 0,
        "awaiting": 0,
    }
    [seen] = enforcement["checks"]
    assert (seen["check_id"], seen["department"], seen["item_code"]) == (
        check["check_id"],
        DEMO_DEPARTMENT,
        "I01",
    )
    assert [(m["code"], m["status"]) for m in seen["measures"]] == [
        ("M05", "applied"),
        ("M22", "not_applied"),
    ]

    # Forwarded upstream: the platform is down (connection refused), then busy (503), then takes it.
    port = free_port()
    settings = test_settings.model_copy(
        update={
            "feedback_upstream_url": f"http://127.0.0.1:{port}/credit",
            "feedback_upstream_token": SecretStr("province-token"),
        }
    )
    [message] = await outbox_rows(db)
    assert message["topic"] == "feedback"
    upstream = LocalServer(Scripted(503, 200), port=port)
    await make_due(db)
    async with relay.make_http_client(settings) as http:
        assert await deliver_due(db, settings, http, limit=10) == 1
        [row] = await outbox_rows(db)
        assert (row["state"], row["attempts"]) == ("pending", 1)
        assert row["last_error"].startswith("ConnectError")
        with upstream:
            await make_due(db)
            assert await deliver_due(db, settings, http, limit=10) == 1
            [row] = await outbox_rows(db)
            assert (row["state"], row["attempts"]) == ("pending", 2)
            assert row["last_error"].startswith("HTTP 503")
            await make_due(db)
            assert await deliver_due(db, settings, http, limit=10) == 1
            [row] = await outbox_rows(db)
    assert (row["state"], row["attempts"]) == ("delivered", 3)
    assert len(upstream.requests) == 2
    for request in upstream.requests:
        assert (request.method, request.path) == ("POST", "/credit/feedback")
        assert request.headers["idempotency-key"] == str(message["message_id"])  # the same on every attempt
        assert request.headers["authorization"] == "Bearer province-token"
        body: dict[str, Any] = request.json()
        assert set(body) >= CONTRACT_BODY
        assert (body["check_id"], body["item_code"], body["department"], body["subject_code"]) == (
            check["check_id"],
            "I01",
            DEMO_DEPARTMENT,
            BEIJING,
        )
        assert body["decision"] == "approved_with_conditions"
        assert {m["code"]: m["status"] for m in body["measures"]} == {
            "M05": "applied",
            "M11": "applied",
            "M22": "not_applied",
        }
        assert body["reported_at"]
    assert upstream.requests[0].body == upstream.requests[1].body
