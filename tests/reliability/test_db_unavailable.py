"""S8 — forced server errors: the database unreachable, or an unexpected exception inside a route.

Every answer is a problem+json without internals (no traceback, no driver name, no SQL); a database outage and an
unexpected exception alike are a 503 `unavailable` with `Retry-After`, never a bare 500 (auth itself needs the
database, so even a request with a key gets the 503, never a misleading 401); the traceback of a bug goes to the
server's log as an error; liveness stays up while readiness says no.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import structlog.testing

from shared.api.combined import create_app
from shared.db.engine import Database
from shared.settings import Settings
from tests.builders import auth, make_client
from tests.conftest import AppFactory, api_client
from tests.reliability.test_route_security import _business_routes, _concrete
from tests.reliability.world import BAD_KEY

UNREACHABLE = "postgresql+asyncpg://onecheck@127.0.0.1:1/onecheck"
INTERNALS = re.compile(r"Traceback|asyncpg|sqlalchemy|SELECT|INSERT|UPDATE|File \"|\.py\b", re.IGNORECASE)


@pytest.fixture
async def down_api(test_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    settings = test_settings.model_copy(update={"database_url": UNREACHABLE})
    database = Database(UNREACHABLE, settings, application_name="onecheck-down")
    try:
        async with api_client(create_app(settings, database=database), key=BAD_KEY) as api:
            yield api
    finally:
        await database.close()


def _assert_unavailable(response: httpx.Response, what: str) -> None:
    assert response.status_code == 503, (what, response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/problem+json", what
    assert int(response.headers["retry-after"]) >= 1, what
    body = response.json()
    assert body["code"] == "unavailable", what
    assert body["status"] == 503, what
    assert not INTERNALS.search(response.text), (what, response.text)


async def test_every_business_route_answers_503_when_the_database_is_down(
    down_api: httpx.AsyncClient, test_settings: Settings
) -> None:
    routes = _business_routes(test_settings)
    assert len(routes) >= 10
    for method, path in routes:
        response = await down_api.request(method, _concrete(path), json={})
        _assert_unavailable(response, f"{method} {path}")


async def test_a_check_with_a_full_body_answers_503_too(down_api: httpx.AsyncClient) -> None:
    response = await down_api.post(
        "/v1/checks",
        json={
            "item_code": "I01",
            "subject": {"code": "310104198512242469", "name": "陈某"},
            "business_ref": "SP-1",
            "operator": "clerk-017",
        },
    )
    _assert_unavailable(response, "POST /v1/checks")
    assert "310104198512242469" not in response.text


async def test_liveness_stays_up_and_readiness_fails(down_api: httpx.AsyncClient) -> None:
    live = await down_api.get("/healthz")
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    ready = await down_api.get("/readyz")
    _assert_unavailable(ready, "/readyz")


async def test_an_unexpected_exception_is_a_503_without_internals(
    db: Database, app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception carrying SQL and a path in its message: the client sees none of it."""
    from services.check_api import service

    async def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError('SELECT subject_code FROM checks -- asyncpg Traceback File "/srv/x.py"')

    monkeypatch.setattr(service, "catalogue_items", boom)
    _, key = await make_client(db)
    async with api_client(app_factory(db)) as api:
        response = await api.get("/v1/items", headers=auth(key))
    _assert_unavailable(response, "an injected exception")


async def test_an_unexpected_exception_is_logged_with_its_traceback(
    db: Database, app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The client gets a 503 without internals; the operator gets the traceback, as an error."""
    from services.check_api import service

    async def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "catalogue_items", boom)
    _, key = await make_client(db)
    with caplog.at_level(logging.WARNING, logger="onecheck.errors"):
        async with api_client(app_factory(db)) as api:
            response = await api.get("/v1/items", headers=auth(key))
    assert response.status_code == 503
    (record,) = [r for r in caplog.records if r.name == "onecheck.errors"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert "/v1/items" in record.getMessage()


async def test_a_503_carries_no_store_and_the_request_id(down_api: httpx.AsyncClient) -> None:
    response = await down_api.get("/v1/items", headers={"X-Request-ID": "rel-503-probe"})
    assert response.status_code == 503
    assert response.headers.get("cache-control") == "no-store"
    assert response.headers.get("x-request-id") == "rel-503-probe"


async def test_a_database_outage_does_not_escape_the_app_as_an_exception(test_settings: Settings) -> None:
    settings = test_settings.model_copy(update={"database_url": UNREACHABLE})
    database = Database(UNREACHABLE, settings, application_name="onecheck-down")
    transport = httpx.ASGITransport(app=create_app(settings, database=database), raise_app_exceptions=True)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://onecheck.test") as api:
            response = await api.get("/v1/items", headers=auth(BAD_KEY))
    finally:
        await database.close()
    assert response.status_code == 503


async def test_metrics_count_a_503_as_a_503(down_api: httpx.AsyncClient) -> None:
    before = await down_api.get("/metrics")
    response = await down_api.get("/v1/measures")
    assert response.status_code == 503
    after = await down_api.get("/metrics")
    line = 'onecheck_http_requests_total{method="GET",route="/v1/measures",service="onecheck",status="503"}'

    def count(text: str) -> float:
        found = [row for row in text.splitlines() if row.startswith(line)]
        return float(found[0].split()[-1]) if found else 0.0

    assert count(after.text) == count(before.text) + 1


async def test_an_unexpected_exception_is_answered_inside_the_middleware(
    db: Database, app_factory: AppFactory, test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug too: 503 with Retry-After, request id, no-store, counted and logged as a 503, and nothing raised
    to the server."""
    from services.check_api import service

    async def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "catalogue_items", boom)
    _, key = await make_client(db)
    settings = test_settings.model_copy(update={"access_log": True})
    transport = httpx.ASGITransport(app=app_factory(db, settings=settings), raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://onecheck.test") as api:
        before = await api.get("/metrics")
        with structlog.testing.capture_logs() as logs:
            response = await api.get("/v1/items", headers={**auth(key), "X-Request-ID": "rel-bug-probe"})
        after = await api.get("/metrics")
    _assert_unavailable(response, "an injected exception")
    assert response.headers.get("cache-control") == "no-store"
    assert response.headers.get("x-request-id") == "rel-bug-probe"
    line = 'onecheck_http_requests_total{method="GET",route="/v1/items",service="onecheck",status="503"}'
    assert _count(after.text, line) == _count(before.text, line) + 1
    access = [e for e in logs if e.get("event") == "request" and e.get("route") == "/v1/items"]
    assert [e["status"] for e in access] == [503]


def _count(metrics: str, line: str) -> float:
    found = [row for row in metrics.splitlines() if row.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


async def test_a_503_is_logged_with_its_status(test_settings: Settings) -> None:
    settings = test_settings.model_copy(update={"database_url": UNREACHABLE, "access_log": True})
    database = Database(UNREACHABLE, settings, application_name="onecheck-down")
    try:
        async with api_client(create_app(settings, database=database), key=BAD_KEY) as api:
            with structlog.testing.capture_logs() as logs:
                response = await api.post("/v1/checks", json={})
    finally:
        await database.close()
    assert response.status_code == 503
    assert response.headers.get("cache-control") == "no-store"
    access = [e for e in logs if e.get("event") == "request"]
    assert [(e["route"], e["status"]) for e in access] == [("/v1/checks", 503)]
