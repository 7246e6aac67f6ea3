"""Contract fixtures of list-sync and feedback: docs/examples/list-sync/ and docs/examples/feedback/ hold
request/response pairs from one real run of both services (and a check through check-api) on the demo data.

As for the check-api (test_check_api_contract.py): with ONECHECK_WRITE_EXAMPLES=1 the pairs are (re)written,
with the bundles the services' OpenAPI documents read them from; otherwise every answer must have the status,
the content type and the shape (keys, nesting, JSON types) of its example.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from services.list_sync.runs import registry_of
from shared.codes import citizen_id_check_char
from shared.db.engine import Database
from shared.lifecycle import business_date
from shared.settings import Settings
from tests.builders import load_catalogue, load_demo_subjects, make_client
from tests.conftest import AppFactory, api_client
from tests.contract.examples import EXAMPLES, WRITE, shape, write_bundle, write_examples
from tests.list_sync.helpers import envelope, page, uscc

UPSTREAM = "https://credit-platform.example/api"
COURT = "江门市人民法院"
COMPANY = "91440703MA51XK8P7P"  # synthetic, valid check characters
PERSON = "44070319800101123" + citizen_id_check_char("44070319800101123")


@dataclass
class Recorded:
    service: str
    name: str
    title: str
    request: dict[str, Any]
    response: httpx.Response
    template: str


class Recorder:
    def __init__(self) -> None:
        self.items: list[Recorded] = []

    async def call(
        self,
        api: httpx.AsyncClient,
        service: str,
        name: str,
        title: str,
        method: str,
        template: str,
        *,
        ids: dict[str, str] | None = None,
        body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        status: int = 200,
    ) -> httpx.Response:
        path = template.format(**(ids or {}))
        response = await api.request(method, path, json=body, params=params, headers=headers)
        assert response.status_code == status, (name, response.text[:500])
        shown = path + ("?" + str(httpx.QueryParams(params)) if params else "")
        request: dict[str, Any] = {
            "method": method,
            "path": shown,
            "headers": {"Authorization": "Bearer <api key>", **(headers or {})},
        }
        if body is not None:
            request["body"] = body
        self.items.append(Recorded(service, name, title, request, response, template))
        return response


def _record(source_id: str, code: str, name: str, **extra: Any) -> dict[str, Any]:
    today = business_date()
    out: dict[str, Any] = {
        "source_id": source_id,
        "list_type": "LT01",
        "subject": {"code": code, "name": name},
        "reason": "有履行能力而拒不履行生效法律文书确定义务",
        "decision_no": f"(2026)粤0703执{source_id}号",
        "issuing_department": COURT,
        "listed_on": (today - dt.timedelta(days=30)).isoformat(),
        "expires_on": (today + dt.timedelta(days=700)).isoformat(),
        "status": "active",
        "updated_at": f"{today - dt.timedelta(days=1)}T09:00:00+08:00",
    }
    out.update(extra)
    return out


async def _run_all(db: Database, app_factory: AppFactory, test_settings: Settings) -> Recorder:
    await load_catalogue(db)
    await load_demo_subjects(db)
    settings = test_settings.model_copy(
        update={
            "feedback_upstream_url": "https://credit-platform.example/feedback",
            "feedback_upstream_token": SecretStr("upstream-token"),
            "sync_max_retries": 0,
        }
    )
    app = app_factory(db, "all", settings)
    registry = registry_of(app.state)
    court = (await make_client(db, scopes="lists:read,lists:write", department=COURT, name="法院执行系统"))[1]
    admin = (await make_client(db, scopes="sync:admin", name="归集管理"))[1]
    clerk = (await make_client(db, scopes="check,feedback", department="住房和城乡建设局", name="审批系统"))[
        1
    ]
    stats = (await make_client(db, scopes="stats:read", name="信用办通报"))[1]
    rec = Recorder()
    today = business_date()
    ids: dict[str, str] = {}
    async with (
        api_client(app, court) as lists,
        api_client(app, admin) as sync,
        api_client(app, clerk) as business,
        api_client(app, stats) as office,
    ):
        # --- subscriptions first, so the entry changes below are delivered to one ---------------------
        created = await rec.call(
            lists,
            "list-sync",
            "create-subscription",
            "Subscribe to black-list changes of one company (the secret is shown once)",
            "POST",
            "/v1/subscriptions",
            body={
                "callback_url": "https://erp.example/onecheck/callback",
                "subject_codes": [COMPANY],
                "list_kinds": ["black"],
            },
            status=201,
        )
        ids["subscription_id"] = created.json()["subscription_id"]
        # --- entries ---------------------------------------------------------------------------------
        published = await rec.call(
            lists,
            "list-sync",
            "publish-entry",
            "Publish a black-list entry (失信被执行人) naming the legal representative",
            "POST",
            "/v1/entries",
            body={
                "list_type": "LT01",
                "subject": {"code": COMPANY, "name": "江门某进出口有限公司", "kind": "uscc"},
                "linked_persons": [{"role": "legal_representative", "code": PERSON, "name": "张某"}],
                "reason": "有履行能力而拒不履行生效法律文书确定义务",
                "decision_no": "(2026)粤0703执1234号",
                "listed_on": (today - dt.timedelta(days=3)).isoformat(),
                "operator": "执行局-李某",
            },
            status=201,
        )
        ids["entry_id"] = published.json()["entry_id"]
        await rec.call(
            lists,
            "list-sync",
            "get-entry",
            "An entry with its history (the legal representative masked without pii:read)",
            "GET",
            "/v1/entries/{entry_id}",
            ids=ids,
        )
        await rec.call(
            lists,
            "list-sync",
            "entry-event",
            "An objection (异议) recorded: the entry is objection_pending, its measures suspended",
            "POST",
            "/v1/entries/{entry_id}/events",
            ids=ids,
            body={"type": "objection", "basis": "当事人提出异议，已受理核实", "operator": "执行局-李某"},
        )
        await rec.call(
            lists,
            "list-sync",
            "list-subscriptions",
            "This client's subscriptions (without secrets)",
            "GET",
            "/v1/subscriptions",
        )
        await rec.call(
            lists,
            "list-sync",
            "subscription-deliveries",
            "The callbacks of a subscription: the publication and the objection, waiting for the relay",
            "GET",
            "/v1/subscriptions/{subscription_id}/deliveries",
            ids=ids,
        )
        await rec.call(
            lists,
            "list-sync",
            "cancel-subscription",
            "Stop a subscription (it is kept, inactive)",
            "DELETE",
            "/v1/subscriptions/{subscription_id}",
            ids=ids,
        )
        # --- sources and runs ------------------------------------------------------------------------
        await rec.call(
            sync,
            "list-sync",
            "create-source",
            "Register a feed from the credit platform (the token is never returned)",
            "POST",
            "/v1/sources",
            body={
                "name": "court-feed",
                "kind": "feed",
                "base_url": UPSTREAM,
                "token": "<upstream token>",
                "interval_seconds": 3600,
            },
            status=201,
        )
        await sync.post(
            "/v1/sources", json={"name": "tax-snapshot", "kind": "snapshot", "base_url": UPSTREAM + "/tax"}
        )
        await rec.call(sync, "list-sync", "list-sources", "All sources", "GET", "/v1/sources")
        feed = [
            _record("A-1001", uscc(1001), "江门某建材有限公司"),
            _record("A-1002", uscc(1002), "江门某物流有限公司", list_type="LT99"),
        ]
        with respx.mock(base_url=UPSTREAM, assert_all_called=False) as mock:
            mock.get("/entries").mock(return_value=page(envelope(feed, next_cursor="c-2", has_more=False)))
            started = await rec.call(
                sync,
                "list-sync",
                "start-run",
                "Start a run now: 202 with the run, which goes on in the background",
                "POST",
                "/v1/sources/{name}/runs",
                ids={"name": "court-feed"},
                status=202,
            )
            ids["run_id"] = started.json()["run_id"]
            await registry.wait(ids["run_id"])
        await rec.call(
            sync,
            "list-sync",
            "get-run",
            "A finished run: one record inserted, one quarantined (unknown list type)",
            "GET",
            "/v1/runs/{run_id}",
            ids=ids,
        )
        await rec.call(
            sync,
            "list-sync",
            "list-runs",
            "The recent runs of a source",
            "GET",
            "/v1/runs",
            params={"source": "court-feed", "limit": 20},
        )
        await rec.call(
            sync,
            "list-sync",
            "quarantine",
            "The quarantined records of a run, each with its line, reason and rule",
            "GET",
            "/v1/quarantine",
            params={"run_id": ids["run_id"]},
        )
        # A snapshot that would end 2 of the source's 3 entries is held until confirmed or discarded.
        listing = [_record(f"T-{i}", uscc(2000 + i), f"江门某商贸{i}号有限公司") for i in (1, 2, 3)]
        held_ids = []
        with respx.mock(base_url=UPSTREAM + "/tax", assert_all_called=False) as mock:
            route = mock.get("/entries")
            for listed in (listing, listing[:1], []):
                route.mock(return_value=page(envelope(listed)))
                run = (await sync.post("/v1/sources/tax-snapshot/runs")).json()
                await registry.wait(run["run_id"])
                if listed is not listing:
                    held_ids.append(run["run_id"])
                    if len(held_ids) == 1:
                        await rec.call(
                            sync,
                            "list-sync",
                            "confirm-run",
                            "Apply a held snapshot (it would end 2 of 3 entries in effect): it runs in the "
                            "background",
                            "POST",
                            "/v1/runs/{run_id}/confirm",
                            ids={"run_id": held_ids[0]},
                            status=202,
                        )
                        await registry.wait(held_ids[0])
        await rec.call(
            sync,
            "list-sync",
            "discard-run",
            "Discard a held snapshot: nothing changes",
            "POST",
            "/v1/runs/{run_id}/discard",
            ids={"run_id": held_ids[1]},
        )
        # --- feedback ----------------------------------------------------------------------------------
        check = await business.post(
            "/v1/checks",
            json={
                "item_code": "I01",
                "subject": {"code": "91110105MA01ABCD5F", "name": "北京某建设工程有限公司"},
                "business_ref": "SP-2026-000123",
                "operator": "clerk-017",
            },
        )
        assert check.status_code == 200, check.text
        answer = check.json()
        ids["check_id"] = answer["check_id"]
        codes = [m["code"] for m in answer["measures"]]
        assert len(codes) >= 2, codes
        await rec.call(
            business,
            "feedback",
            "post-feedback",
            "Report the decision and what was applied (反馈); the rest stays awaiting",
            "POST",
            "/v1/checks/{check_id}/feedback",
            ids=ids,
            body={
                "decision": "rejected",
                "measures": [
                    {"code": codes[0], "status": "applied"},
                    {"code": codes[1], "status": "not_applied", "note": "申请人已履行完毕，待法院移出名单"},
                ],
                "operator": "clerk-017",
            },
            headers={"Idempotency-Key": "SP-2026-000123-feedback-1"},
        )
        await rec.call(
            business,
            "feedback",
            "get-feedback",
            "The feedback status of a check",
            "GET",
            "/v1/checks/{check_id}/feedback",
            ids=ids,
        )
        match = answer["matches"][0]
        issuer = (
            await make_client(
                db, scopes="lists:read", department=match["issuing_department"], name="认定部门"
            )
        )[1]
        async with api_client(app, issuer) as issuing:
            await rec.call(
                issuing,
                "feedback",
                "entry-enforcement",
                "How an entry was enforced (发起-响应-反馈): its checks and the feedback on them",
                "GET",
                "/v1/entries/{entry_id}/enforcement",
                ids={"entry_id": match["entry_id"]},
                params={"limit": 50},
            )
        await rec.call(
            office,
            "feedback",
            "stats",
            "Enforcement figures of this month",
            "GET",
            "/v1/stats/enforcement",
            params={"from": today.replace(day=1).isoformat(), "to": today.isoformat()},
        )
        async with db.connection() as conn:  # one callback given up on, to show a dead letter
            await conn.execute(
                "UPDATE outbox SET state = 'dead', attempts = 20, "
                "last_error = 'ConnectError: [Errno 111] Connection refused' "
                "WHERE id = (SELECT min(id) FROM outbox WHERE topic = 'subscription')"
            )
        await rec.call(
            sync,
            "feedback",
            "outbox",
            "The outbox: pending, delivered and dead messages by topic, and the dead letters",
            "GET",
            "/v1/outbox",
            params={"dead_limit": 10},
        )
        await rec.call(
            sync, "feedback", "outbox-replay", "Re-queue every dead letter", "POST", "/v1/outbox/replay"
        )
    return rec


@pytest.fixture
async def recorded(db: Database, app_factory: AppFactory, test_settings: Settings) -> Recorder:
    return await _run_all(db, app_factory, test_settings)


async def test_examples_match_the_services(recorded: Recorder) -> None:
    for service in ("list-sync", "feedback"):
        mine = [r for r in recorded.items if r.service == service]
        if WRITE:
            write_examples(
                EXAMPLES / service,
                f"{service} examples",
                "tests/contract/test_list_sync_feedback_contract.py",
                [
                    (r.name, r.title, r.request, r.response, f"{r.request['method']} {r.template}")
                    for r in mine
                ],
            )
            write_bundle(service)
        for r in mine:
            example = json.loads((EXAMPLES / service / f"{r.name}.json").read_text(encoding="utf-8"))
            assert r.response.status_code == example["response"]["status"], r.name
            assert r.response.headers["content-type"] == example["response"]["content_type"], r.name
            assert shape(r.response.json()) == shape(example["response"]["body"]), r.name
