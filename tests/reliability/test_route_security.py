"""Every business route demands a key (RELIABILITY.md S7) and never leaks internals (S8).

Walks the combined app's route table, so a route added later is covered without touching this file.
"""

from __future__ import annotations

import re
import uuid

import pytest

from shared.api.combined import create_app
from shared.db.engine import Database
from shared.models.access import SCOPES
from shared.settings import Settings
from tests.builders import auth, make_client
from tests.conftest import AppFactory, api_client

OPEN_PATHS = {"/healthz", "/readyz", "/metrics"}


def _business_routes(settings: Settings) -> list[tuple[str, str]]:
    # The OpenAPI document, not `app.routes`: included routers do not expose their paths there.
    schema = create_app(settings).openapi()
    return [
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        if path.startswith("/v1/")
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


def test_the_api_has_business_routes(test_settings: Settings) -> None:
    routes = _business_routes(test_settings)
    assert ("POST", "/v1/checks") in routes
    assert len(routes) >= 10


async def test_every_business_route_answers_401_without_a_key(
    db: Database, app_factory: AppFactory, test_settings: Settings
) -> None:
    async with api_client(app_factory(db)) as api:
        for method, path in _business_routes(test_settings):
            response = await api.request(method, _concrete(path), json={})
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.json()["code"] == "unauthorized"


async def test_every_business_route_answers_401_for_an_unknown_key(
    db: Database, app_factory: AppFactory, test_settings: Settings
) -> None:
    async with api_client(app_factory(db), key="oc_" + "x" * 43) as api:
        for method, path in _business_routes(test_settings):
            response = await api.request(method, _concrete(path), json={})
            assert response.status_code == 401, (method, path)


@pytest.mark.parametrize("scope", ["pii:read"])
async def test_a_key_without_the_route_scope_never_gets_a_2xx(
    db: Database, app_factory: AppFactory, test_settings: Settings, scope: str
) -> None:
    """A key holding only `pii:read` reaches nothing: each business route needs a real scope (or is a
    catalogue read, which any valid key may make)."""
    _, key = await make_client(db, scopes=scope)
    catalogue_reads = re.compile(r"^/v1/(items|list-types|measures|memoranda)")
    async with api_client(app_factory(db)) as api:
        for method, path in _business_routes(test_settings):
            response = await api.request(method, _concrete(path), json={}, headers=auth(key))
            if method == "GET" and catalogue_reads.match(path):
                continue
            assert response.status_code in (403, 404, 422), (method, path, response.status_code)
            assert response.status_code != 500


async def test_business_responses_are_never_cached(db: Database, app_factory: AppFactory) -> None:
    _, key = await make_client(db)
    async with api_client(app_factory(db), key=key) as api:
        response = await api.get(f"/v1/checks/{uuid.uuid4()}")
    assert response.headers["cache-control"] == "no-store"


# S7: which scope opens which route. Every /v1 route must be listed here, so a new route states its scope.
ANY_KEY = "any valid key"
ROUTE_SCOPES: dict[tuple[str, str], set[str]] = {
    ("POST", "/v1/checks"): {"check"},
    ("POST", "/v1/checks/batch"): {"check"},
    ("GET", "/v1/checks/{check_id}"): {"check"},
    ("GET", "/v1/checks/{check_id}/report"): {"check"},
    ("GET", "/v1/items"): {ANY_KEY},
    ("GET", "/v1/items/{code}"): {ANY_KEY},
    ("GET", "/v1/list-types"): {ANY_KEY},
    ("GET", "/v1/measures"): {ANY_KEY},
    ("GET", "/v1/memoranda"): {ANY_KEY},
    ("POST", "/v1/catalogue/import"): {"catalogue:write"},
    ("POST", "/v1/entries"): {"lists:write"},
    ("GET", "/v1/entries/{entry_id}"): {"lists:read"},
    ("POST", "/v1/entries/{entry_id}/events"): {"lists:write"},
    ("POST", "/v1/sources"): {"sync:admin"},
    ("GET", "/v1/sources"): {"sync:admin"},
    ("POST", "/v1/sources/{name}/runs"): {"sync:admin"},
    ("GET", "/v1/runs"): {"sync:admin"},
    ("GET", "/v1/runs/{run_id}"): {"sync:admin"},
    ("POST", "/v1/runs/{run_id}/confirm"): {"sync:admin"},
    ("POST", "/v1/runs/{run_id}/discard"): {"sync:admin"},
    ("GET", "/v1/quarantine"): {"sync:admin"},
    ("POST", "/v1/subscriptions"): {"lists:read"},
    ("GET", "/v1/subscriptions"): {"lists:read"},
    ("DELETE", "/v1/subscriptions/{subscription_id}"): {"lists:read"},
    ("GET", "/v1/subscriptions/{subscription_id}/deliveries"): {"lists:read"},
    ("POST", "/v1/checks/{check_id}/feedback"): {"feedback"},
    ("GET", "/v1/checks/{check_id}/feedback"): {"feedback", "check"},
    ("GET", "/v1/entries/{entry_id}/enforcement"): {"lists:read"},
    ("GET", "/v1/stats/enforcement"): {"stats:read"},
    ("GET", "/v1/outbox"): {"sync:admin"},
    ("POST", "/v1/outbox/replay"): {"sync:admin"},
}


def test_every_business_route_states_its_scope(test_settings: Settings) -> None:
    assert set(_business_routes(test_settings)) == set(ROUTE_SCOPES)


@pytest.mark.parametrize("scope", [s for s in SCOPES if s != "pii:read"])
async def test_a_single_scope_key_opens_exactly_its_routes(
    db: Database, app_factory: AppFactory, test_settings: Settings, scope: str
) -> None:
    """A business key on an ops route, an ops key on a business route: 403, before the body is even read."""
    _, key = await make_client(db, scopes=scope, any_department=True)
    wrong: dict[str, int] = {}
    async with api_client(app_factory(db), key=key) as api:
        for method, path in _business_routes(test_settings):
            response = await api.request(method, _concrete(path), json={})
            opens = scope in ROUTE_SCOPES[method, path] or ANY_KEY in ROUTE_SCOPES[method, path]
            if opens != (response.status_code != 403):
                wrong[f"{method} {path}"] = response.status_code
            if response.status_code == 403:
                assert response.json()["code"] == "forbidden"
    assert wrong == {}


@pytest.mark.parametrize("param", ["api_key", "access_token", "key", "token"])
async def test_a_key_in_the_query_string_never_authenticates(
    db: Database, app_factory: AppFactory, param: str
) -> None:
    """Keys end up in access logs and browser history from a URL: only the Authorization header counts."""
    _, key = await make_client(db)
    async with api_client(app_factory(db)) as api:
        response = await api.get("/v1/items", params={param: key})
        assert response.status_code == 401
        assert (await api.get("/v1/items", headers=auth(key))).status_code == 200
