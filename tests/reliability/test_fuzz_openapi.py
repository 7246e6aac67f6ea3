"""F1 — schemathesis over every operation of the combined app, against a real PostgreSQL with the demo data.

Each operation gets `ONECHECK_FUZZ_EXAMPLES` generated requests (default 15, about a minute on 2 cores; the
nightly run uses 1,000: see docs/reliability.md), valid and invalid (schemathesis' positive and negative modes,
plus its examples and coverage phases), sent with the demo client's key (every scope, any department). Checks:
no 5xx, every status documented, every content type documented, bodies matching the documented schemas, and
(ours) every error a contract problem+json.

To reach past "invalid code" and "no such id", the OpenAPI served to schemathesis marks subject codes with a
`cn-subject-code` format (valid USCCs and citizen ids, the demo subjects, and some noise) and id path
parameters with formats that draw the ids the fixture made (and random ones). The app itself is untouched.

No deviation is excluded: the tests at the end pin the ones found and fixed (an undecodable body answered 400,
the outbox's 422 documented as FastAPI's, suspended measures documented with a `triggered_by` they lack).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.api.combined import create_app
from shared.codes import citizen_id_check_char, org_code_check_char, uscc_check_char
from shared.db.engine import Database
from shared.demo import demo_subjects, load_demo
from shared.errors import ERROR_CODES
from shared.settings import Settings
from tests.builders import auth

EXAMPLES = int(os.environ.get("ONECHECK_FUZZ_EXAMPLES", "15"))
_NOWHERE = "postgresql+asyncpg://onecheck@127.0.0.1:1/onecheck"
_TRUNCATE_SKIP = {"alembic_version"}

# Ids the fixture makes; the id formats below draw from them once it has run.
SEEDED: dict[str, list[str]] = {"check_id": [], "entry_id": [], "run_id": [], "subscription_id": []}

# --- formats ---------------------------------------------------------------------------------------------

_USCC_BODY = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # characters valid in both USCC and GB 11714


@st.composite
def _uscc(draw: st.DrawFn) -> str:
    head = draw(st.sampled_from(["91", "92", "93", "12", "52", "11"]))
    region = draw(st.sampled_from(["440703", "110105", "310104", "440305", "510100"]))
    body = draw(st.text(alphabet=_USCC_BODY, min_size=8, max_size=8))
    first17 = head + region + body + org_code_check_char(body)
    return first17 + uscc_check_char(first17)


@st.composite
def _citizen_id(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from(["440703", "110105", "310104", "440305"]))
    born = draw(st.dates(min_value=dt.date(1940, 1, 1), max_value=dt.date(2008, 12, 31)))
    first17 = region + born.strftime("%Y%m%d") + draw(st.from_regex(r"\A[0-9]{3}\Z"))
    return first17 + citizen_id_check_char(first17)


def _spellings(code: str) -> st.SearchStrategy[str]:
    full_width = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in code)
    return st.sampled_from([code, code.lower(), f" {code} ", full_width])


_DEMO_CODES = [s["code"] for s in demo_subjects()] + ["110105199003071239"]
schemathesis.openapi.format(
    "cn-subject-code",
    st.one_of(
        st.sampled_from(_DEMO_CODES).flatmap(_spellings),
        _uscc(),
        _citizen_id(),
        st.text(max_size=64),
    ),
)
schemathesis.openapi.format(
    "onecheck-item-code",
    st.one_of(st.sampled_from([f"I{i:02d}" for i in range(1, 13)]), st.text(max_size=64)),
)


def _seeded(kind: str) -> st.SearchStrategy[str]:
    """One of the ids the fixture made, read at draw time (the strategy is built before the fixture runs)."""

    def pick(i: int) -> str:
        ids = SEEDED[kind]
        return ids[i % len(ids)] if ids else "not-seeded"

    return st.integers(min_value=0, max_value=1_000).map(pick)


for _kind in SEEDED:
    schemathesis.openapi.format(f"onecheck-{_kind}", st.one_of(_seeded(_kind), st.uuids().map(str)))

_CODE_FIELDS = {
    "services__check_api__schemas__SubjectIn",
    "BatchSubjectIn",
    "RelatedPersonIn",
    "services__list_sync__schemas__SubjectIn",
    "LinkedPersonIn",
}


def _formatted(doc: dict[str, Any]) -> dict[str, Any]:
    """The app's OpenAPI with our formats added to subject codes, item codes and id path parameters."""
    components = doc["components"]["schemas"]
    for name in _CODE_FIELDS:
        components[name]["properties"]["code"]["format"] = "cn-subject-code"
    for name in ("CheckIn", "BatchIn"):
        components[name]["properties"]["item_code"]["format"] = "onecheck-item-code"
    for operations in doc["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "path":
                    continue
                if parameter["name"] in SEEDED:
                    parameter["schema"]["format"] = f"onecheck-{parameter['name']}"
                elif parameter["name"] == "code":
                    parameter["schema"]["format"] = "onecheck-item-code"
    return doc


@contextlib.asynccontextmanager
async def _no_lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield


def _docs_app(*, formatted: bool) -> FastAPI:
    """The combined app, only to serve its OpenAPI (no database is touched: it has no lifespan)."""
    docs_settings = Settings(environment="test", database_url=_NOWHERE, access_log=False)
    app = create_app(docs_settings, database=Database(_NOWHERE, docs_settings))
    app.router.lifespan_context = _no_lifespan
    if formatted:
        app.openapi_schema = _formatted(app.openapi())
    return app


schema = schemathesis.openapi.from_asgi("/openapi.json", _docs_app(formatted=True))
# The app's own document, as served: for the tests that pin its errors.
as_served = schemathesis.openapi.from_asgi("/openapi.json", _docs_app(formatted=False))

# --- the app under test ----------------------------------------------------------------------------------


async def _seed(database_url: str, settings: Settings) -> str:
    """Demo catalogue and subjects, the demo client, and a few objects of each kind; returns the key."""
    database = Database(database_url, settings, application_name="onecheck-fuzz-seed")
    try:
        async with database.session() as session:
            _, _, key = await load_demo(session)
        transport = httpx.ASGITransport(app=create_app(settings, database=database))
        async with httpx.AsyncClient(transport=transport, base_url="http://seed", headers=auth(key)) as api:
            for code in _DEMO_CODES:
                answer = await api.post(
                    "/v1/checks",
                    json={
                        "item_code": "I01",
                        "subject": {"code": code},
                        "business_ref": "F1",
                        "operator": "fuzz",
                    },
                )
                assert answer.status_code == 200, answer.text
                SEEDED["check_id"].append(answer.json()["check_id"])
            entry = await api.post(
                "/v1/entries",
                json={
                    "list_type": "LT01",
                    "subject": {"code": _DEMO_CODES[0], "name": "北京某建设工程有限公司"},
                    "reason": "F1",
                    "decision_no": "F1-1",
                    "listed_on": "2026-01-01",
                },
            )
            assert entry.status_code == 201, entry.text
            SEEDED["entry_id"].append(entry.json()["entry_id"])
            subscription = await api.post(
                "/v1/subscriptions", json={"callback_url": "https://hooks.example/f1"}
            )
            assert subscription.status_code == 201, subscription.text
            SEEDED["subscription_id"].append(subscription.json()["subscription_id"])
        async with database.connection() as conn:
            await conn.execute(
                "INSERT INTO sync_sources (name, kind, path) VALUES ('fuzz-file', 'file', 'none.csv')"
            )
            run_id = await conn.fetchval(
                "INSERT INTO sync_runs (run_id, source, status, finished_at) "
                "VALUES (gen_random_uuid(), 'fuzz-file', 'failed', now()) RETURNING run_id::text"
            )
            SEEDED["run_id"].append(run_id)
            SEEDED["entry_id"] += [
                str(r["entry_id"]) for r in await conn.fetch("SELECT entry_id FROM list_entries")
            ]
    finally:
        await database.close()
    return key


async def _truncate(database_url: str, settings: Settings) -> None:
    database = Database(database_url, settings, application_name="onecheck-fuzz-cleanup")
    try:
        async with database.connection() as conn:
            tables = [
                r["tablename"]
                for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                if r["tablename"] not in _TRUNCATE_SKIP and not r["tablename"].startswith("checks_")
            ]
            await conn.execute(
                "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
            )
    finally:
        await database.close()


@pytest.fixture(scope="module")
def fuzz_target(database_url: str, test_settings: Settings) -> Iterator[tuple[FastAPI, str]]:
    """The combined app over a real pool (schemathesis runs it in its own event loop thread), seeded with
    committed data that is truncated afterwards."""
    try:
        key = asyncio.run(_seed(database_url, test_settings))
        database = Database(database_url, test_settings, application_name="onecheck-fuzz")
        app = create_app(test_settings, database=database)
        inner = app.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            try:
                async with inner(app):
                    yield
            finally:
                await database.close()  # in the loop that opened the pool

        app.router.lifespan_context = lifespan
        yield app, key
    finally:
        shutdown_lifespans()
        asyncio.run(_truncate(database_url, test_settings))
        for ids in SEEDED.values():
            ids.clear()


# --- checks ----------------------------------------------------------------------------------------------


def problem_details(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every error is the contract's problem+json: the media type, the members, a contract `code`."""
    if response.status_code < 400:
        return None
    assert response.headers.get("content-type", [""])[0] == "application/problem+json", response.headers
    body = json.loads(response.content)
    assert {"type", "title", "status", "detail", "code"} <= set(body), body
    assert body["status"] == response.status_code, body
    assert body["code"] in ERROR_CODES, body
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    problem_details,
]

# What the run answered, per operation: (label, status) → count.
STATUSES: dict[tuple[str, int], int] = {}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
def test_every_operation_conforms(case: Any, fuzz_target: tuple[FastAPI, str]) -> None:
    app, key = fuzz_target
    response = case.call(app=app, headers=auth(key))
    label = case.operation.label
    STATUSES[label, response.status_code] = STATUSES.get((label, response.status_code), 0) + 1
    case.validate_response(response, checks=CHECKS, headers=auth(key))


def test_the_run_reached_past_validation() -> None:
    """The fuzz is only worth its checks if valid requests got through: each of these answered a 2xx (and a
    request with a seeded id found it). Runs after the fuzz in file order; skipped when it did not run."""
    if not STATUSES:
        pytest.skip("the fuzz did not run in this session")
    reached = {label for (label, status), n in STATUSES.items() if 200 <= status < 300 and n}
    operations = {label for label, _ in STATUSES}
    assert len(operations) == len(list(schema.get_all_operations()))
    assert sum(STATUSES.values()) >= len(operations) * min(EXAMPLES, 10)
    must = {
        "POST /v1/checks",
        "POST /v1/checks/batch",
        "GET /v1/checks/{check_id}",
        "GET /v1/checks/{check_id}/report",
        "GET /v1/checks/{check_id}/feedback",
        "GET /v1/entries/{entry_id}",
        "GET /v1/items/{code}",
        "GET /v1/runs/{run_id}",
    }
    assert must <= reached, sorted(must - reached)


# --- the deviations found, pinned ------------------------------------------------------------------------


def test_an_undecodable_body_is_a_documented_status(fuzz_target: tuple[FastAPI, str]) -> None:
    app, key = fuzz_target
    case = as_served["/v1/checks"]["POST"].Case(body=b'{"item_code": "\xff"}', media_type="application/json")
    case.call_and_validate(app=app, headers=auth(key), checks=[status_code_conformance])


def test_the_outbox_documents_its_422(fuzz_target: tuple[FastAPI, str]) -> None:
    app, key = fuzz_target
    case = as_served["/v1/outbox"]["GET"].Case(query={"dead_limit": -1})
    case.call_and_validate(app=app, headers=auth(key), checks=[content_type_conformance])


def test_a_suspended_measure_matches_its_documented_schema(fuzz_target: tuple[FastAPI, str]) -> None:
    app, key = fuzz_target
    case = as_served["/v1/checks"]["POST"].Case(
        body={
            "item_code": "I02",
            "subject": {"code": "52440305MJL000016T"},
            "business_ref": "F1",
            "operator": "f",
        },
        media_type="application/json",
    )
    response = case.call(app=app, headers=auth(key))
    assert response.status_code == 200
    assert response.json()["suspended_measures"]  # the demo subject under objection
    case.validate_response(response, checks=[response_schema_conformance], headers=auth(key))


def test_every_error_response_is_documented_as_a_problem() -> None:
    """The shared mechanism behind the outbox fix: no operation keeps FastAPI's own 422 (`HTTPValidationError`,
    application/json), and every documented error is `application/problem+json` with the `Problem` schema."""
    doc = _docs_app(formatted=False).openapi()
    assert "HTTPValidationError" not in json.dumps(doc)
    documented = 0
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                documented += 1
                assert list(response["content"]) == ["application/problem+json"], (method, path, status)
                schema = response["content"]["application/problem+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path, status)
    assert documented > 100
    problem = doc["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    assert problem["properties"]["code"]["enum"] == list(ERROR_CODES)
