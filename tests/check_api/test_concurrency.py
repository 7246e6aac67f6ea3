"""Concurrent replays of one Idempotency-Key over a real pool: one check row, one body."""

from __future__ import annotations

import asyncio

import pytest

from shared.db.engine import Database
from tests.builders import load_catalogue, load_demo_subjects, make_client
from tests.check_api.conftest import BEIJING, check_request
from tests.conftest import AppFactory, api_client


@pytest.mark.committing
async def test_50_concurrent_replays_make_one_check(committed_db: Database, app_factory: AppFactory) -> None:
    await load_catalogue(committed_db)
    await load_demo_subjects(committed_db)
    _, key = await make_client(committed_db, scopes="check", any_department=True)
    app = app_factory(committed_db, "check-api")
    body = check_request("I07", BEIJING)
    async with api_client(app, key) as api:
        answers = await asyncio.gather(
            *(api.post("/v1/checks", json=body, headers={"Idempotency-Key": "race-1"}) for _ in range(50))
        )
        # Once the first has finished, every replay answers its body.
        settled = await api.post("/v1/checks", json=body, headers={"Idempotency-Key": "race-1"})
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 409}
    assert 200 in statuses
    bodies = {a.content for a in answers if a.status_code == 200}
    assert len(bodies) == 1
    assert settled.status_code == 200
    assert settled.content in bodies
    for conflict in (a for a in answers if a.status_code == 409):
        assert conflict.json()["code"] == "conflict"
    async with committed_db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checks") == 1
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'check.create'") == 1


@pytest.mark.committing
async def test_concurrent_checks_without_a_key_are_each_stored(
    committed_db: Database, app_factory: AppFactory
) -> None:
    await load_catalogue(committed_db)
    _, key = await make_client(committed_db, scopes="check", any_department=True)
    app = app_factory(committed_db, "check-api")
    async with api_client(app, key) as api:
        answers = await asyncio.gather(
            *(api.post("/v1/checks", json=check_request("I07", BEIJING)) for _ in range(30))
        )
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["check_id"] for a in answers}) == 30
    async with committed_db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM checks") == 30
