"""Idempotency-Key: replay, reuse with another body, in flight, and a race of concurrent replays."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from typing import Any

import pytest
from fastapi import APIRouter, Header
from fastapi.responses import Response
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from shared.api.app import ServiceSpec, create_service_app
from shared.api.auth import CheckClient
from shared.api.deps import DB
from shared.api.idempotency import StoredAnswer, canonical_hash, run_idempotent
from shared.db.engine import Database
from shared.settings import Settings
from tests.builders import auth, make_client
from tests.conftest import api_client

router = APIRouter()


class Thing(BaseModel):
    name: str
    n: int = 0


@router.post("/v1/things", status_code=201)
async def create_thing(
    body: Thing, client: CheckClient, db: DB, idempotency_key: str | None = Header(default=None)
) -> Response:
    async def produce() -> tuple[int, Any]:
        thing_id = uuid.uuid4()
        await asyncio.sleep(0.05)  # a slow first request keeps the race window open
        async with db.connection() as conn:
            await conn.execute(
                "INSERT INTO audit_log (client_id, action, object_id) VALUES ($1, 'thing.create', $2)",
                client.client_id,
                str(thing_id),
            )
        if body.name == "fail":
            return 400, {"detail": "failed"}
        return 201, {"thing_id": str(thing_id), "name": body.name}

    return await run_idempotent(
        db, client, route="POST /v1/things", key=idempotency_key, body=body.model_dump(), produce=produce
    )


REPLAYS: list[StoredAnswer] = []


@router.post("/v1/hooked", status_code=201)
async def create_hooked(
    body: Thing, client: CheckClient, db: DB, idempotency_key: str | None = Header(default=None)
) -> Response:
    """A route with an `on_replay` hook: it sees each replayed answer and sends what the hook returns."""

    async def produce() -> tuple[int, Any]:
        return 201, {"thing_id": str(uuid.uuid4()), "name": body.name}

    async def on_replay(stored: StoredAnswer) -> str:
        REPLAYS.append(stored)
        return stored.body.replace(body.name, body.name.upper())

    return await run_idempotent(
        db,
        client,
        route="POST /v1/hooked",
        key=idempotency_key,
        body=body.model_dump(),
        produce=produce,
        on_replay=on_replay,
    )


def _app(db: Database, settings: Settings) -> Any:
    return create_service_app(
        ServiceSpec(name="t", title="T", description="t", routers=[router]), settings, database=db
    )


def test_canonical_hash_ignores_key_order_and_spacing() -> None:
    assert canonical_hash({"a": 1, "b": [1, 2]}) == canonical_hash({"b": [1, 2], "a": 1})
    assert canonical_hash({"a": 1}) != canonical_hash({"a": 2})


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(_JSON)
def test_canonical_hash_is_the_hash_of_the_stdlib_canonical_text(body: Any) -> None:
    """A hash stored with an Idempotency-Key (24 hours) must not change when the encoder behind it does:
    the orjson fast path gives exactly the stdlib's canonical text (integers past 64 bits fall back)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    assert canonical_hash(body) == hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


async def _things(db: Database) -> int:
    async with db.connection() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'thing.create'"))


async def test_same_key_same_body_replays_the_first_answer(db: Database, test_settings: Settings) -> None:
    _, key = await make_client(db, scopes="check")
    headers = {**auth(key), "Idempotency-Key": "k-1"}
    async with api_client(_app(db, test_settings)) as api:
        first = await api.post("/v1/things", json={"name": "a", "n": 1}, headers=headers)
        second = await api.post("/v1/things", json={"n": 1, "name": "a"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert await _things(db) == 1


async def test_on_replay_gets_the_stored_answer_and_says_what_is_sent(
    db: Database, test_settings: Settings
) -> None:
    REPLAYS.clear()
    _, key = await make_client(db, scopes="check")
    headers = {**auth(key), "Idempotency-Key": "hooked-1"}
    async with api_client(_app(db, test_settings)) as api:
        first = await api.post("/v1/hooked", json={"name": "abc"}, headers=headers)
        assert REPLAYS == []  # not called for the first answer
        second = await api.post("/v1/hooked", json={"name": "abc"}, headers=headers)
        unkeyed = await api.post("/v1/hooked", json={"name": "abc"}, headers=auth(key))
    assert [(r.status, r.body) for r in REPLAYS] == [(201, first.text)]
    assert second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == {**first.json(), "name": "ABC"}
    assert unkeyed.status_code == 201
    assert len(REPLAYS) == 1


async def test_same_key_other_body_is_422(db: Database, test_settings: Settings) -> None:
    _, key = await make_client(db, scopes="check")
    headers = {**auth(key), "Idempotency-Key": "k-2"}
    async with api_client(_app(db, test_settings)) as api:
        await api.post("/v1/things", json={"name": "a"}, headers=headers)
        reused = await api.post("/v1/things", json={"name": "b"}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"


async def test_keys_are_scoped_per_client(db: Database, test_settings: Settings) -> None:
    _, key_a = await make_client(db, scopes="check")
    _, key_b = await make_client(db, scopes="check")
    async with api_client(_app(db, test_settings)) as api:
        a = await api.post(
            "/v1/things", json={"name": "a"}, headers={**auth(key_a), "Idempotency-Key": "same"}
        )
        b = await api.post(
            "/v1/things", json={"name": "b"}, headers={**auth(key_b), "Idempotency-Key": "same"}
        )
    assert a.status_code == b.status_code == 201
    assert a.json()["thing_id"] != b.json()["thing_id"]


async def test_a_failed_first_attempt_releases_the_key(db: Database, test_settings: Settings) -> None:
    _, key = await make_client(db, scopes="check")
    headers = {**auth(key), "Idempotency-Key": "k-3"}
    async with api_client(_app(db, test_settings)) as api:
        failed = await api.post("/v1/things", json={"name": "fail"}, headers=headers)
        assert failed.status_code == 400
        retried = await api.post("/v1/things", json={"name": "fail"}, headers=headers)
    assert retried.status_code == 400
    assert "idempotent-replayed" not in retried.headers


async def test_absurd_key_is_422(db: Database, test_settings: Settings) -> None:
    _, key = await make_client(db, scopes="check")
    async with api_client(_app(db, test_settings)) as api:
        response = await api.post(
            "/v1/things", json={"name": "a"}, headers={**auth(key), "Idempotency-Key": "x" * 201}
        )
    assert response.status_code == 422


@pytest.mark.committing
async def test_concurrent_replays_create_exactly_one_thing(
    committed_db: Database, test_settings: Settings
) -> None:
    _, key = await make_client(committed_db, scopes="check")
    headers = {**auth(key), "Idempotency-Key": "race"}
    async with api_client(_app(committed_db, test_settings)) as api:
        responses = await asyncio.gather(
            *[api.post("/v1/things", json={"name": "r"}, headers=headers) for _ in range(30)]
        )
        # Whoever lost the race while the first was in flight got 409; now every replay is the first answer.
        after = await api.post("/v1/things", json={"name": "r"}, headers=headers)
    statuses = {r.status_code for r in responses}
    assert statuses <= {201, 409}
    bodies = {r.text for r in responses if r.status_code == 201} | {after.text}
    assert len(bodies) == 1
    assert after.status_code == 201
    assert await _things(committed_db) == 1
