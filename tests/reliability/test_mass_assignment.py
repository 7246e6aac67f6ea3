"""S4 — mass assignment: a body may not set what the server decides (owner, ids, status, times, matches).

Every JSON POST of the API, with each forbidden field added at the top level and in each nested object the
body has, answers 422 `validation_error` naming the field, and no table gains or loses a row. The same body
without the extra field succeeds, so the 422 is the extra field's doing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.db.engine import Database
from tests.builders import auth
from tests.conftest import AppFactory, api_client
from tests.reliability.world import (
    World,
    batch_body,
    build_world,
    check_body,
    entry_body,
    event_body,
    feedback_body,
    row_counts,
    source_body,
    subscription_body,
)

TEMPLATE = Path(__file__).parents[2] / "docs" / "catalogue-template.csv"
FORBIDDEN = {
    "client_id": "00000000-0000-0000-0000-000000000001",
    "check_id": "00000000-0000-0000-0000-000000000002",
    "status": "ended",
    "created_at": "2020-01-01T00:00:00+08:00",
    "matched": False,
}


@dataclass(frozen=True)
class Post:
    path: str  # may name {check_id} / {entry_id}
    body: Callable[[], dict[str, Any]]
    ok: int


POSTS = [
    Post("/v1/checks", check_body, 200),
    Post("/v1/checks/batch", batch_body, 200),
    Post("/v1/checks/{check_id}/feedback", feedback_body, 200),
    Post("/v1/entries", entry_body, 201),
    Post("/v1/entries/{entry_id}/events", event_body, 200),
    Post("/v1/sources", source_body, 201),
    Post("/v1/subscriptions", subscription_body, 201),
]


def _objects(body: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Where a JSON object sits in `body` (the root included)."""
    if isinstance(body, dict):
        yield loc
        for key, value in body.items():
            yield from _objects(value, (*loc, key))
    elif isinstance(body, list):
        for i, value in enumerate(body):
            yield from _objects(value, (*loc, i))


def _with_extra(body: dict[str, Any], loc: tuple[str | int, ...], name: str) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for part in loc:
        target = target[part]
    target[name] = FORBIDDEN[name]
    return changed


def _with_nested_objects(post: Post) -> dict[str, Any]:
    """The example body, with a related person / linked person / measure list so that nesting is covered."""
    body = post.body()
    if post.path == "/v1/checks":
        body["related_persons"] = [
            {"role": "legal_representative", "code": "110105199003071239", "name": "王某"}
        ]
    if post.path == "/v1/entries":
        body["linked_persons"] = [
            {"role": "legal_representative", "code": "110105199003071239", "name": "王某"}
        ]
    return body


@pytest.mark.parametrize("post", POSTS, ids=lambda p: p.path)
async def test_extra_fields_are_refused_and_change_nothing(
    db: Database, app_factory: AppFactory, post: Post
) -> None:
    async with api_client(app_factory(db)) as api:
        world: World = await build_world(db, api)
        path = post.path.format(**world.ids())
        body = _with_nested_objects(post)
        before = await row_counts(db)
        tried = 0
        for loc in _objects(body):
            if loc and loc[-1] in ("errors",):
                continue
            for name in FORBIDDEN:
                if loc == () and name in body:
                    continue
                response = await api.post(
                    path, json=_with_extra(body, loc, name), headers=auth(world.owner_key)
                )
                tried += 1
                assert response.status_code == 422, (loc, name, response.status_code, response.text[:300])
                problem = response.json()
                assert problem["code"] == "validation_error", problem
                assert [*loc, name] in [e["loc"][1:] for e in problem["errors"]], problem["errors"]
        assert await row_counts(db) == before
        accepted = await api.post(path, json=body, headers=auth(world.owner_key))
    assert accepted.status_code == post.ok, accepted.text
    assert tried >= len(FORBIDDEN)


async def test_the_catalogue_upload_refuses_unknown_form_fields(
    db: Database, app_factory: AppFactory
) -> None:
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        before = await row_counts(db)
        response = await api.post(
            "/v1/catalogue/import",
            files={"file": ("catalogue.csv", TEMPLATE.read_bytes(), "text/csv")},
            data={"client_id": str(world.other_id)},
            headers=auth(world.owner_key),
        )
        after = await row_counts(db)
    assert response.status_code == 422, response.text
    assert after == before


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
@pytest.mark.parametrize("as_file", [False, True], ids=["form field", "file part"])
async def test_every_extra_part_of_the_upload_is_named_in_its_422(
    db: Database, app_factory: AppFactory, name: str, as_file: bool
) -> None:
    files: dict[str, Any] = {"file": ("catalogue.csv", TEMPLATE.read_bytes(), "text/csv")}
    data: dict[str, str] = {}
    if as_file:
        files[name] = ("extra.csv", str(FORBIDDEN[name]).encode(), "text/csv")
    else:
        data[name] = str(FORBIDDEN[name])
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        before = await row_counts(db)
        response = await api.post(
            "/v1/catalogue/import", files=files, data=data, headers=auth(world.owner_key)
        )
        after = await row_counts(db)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert ["body", name] in [e["loc"] for e in problem["errors"]], problem["errors"]
    assert after == before


async def test_the_catalogue_template_alone_is_accepted(db: Database, app_factory: AppFactory) -> None:
    """The control for the test above: the same upload without the extra field imports."""
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        response = await api.post(
            "/v1/catalogue/import",
            files={"file": ("catalogue.csv", TEMPLATE.read_bytes(), "text/csv")},
            headers=auth(world.owner_key),
        )
    assert response.status_code == 200, response.text
