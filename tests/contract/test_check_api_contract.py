"""Contract fixtures of the check-api: docs/examples/ holds request/response pairs from real runs on the demo data.

Each scenario below runs against the service. With ONECHECK_WRITE_EXAMPLES=1 the pairs are (re)written to
docs/examples/; otherwise every answer must have the same status and the same shape (keys, nesting, JSON
types) as its example, so a renamed, dropped or retyped field fails here before an integrator sees it.
The contract's own field lists (contract/API.md) are pinned separately, key for key.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.check_api.schemas import CheckIn
from shared.api.idempotency import canonical_hash
from shared.db.engine import Database
from shared.errors import ERROR_CODES
from shared.lifecycle import business_date
from shared.settings import Settings
from tests.builders import load_catalogue, load_demo_subjects, make_client, make_entry
from tests.conftest import AppFactory, api_client
from tests.contract.examples import write_bundle

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
WRITE = os.environ.get("ONECHECK_WRITE_EXAMPLES") == "1"

# contract/API.md, check-api: exactly these keys (the service may add, never drop or rename).
CHECK_KEYS = {
    "check_id",
    "checked_at",
    "item",
    "subject",
    "outcome",
    "matches",
    "measures",
    "suspended_measures",
    "withheld_incentives",
    "clean_record_years",
    "data_version",
    "feedback_due_on",
}
MATCH_KEYS = {
    "entry_id",
    "via",
    "matched_code",
    "matched_role",
    "list",
    "subject_code",
    "subject_name",
    "reason",
    "issuing_department",
    "decision_no",
    "listed_on",
    "expires_on",
    "status",
}
MEASURE_KEYS = {"code", "kind", "category", "content", "mandatory", "target", "legal_basis", "memorandum"}
PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


@dataclass
class Scenario:
    name: str
    title: str
    method: str
    path: str
    body: Any = None
    key: str = "clerk"  # clerk (check, no pii:read), finance (one department), admin (catalogue:write), none
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    upload: tuple[str, bytes] | None = None
    app: str = "main"  # main, limited (ONECHECK_RATE_LIMIT_PER_MINUTE=1) or down (the database unreachable)


def _check(item: str, code: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "item_code": item,
        "subject": {"code": code},
        "business_ref": "SP-2026-000123",
        "operator": "clerk-017",
    }
    body.update(extra)
    return body


AEO_COMPANY = "91440703MA51XK8P7P"  # synthetic, valid check characters
TEMPLATE = (Path(__file__).resolve().parents[2] / "docs" / "catalogue-template.csv").read_bytes()
BAD_CATALOGUE = TEMPLATE.replace(b",LT02,I07,", b",LT99,I07,", 1)

SCENARIOS = [
    Scenario(
        "check-clear",
        "No entry: outcome clear",
        "POST",
        "/v1/checks",
        _check("I07", "123301064700012356", subject={"code": "123301064700012356", "name": "杭州某事业单位"}),
    ),
    Scenario(
        "check-penalty",
        "Two black-list entries: penalties, one measure triggered by both",
        "POST",
        "/v1/checks",
        _check(
            "I01",
            "91110105MA01ABCD5F",
            subject={"code": "91110105MA01ABCD5F", "name": "北京某建设工程有限公司", "kind": "uscc"},
        ),
    ),
    Scenario(
        "check-incentive",
        "A red-list entry only (demo data plus an LT09 AEO entry for a synthetic 江门某进出口有限公司): incentives",
        "POST",
        "/v1/checks",
        _check("I05", AEO_COMPANY, subject={"code": AEO_COMPANY, "name": "江门某进出口有限公司"}),
    ),
    Scenario(
        "check-mixed",
        "A watch-list and a red-list entry (demo data plus an LT08 entry for 上海某餐饮店): mixed",
        "POST",
        "/v1/checks",
        _check("I02", "92310104L12345674R"),
    ),
    Scenario(
        "check-withheld-incentives",
        "A red and an active black entry: penalties, incentives withheld",
        "POST",
        "/v1/checks",
        _check("I10", "91510100201908154K"),
    ),
    Scenario(
        "check-objection",
        "An entry under objection: measures suspended (核实期间暂不执行), outcome review",
        "POST",
        "/v1/checks",
        _check("I02", "52440305MJL000016T"),
    ),
    Scenario(
        "check-related-person",
        "The legal representative has an entry of their own: via related_person (masked without pii:read)",
        "POST",
        "/v1/checks",
        _check(
            "I12",
            "123301064700012356",
            related_persons=[{"role": "legal_representative", "code": "310104198512242469", "name": "陈某"}],
        ),
    ),
    Scenario(
        "check-responsible-person",
        "A natural person named on an organisation's entry: via responsible_person",
        "POST",
        "/v1/checks",
        _check("I01", "110105199003071239", subject={"code": "110105199003071239", "name": "王某"}),
    ),
    Scenario(
        "check-natural-person",
        "A natural person's own entry, given as a 15-digit legacy ID (masked without pii:read)",
        "POST",
        "/v1/checks",
        _check(
            "I12",
            "310104851224246",
            subject={"code": "310104851224246", "name": "陈某", "kind": "citizen_id"},
        ),
    ),
    Scenario(
        "check-legacy-code",
        "A 工商注册号 mapped to its USCC",
        "POST",
        "/v1/checks",
        _check("I02", "310104000123453"),
    ),
    Scenario(
        "check-idempotent-replay",
        "The same Idempotency-Key and body: the first answer again (header Idempotent-Replayed)",
        "POST",
        "/v1/checks",
        _check("I07", "91110105MA01ABCD5F"),
        headers={"Idempotency-Key": "SP-2026-000123-1"},
    ),
    Scenario("get-check", "A stored check, as answered", "GET", "/v1/checks/{check_id}"),
    Scenario(
        "batch",
        "Three subjects for one item; the bad code answers a problem in its place",
        "POST",
        "/v1/checks/batch",
        {
            "item_code": "I07",
            "business_ref": "SP-2026-000124",
            "operator": "clerk-017",
            "subjects": [
                {"code": "91110105MA01ABCD5F", "name": "北京某建设工程有限公司"},
                {"code": "91110105MA01ABCD5G"},
                {
                    "code": "123301064700012356",
                    "related_persons": [{"role": "legal_representative", "code": "110105199003071239"}],
                },
            ],
        },
    ),
    Scenario("items", "The items", "GET", "/v1/items"),
    Scenario("item", "One item with its mapping", "GET", "/v1/items/I07"),
    Scenario("list-types", "The list types", "GET", "/v1/list-types"),
    Scenario("measures", "The measures", "GET", "/v1/measures"),
    Scenario("memoranda", "The memoranda", "GET", "/v1/memoranda"),
    Scenario(
        "catalogue-import",
        "Importing docs/catalogue-template.csv (multipart field `file`)",
        "POST",
        "/v1/catalogue/import",
        key="admin",
        upload=("catalogue-template.csv", TEMPLATE),
    ),
    Scenario(
        "error-catalogue-import",
        "A catalogue file with a bad row: refused whole, the row's line named",
        "POST",
        "/v1/catalogue/import",
        key="admin",
        upload=("catalogue.csv", BAD_CATALOGUE),
        status=422,
    ),
    Scenario(
        "error-invalid-subject-code",
        "A code failing its check character",
        "POST",
        "/v1/checks",
        _check("I07", "91110105MA01ABCD5G"),
        status=422,
    ),
    Scenario(
        "error-ambiguous-subject-code",
        "18 digits valid both as a USCC and as a citizen ID: give `kind`",
        "POST",
        "/v1/checks",
        _check("I07", "110105199003072194"),
        status=422,
    ),
    Scenario(
        "error-unknown-item",
        "An item the catalogue does not know",
        "POST",
        "/v1/checks",
        _check("I99", "91110105MA01ABCD5F"),
        status=404,
    ),
    Scenario(
        "error-validation",
        "A missing `operator` and an unknown field",
        "POST",
        "/v1/checks",
        {
            "item_code": "I07",
            "subject": {"code": "91110105MA01ABCD5F"},
            "business_ref": "SP-1",
            "client_id": "x",
        },
        status=422,
    ),
    Scenario(
        "error-forbidden-department",
        "A client of 财政局 checking a 住房和城乡建设局 item",
        "POST",
        "/v1/checks",
        _check("I01", "91110105MA01ABCD5F"),
        key="finance",
        status=403,
    ),
    Scenario(
        "error-unauthorized",
        "No API key",
        "POST",
        "/v1/checks",
        _check("I07", "91110105MA01ABCD5F"),
        key="none",
        status=401,
    ),
    Scenario(
        "error-not-found",
        "Another client's check, or no such check",
        "GET",
        "/v1/checks/{other_check_id}",
        status=404,
    ),
    Scenario(
        "error-idempotency-key-reused",
        "An Idempotency-Key used before with another body",
        "POST",
        "/v1/checks",
        _check("I07", "123301064700012356"),
        headers={"Idempotency-Key": "SP-2026-000123-1"},
        status=422,
    ),
    Scenario(
        "error-batch-too-large",
        "More than 1,000 subjects",
        "POST",
        "/v1/checks/batch",
        {
            "item_code": "I07",
            "business_ref": "B",
            "operator": "o",
            "subjects": [{"code": "123301064700012356"}] * 1001,
        },
        status=422,
    ),
    Scenario(
        "error-conflict",
        "The same Idempotency-Key while its first request is still running",
        "POST",
        "/v1/checks",
        _check("I07", "91440104MA59XK3P20"),
        headers={"Idempotency-Key": "SP-2026-000125-1"},
        status=409,
    ),
    Scenario(
        "error-payload-too-large",
        "A body over ONECHECK_MAX_BODY_BYTES (default 1 MiB)",
        "POST",
        "/v1/checks",
        _check("I07", "91440104MA59XK3P20", subject={"code": "91440104MA59XK3P20", "name": "某" * 400_000}),
        status=413,
    ),
    Scenario(
        "error-rate-limited",
        "Over ONECHECK_RATE_LIMIT_PER_MINUTE (here 1)",
        "POST",
        "/v1/checks",
        _check("I07", "91440104MA59XK3P20"),
        status=429,
        app="limited",
    ),
    Scenario(
        "error-unavailable",
        "The database unreachable (or any unexpected failure): 503 with Retry-After, never a bare 500",
        "POST",
        "/v1/checks",
        _check("I07", "91440104MA59XK3P20"),
        status=503,
        app="down",
    ),
]

# A port nothing listens on: every request that needs the database answers 503 `unavailable`.
UNREACHABLE = "postgresql+asyncpg://onecheck@127.0.0.1:1/onecheck"
# Response headers an integrator must act on, shown in the examples.
SHOWN_HEADERS = ("retry-after", "idempotent-replayed")


def shape(value: Any) -> Any:
    """Keys, nesting and JSON types of a value, without the values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(v) for v in value]
    if value is None:
        return "null"
    return type(value).__name__


def _example_request(scenario: Scenario, path: str) -> dict[str, Any]:
    headers = {} if scenario.key == "none" else {"Authorization": "Bearer <api key>"}
    headers.update(scenario.headers)
    request: dict[str, Any] = {"method": scenario.method, "path": path, "headers": headers}
    if scenario.upload is not None:
        request["multipart"] = {"file": scenario.upload[0]}
    elif scenario.body is not None:
        body = scenario.body
        if scenario.name == "error-batch-too-large":  # 1,001 identical subjects: shown shortened
            body = {**body, "subjects": [*body["subjects"][:2], "… 1,001 subjects in all"]}
        if scenario.name == "error-payload-too-large":
            body = {**body, "subject": {**body["subject"], "name": "某某某… (400,000 characters)"}}
        request["body"] = body
    return request


async def _run_all(
    db: Database, app_factory: AppFactory, test_settings: Settings
) -> dict[str, tuple[dict[str, Any], httpx.Response]]:
    await load_catalogue(db)
    await load_demo_subjects(db)
    today = business_date()
    await make_entry(
        db,
        list_type="LT09",
        code=AEO_COMPANY,
        name="江门某进出口有限公司",
        issuing_department="江门海关",
        decision_no="演示〔2026〕LT09号",
        reason="海关高级认证企业",
        listed_on=today - dt.timedelta(days=20),
        expires_on=today + dt.timedelta(days=1075),
    )
    await make_entry(
        db,
        list_type="LT08",
        code="92310104L12345674R",
        name="上海某餐饮店",
        issuing_department="江门市税务机关",
        decision_no="演示〔2026〕LT08-2号",
        reason="纳税信用评价为A级",
        listed_on=today - dt.timedelta(days=40),
        expires_on=today + dt.timedelta(days=325),
    )
    clerk_id, clerk_key = await make_client(db, scopes="check", any_department=True, name="审批系统")
    keys = {
        "clerk": clerk_key,
        "finance": (await make_client(db, scopes="check", department="财政局", name="财政局采购系统"))[1],
        "admin": (await make_client(db, scopes="catalogue:write", name="目录管理"))[1],
        "other": (await make_client(db, scopes="check", any_department=True, name="另一系统"))[1],
    }
    conflict = next(s for s in SCENARIOS if s.name == "error-conflict")
    async with db.connection() as conn:  # a first request with this key that has not finished
        await conn.execute(
            "INSERT INTO idempotency_keys (client_id, route, key, request_hash, state, expires_at) "
            "VALUES ($1, 'POST /v1/checks', $2, $3, 'in_flight', now() + interval '1 day')",
            clerk_id,
            conflict.headers["Idempotency-Key"],
            canonical_hash(CheckIn.model_validate(conflict.body).model_dump(mode="json")),
        )
    app = app_factory(db, "check-api")
    limited_app = app_factory(db, "check-api", test_settings.model_copy(update={"rate_limit_per_minute": 1}))
    down_settings = test_settings.model_copy(update={"database_url": UNREACHABLE})
    down_db = Database(UNREACHABLE, down_settings, application_name="onecheck-contract-down")
    down_app = app_factory(down_db, "check-api", down_settings)
    results: dict[str, tuple[dict[str, Any], httpx.Response]] = {}
    ids: dict[str, str] = {}
    async with api_client(app) as api, api_client(limited_app) as limited, api_client(down_app) as down:
        # The replay example is the second of two identical requests.
        replay = next(s for s in SCENARIOS if s.name == "check-idempotent-replay")
        await api.post(
            replay.path,
            json=replay.body,
            headers={"Authorization": f"Bearer {keys['clerk']}", **replay.headers},
        )
        other = await api.post(
            "/v1/checks",
            json=_check("I07", "123301064700012356"),
            headers={"Authorization": f"Bearer {keys['other']}"},
        )
        ids["other_check_id"] = other.json()["check_id"]
        for scenario in SCENARIOS:
            path = scenario.path.format(**ids)
            headers = dict(scenario.headers)
            if scenario.key != "none":
                headers["Authorization"] = f"Bearer {keys[scenario.key]}"
            if scenario.upload is not None:
                response = await api.post(
                    path,
                    files={"file": (scenario.upload[0], scenario.upload[1], "text/csv")},
                    headers=headers,
                )
            elif scenario.app == "limited":
                for _ in range(2):  # a minute boundary between the two requests resets the window: try again
                    await limited.request(scenario.method, path, json=scenario.body, headers=headers)
                    response = await limited.request(
                        scenario.method, path, json=scenario.body, headers=headers
                    )
                    if response.status_code == 429:
                        break
            elif scenario.app == "down":
                response = await down.request(scenario.method, path, json=scenario.body, headers=headers)
            else:
                response = await api.request(scenario.method, path, json=scenario.body, headers=headers)
            assert response.status_code == scenario.status, (scenario.name, response.text[:300])
            if scenario.name == "check-penalty":
                ids["check_id"] = response.json()["check_id"]
            results[scenario.name] = (_example_request(scenario, path), response)
        report_path = f"/v1/checks/{ids['check_id']}/report"
        report = await api.get(report_path, headers={"Authorization": f"Bearer {keys['clerk']}"})
        results["report"] = ({"method": "GET", "path": report_path}, report)
    await down_db.close()
    return results


@pytest.fixture
async def runs(
    db: Database, app_factory: AppFactory, test_settings: Settings
) -> dict[str, tuple[dict[str, Any], httpx.Response]]:
    return await _run_all(db, app_factory, test_settings)


async def test_examples_match_the_service(runs: dict[str, tuple[dict[str, Any], httpx.Response]]) -> None:
    if WRITE:
        EXAMPLES.mkdir(parents=True, exist_ok=True)
        index = [
            "# check-api examples",
            "",
            "Generated from real runs on the demo data by "
            "`tests/contract/test_check_api_contract.py` (`ONECHECK_WRITE_EXAMPLES=1`). Do not edit by hand.",
            "",
        ]
        for scenario in SCENARIOS:
            request, response = runs[scenario.name]
            shown = {
                name.title(): response.headers[name] for name in SHOWN_HEADERS if name in response.headers
            }
            example = {
                "title": scenario.title,
                "request": request,
                "response": {
                    "status": response.status_code,
                    "content_type": response.headers["content-type"],
                    **({"headers": shown} if shown else {}),
                    "body": response.json(),
                },
            }
            (EXAMPLES / f"{scenario.name}.json").write_text(
                json.dumps(example, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
            )
            index.append(
                f"- [`{scenario.name}.json`]({scenario.name}.json): {scenario.title} "
                f"(`{scenario.method} {scenario.path}` → {scenario.status})"
            )
        index.append(
            "- [`report.html`](report.html): the printable report of `check-penalty` "
            "(`GET /v1/checks/{check_id}/report`)"
        )
        index.append(
            "- [`list-sync/`](list-sync/README.md) and [`feedback/`](feedback/README.md): the other services' "
            "examples (tests/contract/test_list_sync_feedback_contract.py)"
        )
        (EXAMPLES / "README.md").write_text("\n".join(index) + "\n", encoding="utf-8")
        (EXAMPLES / "report.html").write_text(runs["report"][1].text, encoding="utf-8")
        write_bundle("check-api")
    for scenario in SCENARIOS:
        example = json.loads((EXAMPLES / f"{scenario.name}.json").read_text(encoding="utf-8"))
        _, response = runs[scenario.name]
        assert response.status_code == example["response"]["status"], scenario.name
        assert response.headers["content-type"] == example["response"]["content_type"], scenario.name
        assert set(example["response"].get("headers", {})) == {
            name.title() for name in SHOWN_HEADERS if name in response.headers
        }, scenario.name
        assert shape(response.json()) == shape(example["response"]["body"]), scenario.name


async def test_answers_carry_the_contract_fields(
    runs: dict[str, tuple[dict[str, Any], httpx.Response]],
) -> None:
    checks = [runs[s.name][1].json() for s in SCENARIOS if s.name.startswith("check-")]
    checks += [r for r in runs["batch"][1].json()["results"] if "check_id" in r]
    checks.append(runs["get-check"][1].json())
    seen_vias = set()
    for check in checks:
        assert set(check) >= CHECK_KEYS
        assert set(check["item"]) >= {"code", "name", "department"}
        assert set(check["subject"]) >= {"code", "given_code", "kind", "name"}
        assert set(check["data_version"]) == {"lists", "catalogue"}
        for match in check["matches"]:
            assert set(match) == MATCH_KEYS
            assert set(match["list"]) == {"code", "name", "kind"}
            seen_vias.add(match["via"])
        for measure in check["measures"]:
            assert MEASURE_KEYS | {"triggered_by"} <= set(measure)
        for measure in check["suspended_measures"] + check["withheld_incentives"]:
            assert MEASURE_KEYS | {"reason", "blocked_by"} <= set(measure)
    assert seen_vias == {"subject", "related_person", "responsible_person"}
    outcomes = {runs[s.name][1].json()["outcome"] for s in SCENARIOS if s.name.startswith("check-")}
    assert outcomes == {"clear", "review", "incentive", "penalty", "mixed"}


async def test_catalogue_answers_carry_the_contract_fields(
    runs: dict[str, tuple[dict[str, Any], httpx.Response]],
) -> None:
    items = runs["items"][1].json()["items"]
    assert all({"code", "name", "department", "section", "type"} <= set(i) for i in items)
    item = runs["item"][1].json()
    assert {"code", "name", "department", "section", "type", "mappings"} <= set(item)
    assert all(set(m) == {"list_type", "measures"} for m in item["mappings"])
    assert all("targets" in ms for m in item["mappings"] for ms in m["measures"])
    list_types = runs["list-types"][1].json()["list_types"]
    assert all(
        {"code", "name", "kind", "issuing_authority", "default_validity_days"} <= set(lt) for lt in list_types
    )
    assert "measures" in runs["measures"][1].json()
    assert "memoranda" in runs["memoranda"][1].json()


async def test_errors_are_problems_with_contract_codes(
    runs: dict[str, tuple[dict[str, Any], httpx.Response]],
) -> None:
    expected = {
        "error-invalid-subject-code": "invalid_subject_code",
        "error-ambiguous-subject-code": "ambiguous_subject_code",
        "error-unknown-item": "unknown_item",
        "error-validation": "validation_error",
        "error-forbidden-department": "forbidden",
        "error-unauthorized": "unauthorized",
        "error-not-found": "not_found",
        "error-idempotency-key-reused": "idempotency_key_reused",
        "error-batch-too-large": "validation_error",
        "error-catalogue-import": "validation_error",
        "error-conflict": "conflict",
        "error-payload-too-large": "payload_too_large",
        "error-rate-limited": "rate_limited",
        "error-unavailable": "unavailable",
    }
    for name, code in expected.items():
        response = runs[name][1]
        assert response.headers["content-type"] == "application/problem+json", name
        body = response.json()
        assert set(body) >= PROBLEM_KEYS, name
        assert body["code"] == code, name
    invalid = runs["error-invalid-subject-code"][1].json()
    assert set(invalid["errors"][0]) == {"loc", "msg", "rule"}
    batch_problem = runs["batch"][1].json()["results"][1]
    assert PROBLEM_KEYS | {"errors"} <= set(batch_problem)
    assert runs["check-idempotent-replay"][1].headers["idempotent-replayed"] == "true"
    assert int(runs["error-rate-limited"][1].headers["retry-after"]) >= 1
    unavailable = runs["error-unavailable"][1]
    assert (unavailable.status_code, int(unavailable.headers["retry-after"]) >= 1) == (503, True)


def test_every_contract_error_code_has_an_example_and_a_line_in_docs_errors() -> None:
    """docs/errors.md describes each code of the contract; docs/examples/ shows each one answered."""
    errors_doc = (EXAMPLES.parent / "errors.md").read_text(encoding="utf-8")
    shown = {
        json.loads((EXAMPLES / f"{s.name}.json").read_text(encoding="utf-8"))["response"]["body"]["code"]
        for s in SCENARIOS
        if s.name.startswith("error-")
    }
    for code in ERROR_CODES:
        assert f"`{code}`" in errors_doc, code
        assert code in shown, code


async def test_the_report_is_html(runs: dict[str, tuple[dict[str, Any], httpx.Response]]) -> None:
    report = runs["report"][1]
    assert report.status_code == 200
    assert report.headers["content-type"] == "text/html; charset=utf-8"
    assert "信用核查报告" in report.text
    assert (EXAMPLES / "report.html").exists()


async def test_the_openapi_document_describes_every_endpoint(db: Database, app_factory: AppFactory) -> None:
    async with api_client(app_factory(db, "check-api")) as api:
        spec = (await api.get("/openapi.json")).json()
    expected = {
        ("post", "/v1/checks"): {"200", "401", "403", "404", "409", "422"},
        ("post", "/v1/checks/batch"): {"200", "401", "403", "404", "422"},
        ("get", "/v1/checks/{check_id}"): {"200", "401", "403", "404"},
        ("get", "/v1/checks/{check_id}/report"): {"200", "401", "403", "404"},
        ("get", "/v1/items"): {"200", "401"},
        ("get", "/v1/items/{code}"): {"200", "401", "404"},
        ("get", "/v1/list-types"): {"200", "401"},
        ("get", "/v1/measures"): {"200", "401"},
        ("get", "/v1/memoranda"): {"200", "401"},
        ("post", "/v1/catalogue/import"): {"200", "401", "403", "422"},
    }
    for (method, path), statuses in expected.items():
        operation = spec["paths"][path][method]
        assert operation["summary"], path
        assert statuses <= set(operation["responses"]), (path, set(operation["responses"]))
    check_schema = spec["components"]["schemas"]["CheckIn"]
    assert check_schema.get("examples"), "POST /v1/checks has a request example"
    assert spec["components"]["schemas"]["CheckIn"]["additionalProperties"] is False
