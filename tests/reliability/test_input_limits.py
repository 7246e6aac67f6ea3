"""S5 — hostile sizes: bodies over the limit, huge arrays, huge strings, deep nesting; and bodies that are not
JSON at all. Each is refused with a 4xx problem, quickly, without a 500 and without the process growing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from shared.db.engine import Database
from shared.settings import Settings
from tests.builders import auth
from tests.conftest import AppFactory, api_client
from tests.reliability.test_route_security import _business_routes, _concrete
from tests.reliability.world import (
    World,
    batch_body,
    build_world,
    check_body,
    entry_body,
    event_body,
    feedback_body,
    source_body,
    subscription_body,
)

LIMIT = 1024 * 1024
BODIES = {
    "/v1/checks": check_body,
    "/v1/checks/batch": batch_body,
    "/v1/checks/{check_id}/feedback": feedback_body,
    "/v1/entries": entry_body,
    "/v1/entries/{entry_id}/events": event_body,
    "/v1/sources": source_body,
    "/v1/subscriptions": subscription_body,
}
REJECT_WITHIN_SECONDS = 0.2


def _post_routes(settings: Settings) -> list[str]:
    return [path for method, path in _business_routes(settings) if method == "POST"]


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_the_limit_is_the_contract_default(test_settings: Settings) -> None:
    assert test_settings.max_body_bytes == LIMIT


async def test_every_post_route_answers_413_one_byte_over_the_limit(
    db: Database, app_factory: AppFactory, test_settings: Settings
) -> None:
    routes = _post_routes(test_settings)
    assert len(routes) >= 10
    body = b"[" + b" " * (LIMIT - 1) + b"]"  # LIMIT + 1 bytes of valid JSON: only the size is wrong
    assert len(body) == LIMIT + 1
    timings: list[float] = []
    rss_before = _rss_bytes()
    async with api_client(app_factory(db)) as api:
        for _ in range(5):
            for path in routes:
                start = time.perf_counter()
                response = await api.post(
                    _concrete(path), content=body, headers={"Content-Type": "application/json"}
                )
                timings.append(time.perf_counter() - start)
                assert response.status_code == 413, (path, response.status_code, response.text[:200])
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["code"] == "payload_too_large"
    timings.sort()
    p99 = timings[int(len(timings) * 0.99) - 1]
    assert p99 < REJECT_WITHIN_SECONDS, f"p99 rejection {p99 * 1000:.1f} ms"
    assert _rss_bytes() - rss_before < 50 * 1024 * 1024


_MULTIPART_HEAD = (
    b"--b0undary\r\n"
    b'Content-Disposition: form-data; name="file"; filename="catalogue.csv"\r\n'
    b"Content-Type: text/csv\r\n\r\n"
)


async def _chunks(total: int, head: bytes = b"", size: int = 64 * 1024) -> AsyncIterator[bytes]:
    yield head
    sent = len(head)
    while sent < total:
        part = min(size, total - sent)
        sent += part
        yield b" " * part


async def test_a_streamed_body_without_content_length_is_cut_at_the_limit(
    db: Database, app_factory: AppFactory, test_settings: Settings
) -> None:
    """No `Content-Length` to trust: the middleware counts what arrives and answers 413 all the same. Sent with
    a valid key to every route that reads a body (the upload route a multipart stream); routes without a body
    (`…/runs`, `…/confirm`, `/v1/outbox/replay`) never read one, so nothing is buffered there either."""
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        for path in [*BODIES, "/v1/catalogue/import"]:
            content_type, head = "application/json", b""
            if path == "/v1/catalogue/import":
                content_type, head = "multipart/form-data; boundary=b0undary", _MULTIPART_HEAD
            response = await api.post(
                _concrete(path),
                content=_chunks(LIMIT + 1, head),
                headers={**auth(world.owner_key), "Content-Type": content_type},
            )
            assert response.status_code == 413, (path, response.status_code, response.text[:200])
            assert response.json()["code"] == "payload_too_large"


async def test_a_batch_of_ten_thousand_subjects_is_a_validation_error(
    db: Database, app_factory: AppFactory
) -> None:
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        subjects = [{"code": "91110105MA01ABCD5F"}] * 10_000
        body = batch_body(subjects=subjects)
        assert len(json.dumps(body)) < LIMIT  # refused for its length, not its size
        start = time.perf_counter()
        response = await api.post("/v1/checks/batch", json=body, headers=auth(world.owner_key))
        elapsed = time.perf_counter() - start
    assert response.status_code == 422, response.text[:300]
    assert response.json()["code"] == "validation_error"
    assert elapsed < 1.0


def _string_leaves(body: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(body, str):
        yield loc
    elif isinstance(body, dict):
        for key, value in body.items():
            yield from _string_leaves(value, (*loc, key))
    elif isinstance(body, list):
        for i, value in enumerate(body):
            yield from _string_leaves(value, (*loc, i))


def _replace(body: Any, loc: tuple[str | int, ...], value: str) -> Any:
    copy = json.loads(json.dumps(body))
    target = copy
    for part in loc[:-1]:
        target = target[part]
    target[loc[-1]] = value
    return copy


@pytest.mark.parametrize("path", sorted(BODIES))
async def test_every_string_field_refuses_a_hundred_thousand_characters(
    db: Database, app_factory: AppFactory, path: str
) -> None:
    async with api_client(app_factory(db)) as api:
        world: World = await build_world(db, api)
        url = path.format(**world.ids())
        body = BODIES[path]()
        if path == "/v1/checks":
            body["related_persons"] = [
                {"role": "legal_representative", "code": "110105199003071239", "name": "王某"}
            ]
        leaves = list(_string_leaves(body))
        assert leaves
        for loc in leaves:
            for filler in ("a" * 100_000, "张" * 100_000):
                response = await api.post(
                    url, json=_replace(body, loc, filler), headers=auth(world.owner_key)
                )
                assert 400 <= response.status_code < 500, (loc, response.status_code, response.text[:200])
                assert response.headers["content-type"] == "application/problem+json"


def _nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("kind", ["array", "object", "inside a field"])
async def test_ten_thousand_levels_of_nesting_are_refused_without_a_crash(
    db: Database, app_factory: AppFactory, test_settings: Settings, kind: str
) -> None:
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        for path in BODIES:
            if kind == "inside a field":
                body = b'{"operator":' + _nested(10_000, "array") + b"}"
            else:
                body = _nested(10_000, kind)
            start = time.perf_counter()
            response = await api.post(
                path.format(**world.ids()),
                content=body,
                headers={**auth(world.owner_key), "Content-Type": "application/json"},
            )
            elapsed = time.perf_counter() - start
            assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:200])
            assert response.headers["content-type"] == "application/problem+json"
            assert "Recursion" not in response.text
            assert elapsed < 1.0
        # Still serving afterwards.
        assert (await api.get("/healthz")).status_code == 200


@pytest.mark.parametrize("path", sorted(BODIES))
@pytest.mark.parametrize(
    "body",
    [b'{"item_code": "\xff\xfe"}', b"[" * 10_000 + b"]" * 10_000],
    ids=["invalid UTF-8", "10k levels"],
)
async def test_an_undecodable_body_is_a_422_like_any_malformed_json(
    db: Database, app_factory: AppFactory, body: bytes, path: str
) -> None:
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        response = await api.post(
            path.format(**world.ids()),
            content=body,
            headers={**auth(world.owner_key), "Content-Type": "application/json"},
        )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert [e["loc"] for e in problem["errors"]] == [["body"]], problem


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"--b0undary\r\n"),
        ("multipart/form-data; boundary=b0undary", b"--b0undary\r\nContent-Disposition: form-data\r\n\r\nx"),
    ],
    ids=["no boundary", "no part name"],
)
async def test_a_malformed_multipart_upload_is_a_422(
    db: Database, app_factory: AppFactory, content_type: str, body: bytes
) -> None:
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        response = await api.post(
            "/v1/catalogue/import",
            content=body,
            headers={**auth(world.owner_key), "Content-Type": content_type},
        )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"


async def test_truncated_json_is_already_a_422(db: Database, app_factory: AppFactory) -> None:
    """The control for the test above: JSON the decoder can read but not finish is answered as the contract says."""
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        response = await api.post(
            "/v1/checks",
            content=b'{"item_code": "I01", "subject": {',
            headers={**auth(world.owner_key), "Content-Type": "application/json"},
        )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
