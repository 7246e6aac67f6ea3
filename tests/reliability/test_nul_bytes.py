"""A NUL character anywhere a client can put text: PostgreSQL `text` cannot store it, so it must be refused as
a 4xx problem before it reaches the database, never a 500 (found by the nightly F1 run, 1,000/operation).

Covers every string query parameter and path parameter of the OpenAPI, and every string field of every JSON
POST body the API takes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.api.combined import create_app
from shared.db.engine import Database
from shared.settings import Settings
from tests.builders import auth
from tests.conftest import AppFactory, api_client
from tests.reliability.test_input_limits import BODIES, _replace, _string_leaves
from tests.reliability.world import ORG_CODE, OWNER_DEPARTMENT, World, build_world

NUL = "a\x00b"
_SETTINGS = Settings(environment="test", database_url="postgresql+asyncpg://x@127.0.0.1:1/x")
_OPENAPI: dict[str, Any] = create_app(_SETTINGS).openapi()


def _text_parameters() -> list[Any]:
    cases = []
    for path, operations in _OPENAPI["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] not in ("query", "path"):
                    continue
                schema = parameter.get("schema", {})
                types = {schema.get("type")} | {s.get("type") for s in schema.get("anyOf", [])}
                if "string" not in types or "format" in schema or "enum" in schema:
                    continue
                key = (method.upper(), path, parameter["name"])
                cases.append(pytest.param(*key, parameter["in"], id=f"{key[0]} {path} {key[2]}"))
    return cases


@pytest.mark.parametrize(("method", "path", "name", "where"), _text_parameters())
async def test_a_nul_in_a_parameter_is_refused_as_a_4xx(
    db: Database, app_factory: AppFactory, method: str, path: str, name: str, where: str
) -> None:
    async with api_client(app_factory(db)) as api:
        world: World = await build_world(db, api)
        ids = {**world.ids(), "name": "rel-src", "code": "I01"}
        # In a path the NUL travels percent-encoded, as any client would send it.
        url = path.format(**{k: ("a%00b" if k == name else v) for k, v in ids.items()})
        params = {name: NUL} if where == "query" else {}
        if path == "/v1/quarantine" and name != "run_id":
            params["run_id"] = world.run_id
        # A POST gets its valid body, so that the handler (not the body validation) meets the parameter.
        body = _body(path) if method == "POST" and path in BODIES else None
        response = await api.request(method, url, params=params, json=body, headers=auth(world.owner_key))
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/problem+json"


def _body(path: str) -> dict[str, Any]:
    """The example body, with the optional texts filled in so that they are probed too."""
    body = BODIES[path]()
    person = {"role": "legal_representative", "code": "110105199003071239", "name": "王某"}
    if path == "/v1/checks":
        body["related_persons"] = [person]
    if path == "/v1/entries":
        body["linked_persons"] = [person]
        body["issuing_department"] = OWNER_DEPARTMENT
        body["operator"] = "judge-3"
    if path == "/v1/checks/{check_id}/feedback":
        body["measures"] = [{"code": "M05", "status": "not_applied", "note": "已核实"}]
    if path == "/v1/sources":
        body["token"] = "upstream-token"
    if path == "/v1/subscriptions":
        body["subject_codes"] = [ORG_CODE]
    return body


@pytest.mark.parametrize("path", sorted(BODIES))
async def test_the_probed_bodies_are_accepted_as_they_are(
    db: Database, app_factory: AppFactory, path: str
) -> None:
    """The control for the body tests below: without the NUL, each full body is answered 2xx."""
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        response = await api.post(path.format(**world.ids()), json=_body(path), headers=auth(world.owner_key))
    assert 200 <= response.status_code < 300, (response.status_code, response.text[:300])


def _body_strings() -> list[Any]:
    cases = []
    for path in sorted(BODIES):
        for loc in _string_leaves(_body(path)):
            cases.append(pytest.param(path, loc, id=f"{path} {'.'.join(map(str, loc))}"))
    return cases


# A lone surrogate: JSON spells it ("\\ud800"), the parser accepts it, and neither UTF-8 nor PostgreSQL can
# hold it. Refused like a NUL.
LONE_SURROGATE = "\ud800"


@pytest.mark.parametrize("bad", [NUL, LONE_SURROGATE], ids=["nul", "lone-surrogate"])
@pytest.mark.parametrize(("path", "loc"), _body_strings())
async def test_a_nul_in_any_body_string_is_refused_as_a_4xx(
    db: Database, app_factory: AppFactory, path: str, loc: tuple[str | int, ...], bad: str
) -> None:
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        response = await api.post(
            path.format(**world.ids()),
            content=json.dumps(_replace(_body(path), loc, bad)),
            headers={**auth(world.owner_key), "Content-Type": "application/json"},
        )
    if path == "/v1/checks/batch" and loc == ("subjects", 0, "code") and bad == NUL:
        # A batch answers each subject in its place: the bad one is a problem inside the 200. (A lone
        # surrogate is no text at all: the request itself is refused.)
        assert response.status_code == 200, response.text[:300]
        assert response.json()["results"][0]["status"] in (404, 422)
        return
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/problem+json"
    # Refused as the invalid value it is, by the shared NUL-free text type (or a subject code's own rules).
    assert response.status_code == 422, response.text[:300]
    assert response.json()["code"] in ("validation_error", "invalid_subject_code"), response.text[:300]


# A source that needs other fields than the example: each of its strings probed the same way.
OTHER_BODIES = {
    "file source": ("/v1/sources", {"name": "nul-file", "kind": "file", "path": "lists/entries.csv"}),
}


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        pytest.param(path, body, loc, id=f"{what} {'.'.join(map(str, loc))}")
        for what, (path, body) in OTHER_BODIES.items()
        for loc in _string_leaves(body)
    ],
)
async def test_a_nul_in_the_strings_of_other_bodies_is_a_422(
    db: Database, app_factory: AppFactory, path: str, body: dict[str, Any], loc: tuple[str | int, ...]
) -> None:
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        response = await api.post(path, json=_replace(body, loc, NUL), headers=auth(world.owner_key))
    assert response.status_code == 422, response.text[:300]
    assert response.json()["code"] == "validation_error"


@pytest.mark.parametrize(("method", "path", "name", "where"), _text_parameters())
async def test_a_nul_in_a_parameter_answers_like_a_missing_id_or_a_422(
    db: Database, app_factory: AppFactory, method: str, path: str, name: str, where: str
) -> None:
    """The same value without its NUL names nothing this world has: where that answers 4xx (no such id,
    not a cursor), the NUL answers exactly the same; where it is a filter that answers 2xx, the NUL is a 422."""

    async def send(api: Any, world: World, value: str) -> Any:
        ids = {**world.ids(), "name": "rel-src", "code": "I01"}
        encoded = value.replace("\x00", "%00")
        url = path.format(**{k: (encoded if k == name else v) for k, v in ids.items()})
        params = {name: value} if where == "query" else {}
        if path == "/v1/quarantine" and name != "run_id":
            params["run_id"] = world.run_id
        body = _body(path) if method == "POST" and path in BODIES else None
        return await api.request(method, url, params=params, json=body, headers=auth(world.owner_key))

    async with api_client(app_factory(db)) as api:
        world: World = await build_world(db, api)
        with_nul = await send(api, world, NUL)
        without = await send(api, world, NUL.replace("\x00", ""))
    assert with_nul.headers["content-type"] == "application/problem+json"
    if 200 <= without.status_code < 300:
        assert with_nul.status_code == 422, with_nul.text[:300]
        assert with_nul.json()["code"] == "validation_error"
    else:
        assert with_nul.status_code == without.status_code, (with_nul.text[:300], without.text[:300])
        assert with_nul.json()["code"] == without.json()["code"]
        assert with_nul.json()["title"] == without.json()["title"]


@pytest.mark.parametrize("idempotency_key", [None, "nul-probe-1"], ids=["no key", "with a key"])
async def test_a_refusal_for_an_id_with_a_nul_is_audited_without_the_nul(
    db: Database, app_factory: AppFactory, idempotency_key: str | None
) -> None:
    """Refusals are audited with the id asked for (P2); `text` cannot hold the NUL, so it is kept as U+FFFD.
    With an Idempotency-Key the route (holding the id) is stored too: the same 404."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        answers = [
            await api.post(
                "/v1/checks/a%00b/feedback",
                json=_body("/v1/checks/{check_id}/feedback"),
                headers={**auth(world.owner_key), **headers},
            ),
            await api.get("/v1/entries/a%00b/enforcement", headers=auth(world.owner_key)),
            await api.post(
                "/v1/entries/a%00b/events",
                json=_body("/v1/entries/{entry_id}/events"),
                headers={**auth(world.owner_key), **headers},
            ),
            await api.post("/v1/sources/a%00b/runs", headers={**auth(world.owner_key), **headers}),
        ]
    assert [a.status_code for a in answers] == [404] * 4, [a.text[:200] for a in answers]
    request_ids = [a.headers["x-request-id"] for a in answers[:2]]
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT action, status, object_id, path FROM audit_log WHERE request_id = ANY($1::text[]) ORDER BY id",
            request_ids,
        )
    assert [(r["action"], r["status"], r["object_id"]) for r in rows] == [
        ("feedback.submit", 404, "a\ufffdb"),
        ("entry.enforcement.read", 404, "a\ufffdb"),
    ]
    assert all("\x00" not in r["path"] for r in rows)
