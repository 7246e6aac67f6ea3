"""The shared app frame: health, readiness, problem+json errors, auth, body limit, request ids."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from shared.api.app import ServiceSpec, create_service_app
from shared.api.auth import CheckClient, Client
from shared.db.engine import Database
from shared.errors import Conflict, OneCheckError
from shared.settings import Settings
from tests.builders import auth, make_client
from tests.conftest import AppFactory, api_client

router = APIRouter()


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


@router.post("/v1/echo")
async def echo(body: Body, client: CheckClient) -> dict[str, str]:
    return {"name": body.name, "client": client.name}


@router.get("/v1/conflict")
async def conflict(client: CheckClient) -> Client:
    raise Conflict("already so")


@router.get("/v1/boom")
async def boom() -> None:
    raise RuntimeError("SELECT secret FROM table; Traceback")


@router.get("/v1/bare-error")
async def bare_error() -> None:
    raise OneCheckError("no subclass says what went wrong")


def _app(db: Database, settings: Settings) -> object:
    return create_service_app(
        ServiceSpec(name="t", title="T", description="test", routers=[router]), settings, database=db
    )


async def test_healthz_and_readyz(db: Database, app_factory: AppFactory) -> None:
    async with api_client(app_factory(db)) as api:
        assert (await api.get("/healthz")).json() == {"status": "ok"}
        ready = await api.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"


async def test_readyz_is_503_when_schema_is_not_current(db: Database, app_factory: AppFactory) -> None:
    async with db.connection() as conn:
        await conn.execute("UPDATE alembic_version SET version_num = '0000_older'")
    async with api_client(app_factory(db)) as api:
        response = await api.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"]
    assert response.json()["code"] == "unavailable"


async def test_each_service_serves_docs_and_openapi(db: Database, app_factory: AppFactory) -> None:
    for service in ("check-api", "list-sync", "feedback", "all"):
        async with api_client(app_factory(db, service)) as api:
            assert (await api.get("/openapi.json")).status_code == 200
            assert (await api.get("/docs")).status_code == 200
            assert (await api.get("/metrics")).status_code == 200


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Bearer oc_not-a-key"}, 401, "unauthorized"),
        ({"Authorization": "Basic abc"}, 401, "unauthorized"),
    ],
)
async def test_missing_or_unknown_key_is_401(
    db: Database, test_settings: Settings, headers: dict[str, str], status: int, code: str
) -> None:
    async with api_client(_app(db, test_settings)) as api:  # type: ignore[arg-type]
        response = await api.post("/v1/echo", json={"name": "x"}, headers=headers)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert response.headers["content-type"] == "application/problem+json"


async def test_wrong_scope_is_403_and_right_scope_passes(db: Database, test_settings: Settings) -> None:
    _, stats_key = await make_client(db, scopes="stats:read")
    _, check_key = await make_client(db, scopes="check", name="checker")
    async with api_client(_app(db, test_settings)) as api:  # type: ignore[arg-type]
        denied = await api.post("/v1/echo", json={"name": "x"}, headers=auth(stats_key))
        allowed = await api.post("/v1/echo", json={"name": "x"}, headers=auth(check_key))
    assert denied.status_code == 403
    assert denied.json()["code"] == "forbidden"
    assert allowed.status_code == 200
    assert allowed.json() == {"name": "x", "client": "checker"}
    assert allowed.headers["cache-control"] == "no-store"
    assert allowed.headers["x-request-id"]


async def test_revoked_key_is_401(db: Database, test_settings: Settings) -> None:
    client_id, key = await make_client(db, scopes="check")
    async with db.connection() as conn:
        await conn.execute("UPDATE api_clients SET revoked_at = now() WHERE client_id = $1", client_id)
    async with api_client(_app(db, test_settings)) as api:  # type: ignore[arg-type]
        assert (await api.post("/v1/echo", json={"name": "x"}, headers=auth(key))).status_code == 401


async def test_validation_errors_are_422_problems(db: Database, test_settings: Settings) -> None:
    _, key = await make_client(db, scopes="check")
    async with api_client(_app(db, test_settings)) as api:  # type: ignore[arg-type]
        unknown_field = await api.post("/v1/echo", json={"name": "x", "client_id": "y"}, headers=auth(key))
        malformed = await api.post(
            "/v1/echo", content=b'{"name": ', headers={**auth(key), "content-type": "application/json"}
        )
    for response in (unknown_field, malformed):
        assert response.status_code == 422
        body = response.json()
        assert body["code"] == "validation_error"
        assert body["errors"]
        assert {"loc", "msg"} <= set(body["errors"][0])
    assert malformed.json()["detail"] == "the request body is not valid JSON"


async def test_domain_error_keeps_its_status_and_code(db: Database, test_settings: Settings) -> None:
    _, key = await make_client(db, scopes="check")
    async with api_client(_app(db, test_settings)) as api:  # type: ignore[arg-type]
        response = await api.get("/v1/conflict", headers=auth(key))
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"


async def test_unexpected_error_is_a_problem_without_internals(db: Database, test_settings: Settings) -> None:
    async with api_client(_app(db, test_settings)) as api:  # type: ignore[arg-type]
        response = await api.get("/v1/boom")
    assert response.status_code == 503  # contract: never a bare 500; 503 `unavailable` with Retry-After
    assert response.json()["code"] == "unavailable"
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["content-type"] == "application/problem+json"
    assert "SELECT" not in response.text
    assert "Traceback" not in response.text


async def test_the_base_error_class_is_a_503_with_retry_after(db: Database, test_settings: Settings) -> None:
    async with api_client(_app(db, test_settings)) as api:  # type: ignore[arg-type]
        response = await api.get("/v1/bare-error")
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"
    assert int(response.headers["retry-after"]) >= 1


async def test_body_over_the_limit_is_413(db: Database, test_settings: Settings) -> None:
    _, key = await make_client(db, scopes="check")
    limit = test_settings.max_body_bytes
    async with api_client(_app(db, test_settings)) as api:  # type: ignore[arg-type]
        declared = await api.post(
            "/v1/echo", content=b"x" * (limit + 1), headers={**auth(key), "content-type": "application/json"}
        )

        async def stream() -> AsyncIterator[bytes]:
            yield b'{"name": "'
            yield b"x" * (limit + 1)
            yield b'"}'

        streamed = await api.post(
            "/v1/echo", content=stream(), headers={**auth(key), "content-type": "application/json"}
        )
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"


async def test_unknown_route_and_method_are_problems(api) -> None:  # type: ignore[no-untyped-def]
    missing = await api.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    wrong_method = await api.delete("/healthz")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/problem+json"


async def test_rate_limit_answers_429_with_retry_after(db: Database, test_settings: Settings) -> None:
    settings = test_settings.model_copy(update={"rate_limit_per_minute": 2})
    _, key = await make_client(db, scopes="check")
    async with api_client(_app(db, settings)) as api:  # type: ignore[arg-type]
        statuses = [(await api.post("/v1/echo", json={"name": "x"}, headers=auth(key))) for _ in range(3)]
    assert [r.status_code for r in statuses[:2]] == [200, 200]
    assert statuses[2].status_code == 429
    assert statuses[2].json()["code"] == "rate_limited"
    assert int(statuses[2].headers["retry-after"]) >= 1
