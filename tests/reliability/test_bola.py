"""S1 — object-level authorisation (OWASP API1): every id-taking route × who asks.

Cells: the owner, another client (every scope, another department), no key, an unknown key, a random id of the
right shape, and a non-UUID. Another client's id must answer exactly what a missing id answers, byte for byte,
so that nobody can learn which ids exist.

Two routes are deliberately readable by any key with the scope (contract, Conventions → Object access names
only checks, their feedback and enforcement as private): `GET /v1/entries/{id}` (list entries are shared list
data for every `lists:read` client) and `GET /v1/runs/{id}` (`sync:admin` is an operator scope; runs are not
owned by a client). Changing another department's entry is 403, as the contract says.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from shared.db.engine import Database
from tests.builders import auth
from tests.conftest import AppFactory, api_client
from tests.reliability.world import BAD_KEY, World, build_world, event_body, feedback_body, fresh_check_id


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # "{id}" is the object's id
    kind: str  # which id of the world
    owner: int
    other: int = 404
    body: dict[str, Any] | None = None


ROUTES = [
    Route("GET", "/v1/checks/{id}", "check_id", 200),
    Route("GET", "/v1/checks/{id}/report", "check_id", 200),
    Route("GET", "/v1/checks/{id}/feedback", "check_id", 200),
    Route("POST", "/v1/checks/{id}/feedback", "check_id", 200, body=feedback_body()),
    Route("GET", "/v1/entries/{id}/enforcement", "entry_id", 200),
    Route("GET", "/v1/entries/{id}", "entry_id", 200, other=200),
    Route("POST", "/v1/entries/{id}/events", "entry_id", 200, other=403, body=event_body()),
    Route("GET", "/v1/runs/{id}", "run_id", 200, other=200),
    Route("GET", "/v1/subscriptions/{id}/deliveries", "subscription_id", 200),
    Route("DELETE", "/v1/subscriptions/{id}", "subscription_id", 200),
]


def _random_id(kind: str) -> str:
    # A check id is a UUIDv7 (it locates its month partition): probe with one of the same shape.
    return fresh_check_id() if kind == "check_id" else str(uuid.uuid4())


async def _call(api: httpx.AsyncClient, route: Route, object_id: str, key: str | None) -> httpx.Response:
    headers = auth(key) if key else {}
    url = route.template.format(id=object_id)
    return await api.request(method=route.method, url=url, json=route.body, headers=headers)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.template}")
async def test_object_access_matrix(db: Database, app_factory: AppFactory, route: Route) -> None:
    async with api_client(app_factory(db)) as api:
        world: World = await build_world(db, api)
        real = world.ids()[route.kind]
        cells: dict[str, httpx.Response] = {}
        # The owner goes last: its write must not be what makes the other cells answer as they do.
        cells["other client"] = await _call(api, route, real, world.other_key)
        cells["no key"] = await _call(api, route, real, None)
        cells["bad key"] = await _call(api, route, real, BAD_KEY)
        cells["random id"] = await _call(api, route, _random_id(route.kind), world.owner_key)
        cells["non-UUID"] = await _call(api, route, "not-a-uuid", world.owner_key)
        cells["owner"] = await _call(api, route, real, world.owner_key)

    expected = {
        "owner": route.owner,
        "other client": route.other,
        "no key": 401,
        "bad key": 401,
        "random id": 404,
        "non-UUID": 404,
    }
    got = {cell: response.status_code for cell, response in cells.items()}
    assert got == expected, {cell: cells[cell].text[:200] for cell in got if got[cell] != expected[cell]}
    for cell in ("no key", "bad key", "random id", "non-UUID"):
        assert cells[cell].headers["content-type"] == "application/problem+json", cell
    if route.other == 404:
        # Nothing distinguishes "exists but not yours" from "does not exist": not the status, not one byte.
        assert cells["other client"].content == cells["random id"].content
        assert cells["other client"].headers["content-type"] == cells["random id"].headers["content-type"]
        assert cells["non-UUID"].content == cells["random id"].content


async def test_another_clients_feedback_is_not_recorded(db: Database, app_factory: AppFactory) -> None:
    """The refused POST changed nothing: the owner still sees every measure awaiting."""
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        url = f"/v1/checks/{world.check_id}/feedback"
        refused = await api.post(url, json=feedback_body(), headers=auth(world.other_key))
        assert refused.status_code == 404
        status = await api.get(url, headers=auth(world.owner_key))
    assert status.status_code == 200
    assert {m["code"]: m["status"] for m in status.json()["measures"]} == {
        "M05": "awaiting",
        "M22": "awaiting",
    }
    assert status.json()["decision"] is None
