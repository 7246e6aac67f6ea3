"""Every check is stored (checks, check_matches, check_measures) with its audit row before it is answered;
GET returns it byte for byte to its own client only; round trips stay constant; the catalogue reloads."""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.check_api import repository, service
from services.check_api.catalogue_cache import CatalogueCache, catalogue_cache
from services.check_api.schemas import BatchSubjectIn, SubjectIn
from shared.api.auth import Client
from shared.catalogue import write_catalogue
from shared.codes import pii_hmac
from shared.db.engine import Database
from shared.demo import demo_catalogue
from shared.ids import uuid7
from shared.settings import Settings
from tests.builders import load_demo_subjects
from tests.check_api.conftest import BEIJING, CHEN, CHENGDU, HANGZHOU, SHENZHEN, WANG, Keys, check_request
from tests.conftest import api_client

pytestmark = pytest.mark.usefixtures("catalogue")


async def _post(api: httpx.AsyncClient, item: str, code: str, **extra: Any) -> httpx.Response:
    response = await api.post("/v1/checks", json=check_request(item, code, **extra))
    assert response.status_code == 200, response.text
    return response


async def _row(db: Database, sql: str, *args: Any) -> Any:
    async with db.connection() as conn:
        return await conn.fetchrow(sql, *args)


async def _rows(db: Database, sql: str, *args: Any) -> list[Any]:
    async with db.connection() as conn:
        return list(await conn.fetch(sql, *args))


# --- what is stored ----------------------------------------------------------------------------------------


async def test_a_check_is_stored_with_its_matches_measures_and_audit_row(
    db: Database, api: httpx.AsyncClient
) -> None:
    await load_demo_subjects(db)
    response = await _post(
        api, "I01", BEIJING, related_persons=[{"role": "legal_representative", "code": WANG, "name": "王某"}]
    )
    body = response.json()
    check_id = uuid.UUID(body["check_id"])
    assert check_id.version == 7
    row = await _row(db, "SELECT *, response::text AS text FROM checks WHERE check_id = $1", check_id)
    assert row["text"] == response.text  # the body exactly as answered
    assert row["subject_code"] == BEIJING
    assert row["subject_hmac"] is None
    assert row["item_code"] == "I01"
    assert row["item_department"] == "住房和城乡建设局"
    assert row["department"] == "江门市政务服务数据管理局"
    assert row["operator"] == "clerk-1"
    assert row["business_ref"] == "SP-TEST-1"
    assert row["outcome"] == "penalty"
    assert row["match_count"] == 3
    assert [str(e) for e in row["entry_ids"]] == [m["entry_id"] for m in body["matches"][:2]]
    assert row["measure_codes"] == ["M05", "M11", "M22"]
    assert row["suspended_codes"] == row["withheld_codes"] == []
    assert str(row["lists_version"]) == body["data_version"]["lists"]
    assert str(row["catalogue_version"]) == body["data_version"]["catalogue"]
    assert row["feedback_due_on"].isoformat() == body["feedback_due_on"]
    assert row["check_date"].isoformat() == body["checked_at"][:10]
    assert row["request_hash"]

    matches = await _rows(
        db, "SELECT * FROM check_matches WHERE check_id = $1 ORDER BY via, list_type", check_id
    )
    assert [(m["via"], m["list_type"], m["matched_code"], m["matched_role"]) for m in matches] == [
        ("responsible_person", "LT06", "110105********1239", "legal_representative"),
        ("subject", "LT01", BEIJING, None),
        ("subject", "LT06", BEIJING, None),
    ]
    assert {m["entry_status"] for m in matches} == {"active"}
    measures = await _rows(
        db, "SELECT * FROM check_measures WHERE check_id = $1 ORDER BY measure_code", check_id
    )
    assert [(m["measure_code"], m["disposition"], m["target"], m["list_types"]) for m in measures] == [
        ("M05", "required", "entity", ["LT01", "LT06"]),
        ("M11", "required", "entity", ["LT06"]),
        ("M22", "required", "entity", ["LT01"]),
    ]
    audit = await _row(db, "SELECT * FROM audit_log WHERE object_id = $1", str(check_id))
    assert audit["action"] == "check.create"
    assert audit["operator"] == "clerk-1"
    assert audit["item_code"] == "I01"
    assert audit["subject_masked"] == BEIJING
    assert audit["status"] == 200
    assert audit["detail"]["outcome"] == "penalty"


async def test_suspended_and_withheld_measures_are_stored_with_their_disposition(
    db: Database, api: httpx.AsyncClient
) -> None:
    await load_demo_subjects(db)
    suspended = (await _post(api, "I02", SHENZHEN)).json()
    withheld = (await _post(api, "I10", CHENGDU)).json()
    rows = await _rows(
        db,
        "SELECT check_id, measure_code, disposition, list_types FROM check_measures WHERE check_id = ANY($1::uuid[]) "
        "ORDER BY measure_code",
        [uuid.UUID(suspended["check_id"]), uuid.UUID(withheld["check_id"])],
    )
    assert [(r["measure_code"], r["disposition"], r["list_types"]) for r in rows] == [
        ("M05", "suspended", ["LT03"]),
        ("M07", "required", ["LT02"]),
        ("M10", "required", ["LT02"]),
        ("M22", "suspended", ["LT03"]),
        ("M31", "withheld", ["LT08"]),
    ]
    check = await _row(
        db,
        "SELECT suspended_codes, withheld_codes FROM checks WHERE check_id = $1",
        uuid.UUID(withheld["check_id"]),
    )
    assert check["withheld_codes"] == ["M31"]
    assert check["suspended_codes"] == []


async def test_a_natural_persons_check_is_stored_masked_with_an_hmac(
    db: Database, api: httpx.AsyncClient, test_settings: Settings
) -> None:
    await load_demo_subjects(db)
    body = (await _post(api, "I12", CHEN)).json()
    check_id = uuid.UUID(body["check_id"])
    row = await _row(
        db,
        "SELECT subject_code, subject_hmac, response::text AS text FROM checks WHERE check_id = $1",
        check_id,
    )
    digest = pii_hmac(CHEN, test_settings.pii_hmac_key.get_secret_value().encode())
    assert row["subject_code"] == "310104********2469"
    assert row["subject_hmac"] == digest
    assert CHEN not in row["text"]  # a client without pii:read: stored as answered, masked
    audit = await _row(
        db, "SELECT subject_masked, subject_hmac FROM audit_log WHERE object_id = $1", str(check_id)
    )
    assert (audit["subject_masked"], audit["subject_hmac"]) == ("310104********2469", digest)
    match = await _row(db, "SELECT matched_code FROM check_matches WHERE check_id = $1", check_id)
    assert match["matched_code"] == "310104********2469"


# --- personal data in answers ------------------------------------------------------------------------------


async def test_citizen_ids_and_names_are_masked_without_pii_read(
    db: Database, app: FastAPI, keys: Keys
) -> None:
    await load_demo_subjects(db)
    request = check_request("I12", CHEN, subject={"code": "310104851224246", "name": "陈某某"})
    async with api_client(app, keys.platform) as api:
        masked = (await api.post("/v1/checks", json=request)).json()
    async with api_client(app, keys.pii) as api:
        clear = (await api.post("/v1/checks", json=request)).json()
    assert masked["subject"] == {
        "code": "310104********2469",
        "given_code": "310104*****4246",
        "kind": "citizen_id",
        "given_kind": "citizen_id",
        "name": "陈*",
    }
    (match,) = masked["matches"]
    assert (match["matched_code"], match["subject_code"], match["subject_name"]) == (
        "310104********2469",
        "310104********2469",
        "陈*",
    )
    assert clear["subject"]["code"] == CHEN
    assert clear["subject"]["given_code"] == "310104851224246"
    assert clear["subject"]["name"] == "陈某某"
    assert clear["matches"][0]["subject_name"] == "陈某"
    assert clear["matches"][0]["matched_code"] == CHEN


async def test_related_and_responsible_persons_are_masked_but_organisations_are_not(
    db: Database, api: httpx.AsyncClient
) -> None:
    await load_demo_subjects(db)
    body = (
        await _post(
            api,
            "I12",
            BEIJING,
            related_persons=[
                {"role": "legal_representative", "code": WANG, "name": "王某"},
                {"role": "actual_controller", "code": CHEN, "name": "陈某"},
            ],
        )
    ).json()
    by_via = {m["via"]: m for m in body["matches"] if m["via"] != "subject"}
    assert by_via["related_person"]["matched_code"] == "310104********2469"
    assert by_via["related_person"]["subject_code"] == "310104********2469"
    assert by_via["related_person"]["subject_name"] == "陈*"
    assert by_via["responsible_person"]["matched_code"] == "110105********1239"
    # The entry of a responsible_person match is the organisation's: nothing personal to hide.
    assert by_via["responsible_person"]["subject_code"] == BEIJING
    assert by_via["responsible_person"]["subject_name"] == "北京某建设工程有限公司"
    text = str(body)
    assert CHEN not in text
    assert WANG not in text


async def test_a_client_that_lost_pii_read_reads_its_check_masked(
    db: Database, app: FastAPI, keys: Keys
) -> None:
    await load_demo_subjects(db)
    async with api_client(app, keys.pii) as api:
        body = (await _post(api, "I12", CHEN)).json()
        assert body["subject"]["code"] == CHEN
        async with db.connection() as conn:
            await conn.execute("UPDATE api_clients SET scopes = '{check}' WHERE name = 'platform-pii'")
        read = (await api.get(f"/v1/checks/{body['check_id']}")).json()
    assert read["subject"]["code"] == "310104********2469"
    assert read["matches"][0]["subject_name"] == "陈*"


# --- reading checks ----------------------------------------------------------------------------------------


async def test_get_returns_the_body_exactly_as_answered(db: Database, api: httpx.AsyncClient) -> None:
    await load_demo_subjects(db)
    for item, code in (("I01", BEIJING), ("I12", CHEN), ("I02", SHENZHEN)):
        posted = await _post(api, item, code)
        read = await api.get(f"/v1/checks/{posted.json()['check_id']}")
        assert read.status_code == 200
        assert read.content == posted.content
        assert read.headers["content-type"] == "application/json"


async def test_reading_a_check_is_audited(db: Database, api: httpx.AsyncClient) -> None:
    check_id = (await _post(api, "I07", HANGZHOU)).json()["check_id"]
    await api.get(f"/v1/checks/{check_id}")
    await api.get(f"/v1/checks/{check_id}/report")
    actions = await _rows(db, "SELECT action, path FROM audit_log WHERE object_id = $1 ORDER BY id", check_id)
    assert [(a["action"], a["path"]) for a in actions] == [
        ("check.create", "/v1/checks"),
        ("check.read", "/v1/checks/{check_id}"),
        ("check.report", "/v1/checks/{check_id}/report"),
    ]


@pytest.mark.parametrize("suffix", ["", "/report"])
async def test_another_clients_check_is_404_like_a_missing_one(app: FastAPI, keys: Keys, suffix: str) -> None:
    async with api_client(app, keys.platform) as owner:
        check_id = (await _post(owner, "I07", HANGZHOU)).json()["check_id"]
    async with api_client(app, keys.other) as other:
        answers = [
            await other.get(f"/v1/checks/{check_id}{suffix}"),
            await other.get(f"/v1/checks/{uuid7()}{suffix}"),
            await other.get(f"/v1/checks/{uuid.uuid4()}{suffix}"),
            await other.get(f"/v1/checks/not-a-uuid{suffix}"),
            await other.get(f"/v1/checks/{'f' * 32}{suffix}"),
        ]
    for answer in answers:
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "not_found"
    assert len({a.content for a in answers}) == 1


# --- idempotency -------------------------------------------------------------------------------------------


async def _count_checks(db: Database) -> int:
    async with db.connection() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM checks"))


async def test_an_idempotency_key_replays_the_first_answer(db: Database, api: httpx.AsyncClient) -> None:
    await load_demo_subjects(db)
    headers = {"Idempotency-Key": "check-42"}
    first = await api.post("/v1/checks", json=check_request("I07", BEIJING), headers=headers)
    again = await api.post("/v1/checks", json=check_request("I07", BEIJING), headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert await _count_checks(db) == 1
    other = await api.post("/v1/checks", json=check_request("I07", HANGZHOU), headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert await _count_checks(db) == 1


async def test_a_replay_is_audited_with_the_masked_subject(
    db: Database, api: httpx.AsyncClient, test_settings: Settings
) -> None:
    await load_demo_subjects(db)
    headers = {"Idempotency-Key": "check-replay-audit"}
    first = await api.post("/v1/checks", json=check_request("I12", CHEN), headers=headers)
    again = await api.post("/v1/checks", json=check_request("I12", CHEN), headers=headers)
    assert again.content == first.content
    check_id = first.json()["check_id"]
    rows = await _rows(db, "SELECT * FROM audit_log WHERE object_id = $1 ORDER BY id", check_id)
    assert [(r["action"], r["method"], r["path"], r["status"]) for r in rows] == [
        ("check.create", "POST", "/v1/checks", 200),
        ("check.replay", "POST", "/v1/checks", 200),
    ]
    replay = rows[1]
    digest = pii_hmac(CHEN, test_settings.pii_hmac_key.get_secret_value().encode())
    assert (replay["subject_masked"], replay["subject_hmac"]) == ("310104********2469", digest)
    assert replay["item_code"] == "I12"
    assert replay["operator"] == "clerk-1"
    assert replay["request_id"] == again.headers["x-request-id"]
    assert replay["detail"]["business_ref"] == "SP-TEST-1"
    assert CHEN not in str(dict(replay))
    assert await _count_checks(db) == 1


async def test_a_replay_to_a_client_that_lost_pii_read_is_masked(
    db: Database, app: FastAPI, keys: Keys
) -> None:
    await load_demo_subjects(db)
    headers = {"Idempotency-Key": "pii-replay"}
    request = check_request("I12", CHEN, subject={"code": CHEN, "name": "陈某某"})
    batch = {
        "item_code": "I12",
        "business_ref": "SP-TEST-2",
        "operator": "clerk-1",
        "subjects": [{"code": CHEN, "name": "陈某某"}, {"code": "91110105MA01ABCD5G"}, {"code": HANGZHOU}],
    }
    async with api_client(app, keys.pii) as api:
        first = await api.post("/v1/checks", json=request, headers=headers)
        first_batch = await api.post("/v1/checks/batch", json=batch, headers=headers)
        assert first.json()["subject"]["code"] == CHEN
        assert first_batch.json()["results"][0]["subject"]["code"] == CHEN
        # Still pii:read: the stored answer byte for byte.
        assert (await api.post("/v1/checks", json=request, headers=headers)).content == first.content
        async with db.connection() as conn:
            await conn.execute("UPDATE api_clients SET scopes = '{check}' WHERE name = 'platform-pii'")
        again = await api.post("/v1/checks", json=request, headers=headers)
        again_batch = await api.post("/v1/checks/batch", json=batch, headers=headers)
    assert again.status_code == again_batch.status_code == 200
    assert again.headers["idempotent-replayed"] == again_batch.headers["idempotent-replayed"] == "true"
    for text in (again.text, again_batch.text):
        assert CHEN not in text
        assert "陈某某" not in text
    body = again.json()
    assert body == service.mask_check_body(first.json())
    assert body["subject"]["code"] == "310104********2469"
    assert body["matches"][0]["subject_name"] == "陈*"
    person, problem, organisation = again_batch.json()["results"]
    original = first_batch.json()["results"]
    assert person == service.mask_check_body(original[0])
    assert problem == original[1]
    assert organisation == original[2]
    assert again_batch.json()["batch_id"] == first_batch.json()["batch_id"]
    assert await _count_checks(db) == 3


async def test_a_failed_check_does_not_burn_its_idempotency_key(db: Database, api: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "k"}
    bad = await api.post("/v1/checks", json=check_request("I99", BEIJING), headers=headers)
    assert bad.status_code == 404
    assert (
        await api.post("/v1/checks", json=check_request("I99", BEIJING), headers=headers)
    ).status_code == 404
    assert await _count_checks(db) == 0


# --- round trips and the catalogue cache ------------------------------------------------------------------


class _CountingConnection:
    def __init__(self, conn: Any, statements: list[str]) -> None:
        self._conn = conn
        self._statements = statements

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name not in {"fetch", "fetchrow", "fetchval", "execute", "executemany"}:
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self._statements.append(str(args[0]).split()[0:3].__str__())
            return await attr(*args, **kwargs)

        return counted


class _CountingDatabase:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.statements: list[str] = []

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        async with self.db.connection() as conn:
            yield _CountingConnection(conn, self.statements)


def _context(settings: Settings, path: str = "/v1/checks") -> service.CheckContext:
    client = Client(uuid.uuid4(), "counting", "江门市政务服务数据管理局", frozenset({"check"}), True)
    return service.CheckContext(
        client=client,
        item_code="I01",
        operator="clerk",
        business_ref="ref",
        path=path,
        request_id=None,
        settings=settings,
    )


async def test_a_check_takes_two_round_trips_once_the_catalogue_is_cached(
    db: Database, test_settings: Settings
) -> None:
    await load_demo_subjects(db)
    counting = _CountingDatabase(db)
    cache = CatalogueCache()
    ctx = _context(test_settings)
    subject = SubjectIn(code=BEIJING)
    await service.create_check(counting, cache, ctx, subject=subject, related_persons=[])  # type: ignore[arg-type]
    assert len(counting.statements) == 3  # first use: the catalogue loads
    counting.statements.clear()
    answer = await service.create_check(counting, cache, ctx, subject=subject, related_persons=[])  # type: ignore[arg-type]
    assert len(counting.statements) == 2
    assert answer.body["outcome"] == "penalty"


async def test_a_batch_takes_two_round_trips_whatever_its_size(db: Database, test_settings: Settings) -> None:
    await load_demo_subjects(db)
    counting = _CountingDatabase(db)
    cache = CatalogueCache()
    ctx = _context(test_settings, "/v1/checks/batch")
    async with db.connection() as conn:
        await cache.get(conn)
    subjects = [BatchSubjectIn(code=code) for code in [BEIJING, CHEN, HANGZHOU, SHENZHEN, CHENGDU] * 40]
    answer = await service.create_batch(counting, cache, ctx, subjects=subjects)  # type: ignore[arg-type]
    assert len(counting.statements) == 2
    assert len(answer.body["results"]) == 200
    assert await _count_checks(db) == 200


async def test_a_new_catalogue_version_is_picked_up_without_a_restart(
    db: Database, app: FastAPI, api: httpx.AsyncClient
) -> None:
    await load_demo_subjects(db)
    before = (await _post(api, "I07", BEIJING)).json()
    assert before["measures"][0]["content"] == "依法限制参加政府采购活动"
    data = copy.deepcopy(demo_catalogue())
    next(m for m in data["measures"] if m["code"] == "M01")["content"] = "依法限制参加政府采购活动（修订）"
    async with db.session() as session:
        version = await write_catalogue(session, data, source="test")
        await session.commit()
    after = (await _post(api, "I07", BEIJING)).json()
    assert after["measures"][0]["content"] == "依法限制参加政府采购活动（修订）"
    assert after["data_version"]["catalogue"] == str(version)
    assert int(after["data_version"]["catalogue"]) > int(before["data_version"]["catalogue"])
    cached = catalogue_cache(app).current
    assert cached is not None
    assert cached.version == version


async def test_the_data_version_names_the_catalogue_the_measures_came_from(
    db: Database, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two imports race a check: the match query sees the first, the cache reload reads the second. The answer
    and the stored check name the version the measures came from, not the one the match query saw."""
    await load_demo_subjects(db)
    assert (await _post(api, "I07", BEIJING)).status_code == 200  # the cache holds the demo catalogue

    async def import_revision(content: str) -> int:
        data = copy.deepcopy(demo_catalogue())
        next(m for m in data["measures"] if m["code"] == "M01")["content"] = content
        async with db.session() as session:
            version = await write_catalogue(session, data, source="test")
            await session.commit()
        assert version is not None
        return version

    seen_by_match = await import_revision("依法限制参加政府采购活动（修订一）")
    real_fetch = repository.fetch_matches
    newer: list[int] = []

    async def fetch_then_import(*args: Any, **kwargs: Any) -> Any:
        records = await real_fetch(*args, **kwargs)
        newer.append(await import_revision("依法限制参加政府采购活动（修订二）"))
        return records

    monkeypatch.setattr(repository, "fetch_matches", fetch_then_import)
    body = (await _post(api, "I07", BEIJING)).json()
    (used,) = newer
    assert used > seen_by_match
    assert body["measures"][0]["content"] == "依法限制参加政府采购活动（修订二）"
    assert body["data_version"]["catalogue"] == str(used)
    row = await _row(
        db, "SELECT catalogue_version FROM checks WHERE check_id = $1", uuid.UUID(body["check_id"])
    )
    assert row["catalogue_version"] == used


async def test_an_item_added_since_the_cache_was_filled_is_found(
    db: Database, api: httpx.AsyncClient
) -> None:
    assert (await _post(api, "I07", HANGZHOU)).status_code == 200  # fills the cache
    data = copy.deepcopy(demo_catalogue())
    data["items"].append({**data["items"][0], "code": "I13", "name": "新事项"})
    async with db.session() as session:
        await write_catalogue(session, data, source="test")
        await session.commit()
    body = (await _post(api, "I13", HANGZHOU)).json()
    assert body["item"]["name"] == "新事项"


async def test_the_data_version_follows_list_changes(db: Database, api: httpx.AsyncClient) -> None:
    first = (await _post(api, "I07", HANGZHOU)).json()["data_version"]["lists"]
    await load_demo_subjects(db)
    second = (await _post(api, "I07", HANGZHOU)).json()["data_version"]["lists"]
    assert int(second) > int(first)
