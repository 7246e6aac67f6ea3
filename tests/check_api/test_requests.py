"""Request rules of POST /v1/checks: required fields, unknown fields, codes, items, departments, scopes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.db.engine import Database
from tests.builders import make_client
from tests.check_api.conftest import BEIJING, CHEN, HANGZHOU, Keys, check_request
from tests.conftest import api_client

pytestmark = pytest.mark.usefixtures("catalogue")

AMBIGUOUS = "110105199003072194"  # passes both the USCC and the citizen-ID rules


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    return body


@pytest.mark.parametrize("missing", ["item_code", "business_ref", "operator", "subject"])
async def test_required_fields(api: httpx.AsyncClient, missing: str) -> None:
    body = check_request("I07", BEIJING)
    del body[missing]
    problem = _problem(await api.post("/v1/checks", json=body), 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["body", missing]


async def test_subject_code_is_required(api: httpx.AsyncClient) -> None:
    body = check_request("I07", BEIJING, subject={"name": "x"})
    problem = _problem(await api.post("/v1/checks", json=body), 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["body", "subject", "code"]


@pytest.mark.parametrize(
    "extra",
    [
        {"client_id": "x"},
        {"check_id": "x"},
        {"subject": {"code": BEIJING, "matched": True}},
        {"related_persons": [{"role": "legal_representative", "code": CHEN, "status": "x"}]},
    ],
)
async def test_unknown_fields_are_refused(api: httpx.AsyncClient, extra: dict[str, Any]) -> None:
    _problem(
        await api.post("/v1/checks", json=check_request("I07", BEIJING, **extra)), 422, "validation_error"
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"operator": ""},
        {"business_ref": ""},
        {"subject": {"code": BEIJING, "kind": "passport"}},
        {"related_persons": [{"role": "chairman", "code": CHEN}]},
    ],
)
async def test_invalid_values_are_refused(api: httpx.AsyncClient, bad: dict[str, Any]) -> None:
    _problem(await api.post("/v1/checks", json=check_request("I07", BEIJING, **bad)), 422, "validation_error")


async def test_malformed_json_is_422(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/checks", content=b'{"item_code": ', headers={"content-type": "application/json"}
    )
    _problem(response, 422, "validation_error")


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("91110105MA01ABCD5G", "uscc.check_char"),
        ("91110105MA01ABCD6J", "uscc.org_check_char"),
        ("310104198512242468", "citizen_id.check_char"),
        ("110105199002301231", "citizen_id.birth_date"),
        ("110105000000016", "registration_no.check_digit"),
        ("12345", "code.length"),
        ("", "code.empty"),
        ("ABC-DEF", "code.hyphen"),
    ],
)
async def test_an_invalid_code_names_the_failed_rule(api: httpx.AsyncClient, code: str, rule: str) -> None:
    problem = _problem(
        await api.post("/v1/checks", json=check_request("I07", code)), 422, "invalid_subject_code"
    )
    (error,) = problem["errors"]
    assert error["loc"] == ["body", "subject", "code"]
    assert error["msg"]
    assert error["rule"] == rule


async def test_an_invalid_code_with_a_wrong_check_character_has_that_rule(api: httpx.AsyncClient) -> None:
    problem = _problem(
        await api.post("/v1/checks", json=check_request("I07", "91110105MA01ABCD5G")),
        422,
        "invalid_subject_code",
    )
    assert problem["errors"] == [
        {
            "loc": ["body", "subject", "code"],
            "msg": "check character should be 'F', got 'G'",
            "rule": "uscc.check_char",
        }
    ]


async def test_related_persons_codes_are_validated_as_citizen_ids(api: httpx.AsyncClient) -> None:
    body = check_request(
        "I07",
        "91110105MA01ABCD5G",
        related_persons=[
            {"role": "legal_representative", "code": CHEN},
            {"role": "actual_controller", "code": BEIJING},  # a USCC is not a person
        ],
    )
    problem = _problem(await api.post("/v1/checks", json=body), 422, "invalid_subject_code")
    assert [(e["loc"], e["rule"]) for e in problem["errors"]] == [
        (["body", "subject", "code"], "uscc.check_char"),
        (["body", "related_persons", 1, "code"], "citizen_id.format"),
    ]


async def test_an_ambiguous_code_is_422_and_a_kind_resolves_it(api: httpx.AsyncClient) -> None:
    problem = _problem(
        await api.post("/v1/checks", json=check_request("I07", AMBIGUOUS)), 422, "ambiguous_subject_code"
    )
    assert AMBIGUOUS not in problem["detail"]
    resolved = await api.post(
        "/v1/checks", json=check_request("I07", AMBIGUOUS, subject={"code": AMBIGUOUS, "kind": "uscc"})
    )
    assert resolved.status_code == 200
    assert resolved.json()["subject"]["kind"] == "uscc"


async def test_an_unknown_item_is_404_unknown_item(api: httpx.AsyncClient) -> None:
    problem = _problem(await api.post("/v1/checks", json=check_request("I99", BEIJING)), 404, "unknown_item")
    assert "I99" in problem["detail"]


async def test_an_unknown_item_wins_over_a_bad_code(api: httpx.AsyncClient) -> None:
    _problem(await api.post("/v1/checks", json=check_request("I99", "bad")), 404, "unknown_item")


async def test_a_department_checks_only_its_own_items(app: FastAPI, keys: Keys) -> None:
    async with api_client(app, keys.finance) as api:
        own = await api.post("/v1/checks", json=check_request("I07", BEIJING))
        other = await api.post("/v1/checks", json=check_request("I01", BEIJING))
    assert own.status_code == 200
    assert own.json()["item"]["department"] == "财政局(政府采购监管) / 采购人"
    _problem(other, 403, "forbidden")


async def test_an_any_department_client_checks_any_item(api: httpx.AsyncClient) -> None:
    for item in ("I01", "I07", "I12"):
        assert (await api.post("/v1/checks", json=check_request(item, HANGZHOU))).status_code == 200


async def test_the_check_scope_is_required(db: Database, app: FastAPI) -> None:
    _, key = await make_client(db, scopes="feedback,lists:read", any_department=True)
    async with api_client(app, key) as api:
        _problem(await api.post("/v1/checks", json=check_request("I07", BEIJING)), 403, "forbidden")
        _problem(await api.post("/v1/checks/batch", json={}), 403, "forbidden")
    async with api_client(app) as anonymous:
        _problem(await anonymous.post("/v1/checks", json=check_request("I07", BEIJING)), 401, "unauthorized")


async def test_answers_are_not_cached(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/checks", json=check_request("I07", HANGZHOU))
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "bad",
    [{"operator": "a\x00b"}, {"business_ref": "\x00"}, {"subject": {"code": BEIJING, "name": "北京\x00"}}],
)
async def test_nul_characters_are_refused(api: httpx.AsyncClient, bad: dict[str, Any]) -> None:
    _problem(await api.post("/v1/checks", json=check_request("I07", BEIJING, **bad)), 422, "validation_error")


async def test_a_nul_in_a_code_is_an_invalid_code(api: httpx.AsyncClient) -> None:
    _problem(
        await api.post("/v1/checks", json=check_request("I07", "9111\x000105MA01ABCD5F")),
        422,
        "invalid_subject_code",
    )


async def test_every_check_api_route_needs_a_key(app: FastAPI) -> None:
    # Walks the OpenAPI document: the route table of this FastAPI version nests included routers.
    async with api_client(app) as api:
        spec = (await api.get("/openapi.json")).json()
        routes = [(m, p) for p, ops in spec["paths"].items() if p.startswith("/v1/") for m in ops]
        assert len(routes) == 10
        for method, path in routes:
            concrete = path.replace("{check_id}", "01a209ae-4d2f-7411-a0f6-528dda16094e").replace(
                "{code}", "I01"
            )
            response = await api.request(method.upper(), concrete, json={})
            assert response.status_code == 401, (method, path)
