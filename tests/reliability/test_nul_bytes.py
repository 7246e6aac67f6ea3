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
from tests.reliability.world import World, build_world

NUL = "a\x00b"
_SETTINGS = Settings(environment="test", database_url="postgresql+asyncpg://x@127.0.0.1:1/x")
_OPENAPI: dict[str, Any] = create_app(_SETTINGS).openapi()

_NUL_IN_QUERY = (
    "BUG: a NUL in a text query parameter reaches PostgreSQL (asyncpg CharacterNotInRepertoireError) and is "
    "answered 500: "
)
KNOWN_500 = {
    ("GET", "/v1/runs", "source"): _NUL_IN_QUERY
    + "services/list_sync/router.py list_runs `source` (Query(max_length=64), no NUL check) → runs.list_runs",
    ("GET", "/v1/stats/enforcement", "department"): _NUL_IN_QUERY
    + "services/feedback/router.py get_enforcement_stats `department` → StatsFilter → repository SQL",
    ("GET", "/v1/stats/enforcement", "item_code"): _NUL_IN_QUERY
    + "services/feedback/router.py get_enforcement_stats `item_code` → StatsFilter → repository SQL",
    ("GET", "/v1/stats/enforcement", "list_type"): _NUL_IN_QUERY
    + "services/feedback/router.py get_enforcement_stats `list_type` → StatsFilter → repository SQL",
    ("POST", "/v1/sources/{name}/runs", "name"): "BUG: a NUL in the source name of the path (%00) reaches "
    "PostgreSQL and is answered 500: services/list_sync/router.py:186 → runs.start_run looks the name up as is",
    ("POST", "/v1/checks/{check_id}/feedback", "check_id"): "BUG: a NUL in the check id of the path (%00) is "
    "answered 500, not 404: the refusal is audited with the raw path id, services/feedback/router.py:107 "
    "`_audited_refusal(..., object_id=check_id)`, and PostgreSQL refuses the NUL in audit_log.object_id",
    (
        "GET",
        "/v1/entries/{entry_id}/enforcement",
        "entry_id",
    ): "BUG: a NUL in the entry id of the path (%00) is "
    "answered 500, not 404: the refusal is audited with the raw path id, services/feedback/router.py:170 "
    "`_audited_refusal(..., object_id=entry_id)`, and PostgreSQL refuses the NUL in audit_log.object_id",
}


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
                marks = [pytest.mark.xfail(strict=True, reason=KNOWN_500[key])] if key in KNOWN_500 else []
                cases.append(pytest.param(*key, parameter["in"], id=f"{key[0]} {path} {key[2]}", marks=marks))
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


_NUL_IN_BODY = "BUG: a NUL in a JSON string is stored as is and PostgreSQL refuses it: 500 (check-api refuses NUL with 422, see services/check_api/schemas.py `_no_nul`): "
_LIST_SYNC_TEXT = "services/list_sync/schemas.py:25 `Text` (StringConstraints only) "
_FEEDBACK = "services/feedback/schemas.py "
KNOWN_BODY_500 = {
    ("/v1/checks/{check_id}/feedback", ("operator",)): _FEEDBACK + "FeedbackIn.operator (line 61)",
    ("/v1/checks/{check_id}/feedback", ("measures", 0, "note")): _FEEDBACK + "MeasureReport.note (line 26)",
    ("/v1/entries", ("reason",)): _LIST_SYNC_TEXT + "PublishEntryIn.reason",
    ("/v1/entries", ("decision_no",)): _LIST_SYNC_TEXT + "PublishEntryIn.decision_no",
    ("/v1/entries", ("subject", "name")): _LIST_SYNC_TEXT + "SubjectIn.name",
    ("/v1/entries", ("linked_persons", 0, "name")): _LIST_SYNC_TEXT + "LinkedPersonIn.name",
    ("/v1/entries/{entry_id}/events", ("basis",)): _LIST_SYNC_TEXT + "EntryEventIn.basis",
    ("/v1/entries/{entry_id}/events", ("operator",)): _LIST_SYNC_TEXT + "EntryEventIn.operator",
}


def _body(path: str) -> dict[str, Any]:
    """The example body, with the optional texts filled in so that they are probed too."""
    body = BODIES[path]()
    person = {"role": "legal_representative", "code": "110105199003071239", "name": "王某"}
    if path == "/v1/checks":
        body["related_persons"] = [person]
    if path == "/v1/entries":
        body["linked_persons"] = [person]
    if path == "/v1/checks/{check_id}/feedback":
        body["measures"] = [{"code": "M05", "status": "not_applied", "note": "已核实"}]
    return body


def _body_strings() -> list[Any]:
    cases = []
    for path in sorted(BODIES):
        for loc in _string_leaves(_body(path)):
            reason = KNOWN_BODY_500.get((path, loc))
            marks = [pytest.mark.xfail(strict=True, reason=_NUL_IN_BODY + reason)] if reason else []
            cases.append(pytest.param(path, loc, id=f"{path} {'.'.join(map(str, loc))}", marks=marks))
    return cases


@pytest.mark.parametrize(("path", "loc"), _body_strings())
async def test_a_nul_in_any_body_string_is_refused_as_a_4xx(
    db: Database, app_factory: AppFactory, path: str, loc: tuple[str | int, ...]
) -> None:
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        response = await api.post(
            path.format(**world.ids()),
            content=json.dumps(_replace(_body(path), loc, NUL)),
            headers={**auth(world.owner_key), "Content-Type": "application/json"},
        )
    if path == "/v1/checks/batch" and loc == ("subjects", 0, "code"):
        # A batch answers each subject in its place: the bad one is a problem inside the 200.
        assert response.status_code == 200, response.text[:300]
        assert response.json()["results"][0]["status"] in (404, 422)
        return
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/problem+json"
