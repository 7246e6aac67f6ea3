"""P2 — audit completeness (查询记录): every request that reads or writes personal data leaves exactly one audit
row, found by the request id the client got back, with its fields filled in; the log refuses UPDATE and DELETE.
"""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from shared.db.engine import Database
from tests.builders import auth, make_client
from tests.conftest import AppFactory, api_client
from tests.reliability.world import (
    ORG_CODE,
    World,
    batch_body,
    build_world,
    check_body,
    citizen_id,
    feedback_body,
)

PERSON = citizen_id("44070319850612123")
CLEAR_ORG = "91440104MA59XK3P20"
N_CLEAR, N_MATCH, N_PERSON = 4, 4, 3
_BAD = "44070319850612124"
MISTYPED = _BAD + ("0" if citizen_id(_BAD)[-1] != "0" else "1")


async def _audit_rows(db: Database) -> list[asyncpg.Record]:
    async with db.connection() as conn:
        return list(await conn.fetch("SELECT * FROM audit_log ORDER BY id"))


def _by_request(rows: list[asyncpg.Record]) -> dict[str, list[asyncpg.Record]]:
    out: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        out.setdefault(row["request_id"], []).append(row)
    return out


async def _post(api: httpx.AsyncClient, url: str, body: object, key: str, status: int) -> httpx.Response:
    response = await api.post(url, json=body, headers=auth(key))
    assert response.status_code == status, (url, response.text[:300])
    return response


async def test_every_check_read_and_feedback_has_exactly_one_complete_audit_row(
    db: Database, app_factory: AppFactory
) -> None:
    async with api_client(app_factory(db)) as api:
        world: World = await build_world(db, api)
        before = len(await _audit_rows(db))
        creates: list[httpx.Response] = []
        for i in range(N_CLEAR):
            creates.append(
                await _post(
                    api,
                    "/v1/checks",
                    check_body(subject={"code": CLEAR_ORG}, business_ref=f"C{i}"),
                    world.owner_key,
                    200,
                )
            )
        for i in range(N_MATCH):
            creates.append(
                await _post(api, "/v1/checks", check_body(business_ref=f"M{i}"), world.owner_key, 200)
            )
        for i in range(N_PERSON):
            body = check_body(subject={"code": PERSON, "name": "李建国"}, business_ref=f"P{i}")
            creates.append(await _post(api, "/v1/checks", body, world.owner_key, 200))
        assert {r.json()["outcome"] for r in creates} >= {"clear", "penalty"}
        # An idempotent replay is a request too: audited, though it stores no check.
        keyed_headers = {**auth(world.owner_key), "Idempotency-Key": "audit-replay-1"}
        keyed = await api.post("/v1/checks", json=check_body(business_ref="K1"), headers=keyed_headers)
        replayed = await api.post("/v1/checks", json=check_body(business_ref="K1"), headers=keyed_headers)
        assert keyed.status_code == replayed.status_code == 200
        assert replayed.headers["idempotent-replayed"] == "true"
        reads = [
            await api.get(f"/v1/checks/{r.json()['check_id']}", headers=auth(world.owner_key))
            for r in creates[:3]
        ]
        reads.append(
            await api.get(f"/v1/checks/{creates[0].json()['check_id']}/report", headers=auth(world.owner_key))
        )
        assert {r.status_code for r in reads} == {200}
        matched = [r.json()["check_id"] for r in creates[N_CLEAR : N_CLEAR + N_MATCH]]
        feedbacks = [
            await _post(api, f"/v1/checks/{check_id}/feedback", feedback_body(), world.owner_key, 200)
            for check_id in matched
        ]
        # Refused feedback is audited too: someone probing another client's check, an unknown measure.
        refused = [
            await _post(api, f"/v1/checks/{matched[0]}/feedback", feedback_body(), world.other_key, 404),
            await _post(
                api,
                f"/v1/checks/{matched[1]}/feedback",
                feedback_body(measures=[{"code": "M99", "status": "applied"}]),
                world.owner_key,
                422,
            ),
        ]

    rows = (await _audit_rows(db))[before:]
    by_request = _by_request(rows)
    expected = {
        **{r.headers["x-request-id"]: ("check.create", 200) for r in creates},
        keyed.headers["x-request-id"]: ("check.create", 200),
        replayed.headers["x-request-id"]: ("check.replay", 200),
        **{r.headers["x-request-id"]: ("check.read", 200) for r in reads[:-1]},
        reads[-1].headers["x-request-id"]: ("check.report", 200),
        **{r.headers["x-request-id"]: ("feedback.submit", 200) for r in feedbacks},
        refused[0].headers["x-request-id"]: ("feedback.submit", 404),
        refused[1].headers["x-request-id"]: ("feedback.submit", 422),
    }
    assert len(rows) == len(expected), [(r["action"], r["status"]) for r in rows]
    assert set(by_request) == set(expected)
    for request_id, (action, status) in expected.items():
        (row,) = by_request[request_id]  # exactly one row per request
        assert (row["action"], row["status"]) == (action, status), request_id
        for column in ("at", "client_id", "department", "method", "path", "object_id", "request_id"):
            assert row[column] is not None, (action, column)
    (replay_row,) = by_request[replayed.headers["x-request-id"]]
    assert replay_row["object_id"] == keyed.json()["check_id"]
    owner_rows = [r for r in rows if r["client_id"] == world.owner_id]
    assert len(owner_rows) == len(rows) - 1  # the probe is recorded under the prober
    for row in rows:
        if row["action"] in ("check.create", "check.replay", "feedback.submit") and row["status"] == 200:
            assert row["operator"], row["action"]
            assert row["item_code"] == "I01"
            assert row["subject_masked"], row["action"]
    persons = [r for r in rows if r["subject_hmac"] is not None]
    assert len(persons) == N_PERSON
    for row in persons:
        assert row["subject_masked"] == PERSON[:6] + "********" + PERSON[-4:]
    assert {
        r["subject_masked"] for r in rows if r["action"] == "check.create" and r["subject_hmac"] is None
    } == {
        CLEAR_ORG,
        ORG_CODE,
    }
    async with db.connection() as conn:
        dumped = "\n".join(str(dict(r)) for r in await conn.fetch("SELECT * FROM audit_log"))
    assert PERSON not in dumped


async def test_a_refused_check_is_audited_too(db: Database, app_factory: AppFactory) -> None:
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        before = len(await _audit_rows(db))
        refused = await _post(
            api, "/v1/checks", check_body(subject={"code": MISTYPED, "name": "李建国"}), world.owner_key, 422
        )
    rows = (await _audit_rows(db))[before:]
    assert [r["request_id"] for r in rows] == [refused.headers["x-request-id"]]
    assert MISTYPED not in str(dict(rows[0]))


AMBIGUOUS = "110105199003072194"  # passes both the USCC and the citizen-ID rules
MASKED_PERSON = PERSON[:6] + "********" + PERSON[-4:]
MASKED_MISTYPED = MISTYPED[:6] + "********" + MISTYPED[-4:]


@pytest.mark.parametrize(
    ("body", "outsider", "status", "code", "masked", "with_hmac"),
    [
        pytest.param(
            check_body(subject={"code": MISTYPED, "name": "李建国"}),
            False,
            422,
            "invalid_subject_code",
            MASKED_MISTYPED,
            False,
            id="mistyped citizen id",
        ),
        pytest.param(
            check_body(
                subject={"code": PERSON, "name": "李建国"},
                related_persons=[{"role": "legal_representative", "code": MISTYPED, "name": "王秀英"}],
            ),
            False,
            422,
            "invalid_subject_code",
            MASKED_PERSON,
            True,
            id="mistyped related person",
        ),
        pytest.param(
            check_body(subject={"code": AMBIGUOUS}),
            False,
            422,
            "ambiguous_subject_code",
            AMBIGUOUS[:6] + "********" + AMBIGUOUS[-4:],
            False,
            id="ambiguous code",
        ),
        pytest.param(
            check_body(item_code="I99", subject={"code": PERSON, "name": "李建国"}),
            False,
            404,
            "unknown_item",
            MASKED_PERSON,
            True,
            id="unknown item",
        ),
        pytest.param(
            check_body(subject={"code": PERSON, "name": "李建国"}),
            True,
            403,
            "forbidden",
            MASKED_PERSON,
            True,
            id="another department's item",
        ),
        pytest.param(check_body(), True, 403, "forbidden", ORG_CODE, False, id="an organisation"),
    ],
)
async def test_every_refused_check_leaves_one_masked_audit_row(
    db: Database,
    app_factory: AppFactory,
    body: dict[str, object],
    outsider: bool,
    status: int,
    code: str,
    masked: str,
    with_hmac: bool,
) -> None:
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        key = world.owner_key
        if outsider:
            _, key = await make_client(db, department="江门市财政局")
        before = len(await _audit_rows(db))
        refused = await api.post("/v1/checks", json=body, headers=auth(key))
    assert refused.status_code == status, refused.text
    assert refused.json()["code"] == code
    rows = (await _audit_rows(db))[before:]
    (row,) = rows
    assert row["request_id"] == refused.headers["x-request-id"]
    assert (row["action"], row["status"], row["method"], row["path"]) == (
        "check.create",
        status,
        "POST",
        "/v1/checks",
    )
    assert row["client_id"] is not None
    assert row["department"]
    assert row["operator"] == "clerk-017"
    assert row["item_code"] == body["item_code"]
    assert row["subject_masked"] == masked
    assert (row["subject_hmac"] is not None) == with_hmac
    assert row["detail"]["code"] == code
    dumped = str(dict(row))
    for secret in (MISTYPED, PERSON, AMBIGUOUS, "李建国", "王秀英"):
        assert secret not in dumped


async def test_a_batch_audits_each_subject_and_a_refused_batch_once(
    db: Database, app_factory: AppFactory
) -> None:
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        before = len(await _audit_rows(db))
        subjects = [{"code": ORG_CODE}, {"code": MISTYPED, "name": "李建国"}, {"code": PERSON}]
        mixed = await _post(api, "/v1/checks/batch", batch_body(subjects=subjects), world.owner_key, 200)
        unknown = await _post(
            api, "/v1/checks/batch", batch_body(item_code="I99", subjects=subjects), world.owner_key, 404
        )
    rows = (await _audit_rows(db))[before:]
    by_request = _by_request(rows)
    assert set(by_request) == {mixed.headers["x-request-id"], unknown.headers["x-request-id"]}
    batch_id = mixed.json()["batch_id"]
    assert sorted(
        (r["status"], r["subject_masked"], r["detail"]["batch_id"])
        for r in by_request[mixed.headers["x-request-id"]]
    ) == sorted([(200, ORG_CODE, batch_id), (422, MASKED_MISTYPED, batch_id), (200, MASKED_PERSON, batch_id)])
    (refused,) = by_request[unknown.headers["x-request-id"]]
    assert (refused["action"], refused["status"], refused["path"]) == (
        "check.create",
        404,
        "/v1/checks/batch",
    )
    assert refused["subject_masked"] is None
    assert refused["detail"] == {"business_ref": "SP-2026-000124", "code": "unknown_item", "subjects": 3}
    dumped = "\n".join(str(dict(r)) for r in rows)
    assert MISTYPED not in dumped
    assert PERSON not in dumped
    assert "李建国" not in dumped


async def test_a_replayed_batch_is_audited_once_per_check_it_shows_again(
    db: Database, app_factory: AppFactory
) -> None:
    """A replayed batch: one `check.replay` row per check in it, masked as stored; a batch whose every subject
    was refused shows no check, and its replay leaves one row for the batch."""
    async with api_client(app_factory(db)) as api:
        world = await build_world(db, api)
        headers = {**auth(world.owner_key), "Idempotency-Key": "audit-batch-replay"}
        subjects = [{"code": ORG_CODE}, {"code": MISTYPED, "name": "李建国"}, {"code": PERSON}]
        refused_only = {**headers, "Idempotency-Key": "audit-batch-replay-refused"}
        await _post_with(api, batch_body(subjects=subjects), headers)
        await _post_with(api, batch_body(subjects=[{"code": MISTYPED}]), refused_only)
        before = len(await _audit_rows(db))
        mixed = await _post_with(api, batch_body(subjects=subjects), headers)
        refused = await _post_with(api, batch_body(subjects=[{"code": MISTYPED}]), refused_only)
    assert mixed.headers["idempotent-replayed"] == refused.headers["idempotent-replayed"] == "true"
    rows = (await _audit_rows(db))[before:]
    by_request = _by_request(rows)
    assert set(by_request) == {mixed.headers["x-request-id"], refused.headers["x-request-id"]}
    checks = {r["check_id"]: r for r in mixed.json()["results"] if "check_id" in r}
    replays = by_request[mixed.headers["x-request-id"]]
    assert sorted((r["object_id"], r["subject_masked"]) for r in replays) == sorted(
        (check_id, ORG_CODE if body["subject"]["kind"] == "uscc" else MASKED_PERSON)
        for check_id, body in checks.items()
    )
    for row in replays:
        assert (row["action"], row["status"], row["method"], row["path"]) == (
            "check.replay",
            200,
            "POST",
            "/v1/checks/batch",
        )
        assert row["detail"]["batch_id"] == mixed.json()["batch_id"]
    (batch_row,) = by_request[refused.headers["x-request-id"]]
    assert (batch_row["action"], batch_row["object_id"], batch_row["subject_masked"]) == (
        "check.replay",
        refused.json()["batch_id"],
        None,
    )
    dumped = "\n".join(str(dict(r)) for r in rows)
    for secret in (MISTYPED, PERSON, "李建国"):
        assert secret not in dumped


async def _post_with(api: httpx.AsyncClient, body: object, headers: dict[str, str]) -> httpx.Response:
    response = await api.post("/v1/checks/batch", json=body, headers=headers)
    assert response.status_code == 200, response.text[:300]
    return response


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET action = 'check.forged'",
        "DELETE FROM audit_log",
        "UPDATE audit_log SET department = NULL WHERE action = 'check.create'",
    ],
)
async def test_the_audit_log_refuses_changes(db: Database, app_factory: AppFactory, statement: str) -> None:
    async with api_client(app_factory(db)) as api:
        await build_world(db, api)  # at least one row, so the statement has something to touch
    assert await _audit_rows(db)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        async with db.connection() as conn:
            await conn.execute(statement)
