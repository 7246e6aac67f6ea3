"""The OpenAPI documents of the three services and of the combined app: what ops teams read at /docs.

Every operation has a summary, a description, described parameters, request examples for its body and an
example of its success answer, all valid against the documented schemas; every error it can answer is
documented as `application/problem+json` with examples; every property of every schema is described. The
examples are those of docs/examples/ (the services read them from the bundles in their packages).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest
from fastapi import FastAPI

from shared.api.app import create_service_app
from shared.api.combined import SPECS, create_app
from shared.db.engine import Database
from shared.settings import Settings
from tests.contract.examples import SERVICES, bundle_path, render_bundle

_NOWHERE = "postgresql+asyncpg://onecheck@127.0.0.1:1/onecheck"
PROBLEM = "application/problem+json"
# Catalogue reads take any valid key: no scope, so no 403 for a missing one.
ANY_KEY = {
    ("get", "/v1/items"),
    ("get", "/v1/items/{code}"),
    ("get", "/v1/list-types"),
    ("get", "/v1/measures"),
    ("get", "/v1/memoranda"),
}
# Beyond the path ids (404) and the Idempotency-Key (409) every operation with them documents:
MORE_404 = {("post", "/v1/checks"), ("post", "/v1/checks/batch"), ("get", "/v1/quarantine")}
MORE_409 = {("post", "/v1/runs/{run_id}/confirm"), ("post", "/v1/runs/{run_id}/discard")}


@contextlib.asynccontextmanager
async def _no_lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield


def _document(service: str) -> dict[str, Any]:
    """The document as the app serves it, built without a database."""
    settings = Settings(environment="test", database_url=_NOWHERE, access_log=False)
    database = Database(_NOWHERE, settings)
    if service == "all":
        app = create_app(settings, database=database)
    else:
        app = create_service_app(SPECS[service], settings, database=database)
    return app.openapi()


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


def _assert_examples(doc: dict[str, Any], media: dict[str, Any], where: Any) -> int:
    """The media type has examples, each valid against its schema; returns how many."""
    examples = media.get("examples") or {}
    assert examples, ("no examples", where)
    schema = media.get("schema")
    for name, example in examples.items():
        assert example.get("summary"), ("an example without a summary", where, name)
        if schema:
            errors = sorted(_validator(doc, schema).iter_errors(example["value"]), key=str)
            assert not errors, (where, name, [e.message for e in errors[:3]])
    return len(examples)


def _undescribed(schema: dict[str, Any], path: str) -> list[str]:
    """Properties without a description, in the schema and the inline objects inside it."""
    missing = []
    for name, prop in schema.get("properties", {}).items():
        if not prop.get("description"):
            missing.append(f"{path}.{name}")
        missing += _undescribed(prop, f"{path}.{name}")
        if isinstance(prop.get("items"), dict):
            missing += _undescribed(prop["items"], f"{path}.{name}[]")
    return missing


@pytest.mark.parametrize("service", ["check-api", "list-sync", "feedback", "all"])
def test_the_openapi_document_describes_every_endpoint(service: str) -> None:
    doc = _document(service)
    operations = [(m, p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]
    assert len(operations) >= {"check-api": 13, "list-sync": 18, "feedback": 9, "all": 34}[service]
    examples = 0
    for method, path, op in operations:
        where = (method.upper(), path)
        # summary and description (beyond the auth line the central step adds)
        assert op.get("summary"), where
        own = op.get("description", "").split("**Auth**")[0].strip()
        assert len(own) > 40, ("no description", where)
        # parameters
        for parameter in op.get("parameters", []):
            assert parameter.get("description"), (where, parameter["name"])
        # request examples, for every media type of the body
        body = op.get("requestBody")
        if body:
            for media_type, media in body["content"].items():
                examples += _assert_examples(doc, media, (*where, "request", media_type))
        # the success answer and its example
        responses = op["responses"]
        [success] = sorted(s for s in responses if s.startswith("2"))[:1]
        assert responses[success].get("description"), where
        assert responses[success].get("content"), (where, success)
        for media_type, media in responses[success]["content"].items():
            examples += _assert_examples(doc, media, (*where, success, media_type))
        # the errors it can answer
        expected = {"503"}
        authenticated = bool(op.get("security"))
        if authenticated:
            expected |= {"401", "429"}
            if (method, path) not in ANY_KEY:
                expected.add("403")
        if body:
            expected |= {"413", "422"}
        if op.get("parameters"):
            expected.add("422")
        if any(p["name"] == "Idempotency-Key" for p in op.get("parameters", [])):
            expected |= {"409", "422"}
        if any(p["in"] == "path" for p in op.get("parameters", [])) or (method, path) in MORE_404:
            expected.add("404")
        if (method, path) in MORE_409:
            expected.add("409")
        errors = {s for s in responses if int(s) >= 400}
        assert expected <= errors, (where, sorted(expected - errors))
        if not authenticated:
            assert not errors & {"401", "403", "429"}, where
        if (method, path) in ANY_KEY:
            assert "403" not in errors, where
        for status in errors:
            response = responses[status]
            assert response.get("description"), (where, status)
            assert list(response["content"]) == [PROBLEM], (where, status)
            media = response["content"][PROBLEM]
            assert media["schema"] == {"$ref": "#/components/schemas/Problem"}, (where, status)
            _assert_examples(doc, media, (*where, status))
            for example in media["examples"].values():
                assert example["value"]["status"] == int(status), (where, status, example)
            if status in ("429", "503"):
                assert "Retry-After" in response.get("headers", {}), (where, status)
    assert examples >= len(operations)
    # every property of every schema says what it is
    missing = [m for name, schema in doc["components"]["schemas"].items() for m in _undescribed(schema, name)]
    assert not missing, missing


def test_the_check_answers_show_every_outcome() -> None:
    """The examples ops teams see for a check cover each outcome, and the request examples are its requests."""
    op = _document("check-api")["paths"]["/v1/checks"]["post"]
    answers = op["responses"]["200"]["content"]["application/json"]["examples"]
    assert {a["value"]["outcome"] for a in answers.values()} == {
        "clear",
        "review",
        "incentive",
        "penalty",
        "mixed",
    }
    requests = op["requestBody"]["content"]["application/json"]["examples"]
    assert set(requests) == set(answers)
    problems = op["responses"]["422"]["content"][PROBLEM]["examples"]
    assert {p["value"]["code"] for p in problems.values()} >= {
        "invalid_subject_code",
        "ambiguous_subject_code",
        "validation_error",
        "idempotency_key_reused",
    }
    [invalid] = [p["value"] for p in problems.values() if p["value"]["code"] == "invalid_subject_code"]
    assert invalid["errors"][0]["rule"]


def test_the_bundles_are_the_examples() -> None:
    """The packages carry docs/examples/ as they are (regenerate with ONECHECK_WRITE_EXAMPLES=1)."""
    for service in SERVICES:
        assert json.loads(bundle_path(service).read_text(encoding="utf-8")) == json.loads(
            render_bundle(service)
        ), (
            f"{bundle_path(service)} differs from docs/examples: run tests/contract with ONECHECK_WRITE_EXAMPLES=1"
        )
