"""Sync metrics on /metrics: runs by source and final status, records by outcome, last successful run."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from prometheus_client import REGISTRY

from services.list_sync.metrics import OUTCOMES
from services.list_sync.runs import registry_of
from shared.db.engine import Database
from shared.settings import Settings
from tests.builders import make_client
from tests.conftest import AppFactory, api_client
from tests.list_sync.helpers import BASE, add_source, by_cursor, envelope, page, record, run


def runs(source: str, status: str) -> float:
    return REGISTRY.get_sample_value("onecheck_sync_runs_total", {"source": source, "status": status}) or 0.0


def records(source: str) -> dict[str, float]:
    return {
        outcome: REGISTRY.get_sample_value(
            "onecheck_sync_records_total", {"source": source, "outcome": outcome}
        )
        or 0.0
        for outcome in OUTCOMES
    }


def last_success(source: str) -> float | None:
    return REGISTRY.get_sample_value("onecheck_sync_last_success_timestamp_seconds", {"source": source})


def ended(source: str) -> float:
    return REGISTRY.get_sample_value("onecheck_sync_entries_ended_total", {"source": source}) or 0.0


@pytest.fixture
def source() -> str:
    """A name of its own per test: the metrics are process-wide."""
    return f"m-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def app(db: Database, app_factory: AppFactory, sync_settings: Settings) -> FastAPI:
    return app_factory(db, "list-sync", settings=sync_settings)


@pytest.fixture
async def admin(db: Database, app: FastAPI, catalogue: None) -> AsyncIterator[httpx.AsyncClient]:
    _, key = await make_client(db, scopes="sync:admin")
    async with api_client(app, key) as client:
        yield client


async def test_a_run_counts_its_status_records_and_success_time(
    db: Database, catalogue: None, sync_settings: Settings, app: FastAPI, source: str
) -> None:
    await add_source(db, source)
    first = [record("A-1"), record("A-2"), record("A-3", status="removed")]
    again = [record("A-1"), record("A-2", reason="改"), record("A-1"), record("A-4", subject={"code": "x"})]
    before = time.time()
    for entries in (first, again):
        with respx.mock(base_url=BASE) as mock:
            mock.get("/entries").mock(return_value=page(envelope(entries)))
            assert (await run(db, sync_settings, source))["status"] == "succeeded"
    assert runs(source, "succeeded") == 2
    assert runs(source, "failed") == 0
    assert records(source) == {
        "inserted": 3,
        "updated": 1,
        "unchanged": 1,
        "duplicates": 1,
        "stale": 0,
        "quarantined": 1,
    }
    success = last_success(source)
    assert success is not None
    assert before - 1 <= success <= time.time() + 1
    async with api_client(app) as anonymous:
        text = (await anonymous.get("/metrics")).text
    assert f'onecheck_sync_runs_total{{source="{source}",status="succeeded"}} 2.0' in text
    assert f'onecheck_sync_records_total{{outcome="inserted",source="{source}"}} 3.0' in text
    assert f'onecheck_sync_last_success_timestamp_seconds{{source="{source}"}}' in text


async def test_a_failed_run_counts_as_failed_and_keeps_the_last_success(
    db: Database, catalogue: None, sync_settings: Settings, source: str
) -> None:
    await add_source(db, source)
    serve = by_cursor(
        {None: page(envelope([record("B-1")], next_cursor="c2", has_more=True)), "c2": page(b"", status=503)}
    )
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(side_effect=serve)
        view = await run(db, sync_settings, source)
    assert view["status"] == "failed"
    assert runs(source, "failed") == 1
    assert runs(source, "succeeded") == 0
    assert records(source)["inserted"] == 1  # the committed first page of a feed stays, and counts
    assert last_success(source) is None


async def _start(app: FastAPI, admin: httpx.AsyncClient, source: str, entries: list[Any]) -> dict[str, Any]:
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(return_value=page(envelope(entries)))
        started = (await admin.post(f"/v1/sources/{source}/runs")).json()
        await registry_of(app.state).wait(started["run_id"])
    view: dict[str, Any] = (await admin.get(f"/v1/runs/{started['run_id']}")).json()
    return view


async def test_held_runs_count_when_held_and_again_when_confirmed_or_discarded(
    db: Database, app: FastAPI, admin: httpx.AsyncClient, source: str
) -> None:
    await add_source(db, source, "snapshot")
    listing = [record(f"H-{i}") for i in range(5)]
    assert (await _start(app, admin, source, listing))["status"] == "succeeded"
    held = await _start(app, admin, source, listing[:1])  # would end 4 of 5
    assert held["status"] == "held"
    assert (runs(source, "succeeded"), runs(source, "held")) == (1, 1)
    assert records(source)["unchanged"] == 0  # a held run changed nothing, so it counts no records yet
    taken = await admin.post(f"/v1/runs/{held['run_id']}/confirm")
    assert (taken.status_code, taken.json()["status"]) == (202, "running")
    await registry_of(app.state).wait(held["run_id"])
    assert (await admin.get(f"/v1/runs/{held['run_id']}")).json()["status"] == "succeeded"
    assert runs(source, "succeeded") == 2  # counted once, when the background apply ended
    assert (records(source)["inserted"], records(source)["unchanged"], ended(source)) == (5, 1, 4)
    held_again = await _start(app, admin, source, [])  # would end the last one
    assert held_again["status"] == "held"
    assert (await admin.post(f"/v1/runs/{held_again['run_id']}/discard")).json()["status"] == "discarded"
    assert (runs(source, "held"), runs(source, "discarded"), runs(source, "succeeded")) == (2, 1, 2)
    assert ended(source) == 4
