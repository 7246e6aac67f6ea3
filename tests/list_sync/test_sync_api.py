"""The sync admin API: sources, runs (in the background), quarantine, confirm / discard, abandoned runs."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI

from services.list_sync.runs import RunRegistry, registry_of
from shared.codes import citizen_id_check_char
from shared.db.engine import Database
from shared.settings import Settings
from tests.builders import make_client
from tests.conftest import AppFactory, api_client
from tests.list_sync.helpers import BASE, add_source, assert_conserved, envelope, fetch, page, record

RUN_KEYS = {"run_id", "source", "status", "started_at", "finished_at", "counts", "error"}
COUNT_KEYS = {
    "received",
    "inserted",
    "updated",
    "unchanged",
    "duplicates",
    "stale",
    "quarantined",
    "ended",
    "unmapped_legacy",
}


@pytest.fixture
def app(db: Database, app_factory: AppFactory, sync_settings: Settings) -> FastAPI:
    return app_factory(db, "list-sync", settings=sync_settings)


@pytest.fixture
async def admin(db: Database, app: FastAPI, catalogue: None) -> AsyncIterator[httpx.AsyncClient]:
    _, key = await make_client(db, scopes="sync:admin")
    async with api_client(app, key) as client:
        yield client


def registry(app: FastAPI) -> RunRegistry:
    return registry_of(app.state)


async def test_sources_are_created_and_listed_without_their_token(admin: httpx.AsyncClient) -> None:
    response = await admin.post(
        "/v1/sources",
        json={
            "name": "court",
            "kind": "feed",
            "base_url": BASE + "/",
            "token": "s3cret",
            "interval_seconds": 3600,
        },
    )
    assert response.status_code == 201, response.text
    source = response.json()
    assert source == {
        "name": "court",
        "kind": "feed",
        "base_url": BASE,
        "path": None,
        "has_token": True,
        "interval_seconds": 3600,
        "cursor": None,
        "enabled": True,
        "created_at": source["created_at"],
    }
    listed = await admin.get("/v1/sources")
    assert listed.json() == {"sources": [source]}
    assert "s3cret" not in response.text + listed.text
    again = await admin.post("/v1/sources", json={"name": "court", "kind": "snapshot", "base_url": BASE})
    assert again.status_code == 409


@pytest.mark.parametrize(
    "body",
    [
        {"name": "a", "kind": "feed"},
        {"name": "a", "kind": "feed", "base_url": "http://169.254.169.254/latest"},
        {"name": "a", "kind": "feed", "base_url": "http://2852039166/latest"},
        {"name": "a", "kind": "feed", "base_url": "http://0xa9fea9fe/latest"},
        {"name": "a", "kind": "feed", "base_url": "http://[::ffff:169.254.169.254]/latest"},
        {"name": "a", "kind": "feed", "base_url": "http://metadata.google.internal./computeMetadata"},
        {"name": "a", "kind": "feed", "base_url": "file:///etc/passwd"},
        {"name": "a", "kind": "feed", "base_url": BASE, "path": "x.csv"},
        {"name": "a", "kind": "file"},
        {"name": "a", "kind": "file", "path": "../outside.csv"},
        {"name": "a", "kind": "file", "path": "/etc/passwd"},
        {"name": "a", "kind": "file", "path": "lists/../../x.csv"},
        {"name": "a", "kind": "file", "path": "x.csv", "token": "t"},
        {"name": "a b", "kind": "feed", "base_url": BASE},
        {"name": "a", "kind": "ftp", "base_url": BASE},
        {"name": "a", "kind": "feed", "base_url": BASE, "interval_seconds": 5},
        {"name": "a", "kind": "feed", "base_url": BASE, "cursor": "x"},
    ],
)
async def test_invalid_sources_answer_422(admin: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await admin.post("/v1/sources", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"


async def test_a_file_source_inside_the_import_dir(admin: httpx.AsyncClient) -> None:
    response = await admin.post(
        "/v1/sources", json={"name": "files", "kind": "file", "path": "lists/court.csv"}
    )
    assert response.status_code == 201
    assert response.json()["path"] == "lists/court.csv"
    assert response.json()["has_token"] is False


async def test_sync_admin_scope_is_needed(db: Database, app: FastAPI) -> None:
    _, key = await make_client(db, scopes="lists:read,lists:write")
    async with api_client(app, key) as api:
        assert (await api.get("/v1/sources")).status_code == 403
        assert (await api.post("/v1/sources/x/runs")).status_code == 403
        assert (await api.get(f"/v1/runs/{uuid.uuid4()}")).status_code == 403
        assert (await api.get(f"/v1/quarantine?run_id={uuid.uuid4()}")).status_code == 403


async def test_a_run_started_through_the_api(db: Database, app: FastAPI, admin: httpx.AsyncClient) -> None:
    await add_source(db, "court")
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        mock.get("/entries").mock(
            return_value=page(envelope([record("A-1"), record("A-2", list_type="LT99")]))
        )
        started = await admin.post("/v1/sources/court/runs")
        assert started.status_code == 202, started.text
        run = started.json()
        assert set(run) == RUN_KEYS
        assert run["status"] == "running"
        assert run["source"] == "court"
        await registry(app).wait(run["run_id"])
    done = await admin.get(f"/v1/runs/{run['run_id']}")
    assert done.status_code == 200
    view = done.json()
    assert set(view) == RUN_KEYS
    assert set(view["counts"]) == COUNT_KEYS
    assert view["status"] == "succeeded"
    assert_conserved(view["counts"])
    assert (view["counts"]["inserted"], view["counts"]["quarantined"]) == (1, 1)
    quarantine = await admin.get(f"/v1/quarantine?run_id={run['run_id']}")
    assert quarantine.status_code == 200
    [item] = quarantine.json()["records"]
    assert set(item) == {"run_id", "line", "raw", "reason", "rule"}
    assert (item["run_id"], item["line"], item["rule"]) == (run["run_id"], 2, "list_type.unknown")
    runs = await admin.get("/v1/runs?source=court")
    assert [r["run_id"] for r in runs.json()["runs"]] == [run["run_id"]]


async def test_run_errors(db: Database, admin: httpx.AsyncClient) -> None:
    assert (await admin.post("/v1/sources/nope/runs")).status_code == 404
    for path in (f"/v1/runs/{uuid.uuid4()}", "/v1/runs/xyz", f"/v1/quarantine?run_id={uuid.uuid4()}"):
        assert (await admin.get(path)).status_code == 404
    assert (await admin.get("/v1/quarantine")).status_code == 422
    for action in ("confirm", "discard"):
        assert (await admin.post(f"/v1/runs/{uuid.uuid4()}/{action}")).status_code == 404


async def _open_run(db: Database, source: str, status: str, worker: str = "gone:1") -> uuid.UUID:
    run_id = uuid.uuid4()
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO sync_runs (run_id, source, status, worker) VALUES ($1, $2, $3, $4)",
            run_id,
            source,
            status,
            worker,
        )
    return run_id


async def test_a_held_run_blocks_new_runs_until_discarded(db: Database, admin: httpx.AsyncClient) -> None:
    await add_source(db, "tax", "snapshot")
    held = await _open_run(db, "tax", "held")
    conflict = await admin.post("/v1/sources/tax/runs")
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "conflict"
    assert (await admin.post(f"/v1/runs/{held}/discard")).json()["status"] == "discarded"
    assert (await admin.post(f"/v1/runs/{held}/discard")).status_code == 409
    assert (await admin.post(f"/v1/runs/{held}/confirm")).status_code == 409


async def test_confirm_answers_202_and_applies_the_held_run_in_the_background(
    db: Database, app: FastAPI, admin: httpx.AsyncClient
) -> None:
    await add_source(db, "tax", "snapshot")
    listing = [record(f"H-{i}") for i in range(5)]
    run_ids = []
    for entries in (listing, listing[:1]):  # the second would end 4 of 5: held
        with respx.mock(base_url=BASE) as mock:
            mock.get("/entries").mock(return_value=page(envelope(entries)))
            started = (await admin.post("/v1/sources/tax/runs")).json()
            await registry(app).wait(started["run_id"])
        run_ids.append(started["run_id"])
    held = run_ids[1]
    assert (await admin.get(f"/v1/runs/{held}")).json()["status"] == "held"
    response = await admin.post(f"/v1/runs/{held}/confirm")
    assert response.status_code == 202, response.text
    taken = response.json()
    assert set(taken) == RUN_KEYS
    assert (taken["run_id"], taken["status"], taken["finished_at"]) == (held, "running", None)
    assert sum(taken["counts"].values()) == 0  # recomputed by the apply
    await registry(app).wait(held)
    view = (await admin.get(f"/v1/runs/{held}")).json()
    assert view["status"] == "succeeded"
    assert view["finished_at"] is not None
    assert (view["counts"]["unchanged"], view["counts"]["ended"]) == (1, 4)
    assert_conserved(view["counts"])
    again = await admin.post(f"/v1/runs/{held}/confirm")
    assert again.status_code == 409
    assert again.json()["detail"] == "the run is succeeded, not held"
    ended = await fetch(
        db, "SELECT count(*) FROM list_entries WHERE source_name = 'tax' AND status = 'ended'"
    )
    assert ended == [(4,)]


async def test_a_run_whose_process_died_is_failed_when_found(db: Database, admin: httpx.AsyncClient) -> None:
    await add_source(db, "court")
    dead = await _open_run(db, "court", "running", worker="host-b:4242")
    view = (await admin.get(f"/v1/runs/{dead}")).json()
    assert view["status"] == "failed"
    assert view["error"] == "RunAbandoned: the process running it (host-b:4242) stopped"
    assert view["finished_at"] is not None


async def test_a_new_run_fails_the_abandoned_one(
    db: Database, app: FastAPI, admin: httpx.AsyncClient
) -> None:
    await add_source(db, "court")
    dead = await _open_run(db, "court", "running")
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        mock.get("/entries").mock(return_value=page(envelope([])))
        started = await admin.post("/v1/sources/court/runs")
        assert started.status_code == 202
        await registry(app).wait(started.json()["run_id"])
    [old] = await fetch(db, "SELECT status FROM sync_runs WHERE run_id = $1", dead)
    assert old["status"] == "failed"


async def test_quarantined_raw_records_are_masked_without_pii_read(
    db: Database, app: FastAPI, admin: httpx.AsyncClient
) -> None:
    from tests.list_sync.helpers import citizen_id

    await add_source(db, "court")
    person = {"code": citizen_id(5), "name": "王小明", "kind": "citizen_id"}
    bad = record(
        "P-1",
        subject=person,
        list_type="LT99",
        linked_persons=[{"role": "legal_representative", "code": citizen_id(6), "name": "赵六"}],
    )
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        mock.get("/entries").mock(return_value=page(envelope([bad])))
        run = (await admin.post("/v1/sources/court/runs")).json()
        await registry(app).wait(run["run_id"])
    masked = await admin.get(f"/v1/quarantine?run_id={run['run_id']}")
    raw = masked.json()["records"][0]["raw"]
    assert raw["subject"]["code"] == citizen_id(5)[:6] + "********" + citizen_id(5)[-4:]
    assert raw["subject"]["name"] == "王*"
    assert raw["linked_persons"][0]["name"] == "赵*"
    assert citizen_id(6) not in masked.text
    assert "王小明" not in masked.text
    _, key = await make_client(db, scopes="sync:admin,pii:read")
    async with api_client(app, key) as api:
        clear = await api.get(f"/v1/quarantine?run_id={run['run_id']}")
    assert clear.json()["records"][0]["raw"]["subject"]["code"] == citizen_id(5)


async def test_quarantine_reasons_are_masked_without_pii_read(
    db: Database, app: FastAPI, admin: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Code rules quote what they found: a citizen id's birth date must not reach a client without pii:read
    (its `raw` is masked too), nor any log."""

    def with_check(first17: str) -> str:
        return first17 + citizen_id_check_char(first17)

    bad_date = with_check("44070319801301123")  # 13th month
    future = with_check("44070320990101123")
    legacy = "440703801301123"
    await add_source(db, "court")
    person = {"role": "legal_representative", "name": "赵六"}
    records = [
        record("Q-1", subject={"code": bad_date, "name": "王小明", "kind": "citizen_id"}, list_type="LT06"),
        record("Q-2", subject={"code": future, "name": "王小明", "kind": "citizen_id"}, list_type="LT06"),
        record("Q-3", linked_persons=[{**person, "code": legacy}]),
        record("Q-4", linked_persons=[{**person, "code": bad_date}]),
    ]
    secrets_ = ("19801301", "801301", "20990101", "2099-01-01", bad_date, future, legacy)
    caplog.set_level(logging.DEBUG)
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        mock.get("/entries").mock(return_value=page(envelope(records)))
        run = (await admin.post("/v1/sources/court/runs")).json()
        await registry(app).wait(run["run_id"])
    masked = await admin.get(f"/v1/quarantine?run_id={run['run_id']}")
    reasons = [r["reason"] for r in masked.json()["records"]]
    assert [r["rule"] for r in masked.json()["records"]] == [
        "citizen_id.birth_date",
        "citizen_id.future_birth_date",
        "citizen_id.birth_date",
        "citizen_id.birth_date",
    ]
    assert reasons[0] == "subject.code: birth date '********' (positions 7-14) is not a real date"
    assert reasons[1].startswith("subject.code: birth date ****-**-** is after today")
    for secret in secrets_:
        assert secret not in masked.text
        assert secret not in caplog.text
    _, key = await make_client(db, scopes="sync:admin,pii:read")
    async with api_client(app, key) as api:
        clear = await api.get(f"/v1/quarantine?run_id={run['run_id']}")
    assert clear.json()["records"][0]["reason"] == (
        "subject.code: birth date '19801301' (positions 7-14) is not a real date"
    )
    assert "2099-01-01" in clear.json()["records"][1]["reason"]
    for secret in secrets_:
        assert secret not in caplog.text  # pii:read shows them in the response only


async def test_idempotent_run_start(db: Database, app: FastAPI, admin: httpx.AsyncClient) -> None:
    await add_source(db, "court")
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        mock.get("/entries").mock(return_value=page(envelope([record("I-1")])))
        first = await admin.post("/v1/sources/court/runs", headers={"Idempotency-Key": "run-1"})
        await registry(app).wait_all()
        again = await admin.post("/v1/sources/court/runs", headers={"Idempotency-Key": "run-1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["run_id"] == again.json()["run_id"]
    rows = await fetch(db, "SELECT count(*) FROM sync_runs")
    assert rows[0][0] == 1
