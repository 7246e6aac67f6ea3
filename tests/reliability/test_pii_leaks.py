"""P1 — personal data never leaks: a realistic flow with logging at DEBUG, every log line captured, every
answer to a client without `pii:read` scanned (JSON, problems and the HTML report).

The synthetic citizen ids carry valid check characters and the names are real-looking full names, so that a
leak would match. Pass figure: 0 hits. A client with `pii:read` sees them in its answers (the control that
shows the scan can see them at all); the logs still hold none.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog

from shared.codes import citizen_id_check_char
from shared.db.engine import Database
from shared.logging import configure_logging
from shared.models.access import SCOPES
from shared.settings import Settings
from tests.builders import auth, load_catalogue, make_client
from tests.conftest import AppFactory, api_client
from tests.reliability.world import OWNER_DEPARTMENT, citizen_id

# Natural persons of the flow: an entry's own subject, a person named on a company's entry, a related person
# without an entry, and a person checked alone.
LI = ("李建国", citizen_id("44070319850612123"))
OUYANG = ("欧阳振华", citizen_id("11010519760304241"))
WANG = ("王秀英", citizen_id("31010419920815302"))
ZHAO = ("赵丽娟", citizen_id("44030520000229017"))
PERSONS = (LI, OUYANG, WANG, ZHAO)
# A mistyped id (wrong check character): still somebody's number, so it must not be echoed either.
_BAD_FIRST17 = "44070319850612124"
MISTYPED = _BAD_FIRST17 + ("0" if citizen_id_check_char(_BAD_FIRST17) != "0" else "1")
COMPANY = ("91440104MA59XK3P20", "广州某贸易有限公司")

ID_SHAPED = re.compile(r"(?<![0-9A-Za-z])(\d{17}[0-9Xx]|\d{15})(?![0-9A-Za-z])")
CHECKING_ITEM = "I11"  # LT01 → M11/M12 for entity, natural_person and responsible_person


def leaks(text: str) -> list[str]:
    """Every unmasked personal id or full name of the flow in `text`."""
    found = [name for name, _ in PERSONS if name in text]
    found += [code for _, code in PERSONS if code in text]
    found += [MISTYPED] if MISTYPED in text else []
    found += [m for m in ID_SHAPED.findall(text) if m not in found]
    return found


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """The project's own logging set-up at DEBUG, writing to a buffer; restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_structlog = structlog.get_config()
    stream = io.StringIO()
    configure_logging("DEBUG", json=True)
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_structlog)


class Recorder:
    """Keeps every answer a client got, to scan them all at the end."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, httpx.Response]] = []

    def keep(self, what: str, response: httpx.Response) -> httpx.Response:
        self.answers.append((what, response))
        return response


def _check(subject: tuple[str, str], **extra: Any) -> dict[str, Any]:
    """A check of (name, code) for the flow's item."""
    name, code = subject
    return {
        "item_code": CHECKING_ITEM,
        "subject": {"code": code, "name": name},
        "business_ref": "SP-2026-PII",
        "operator": "clerk-017",
        **extra,
    }


async def _flow(api: httpx.AsyncClient, court: str, checker: str, outsider: str, rec: Recorder) -> None:
    # Entries: a natural person's own, and a company's naming a legal representative.
    person_entry = rec.keep(
        "publish person entry",
        await api.post(
            "/v1/entries",
            json={
                "list_type": "LT01",
                "subject": {"code": LI[1], "name": LI[0], "kind": "citizen_id"},
                "reason": "有履行能力而拒不履行生效法律文书确定义务",
                "decision_no": "（2026）粤0703执9号",
                "listed_on": "2026-01-05",
            },
            headers=auth(court),
        ),
    )
    assert person_entry.status_code == 201, person_entry.text
    company_entry = rec.keep(
        "publish company entry",
        await api.post(
            "/v1/entries",
            json={
                "list_type": "LT01",
                "subject": {"code": COMPANY[0], "name": COMPANY[1], "kind": "uscc"},
                "linked_persons": [{"role": "legal_representative", "code": OUYANG[1], "name": OUYANG[0]}],
                "reason": "拒不履行",
                "decision_no": "（2026）粤0703执10号",
                "listed_on": "2026-01-05",
            },
            headers=auth(court),
        ),
    )
    assert company_entry.status_code == 201, company_entry.text
    entry_ids = [person_entry.json()["entry_id"], company_entry.json()["entry_id"]]

    # Checks: the person's own entry, a responsible person, a company with a related person, a clear person.
    check_ids = []
    checks: list[tuple[tuple[str, str], dict[str, Any]]] = [
        (LI, {}),
        (OUYANG, {}),
        (
            (COMPANY[1], COMPANY[0]),
            {"related_persons": [{"role": "actual_controller", "code": WANG[1], "name": WANG[0]}]},
        ),
        (ZHAO, {}),
    ]
    for subject, extra in checks:
        answer = rec.keep(
            "check", await api.post("/v1/checks", json=_check(subject, **extra), headers=auth(checker))
        )
        assert answer.status_code == 200, answer.text
        check_ids.append(answer.json()["check_id"])
    outcomes = [rec.answers[-4 + i][1].json()["outcome"] for i in range(4)]
    assert outcomes[0] != "clear", outcomes
    assert outcomes[1] != "clear", outcomes
    assert outcomes[3] == "clear", outcomes
    batch = rec.keep(
        "batch",
        await api.post(
            "/v1/checks/batch",
            json={
                "item_code": CHECKING_ITEM,
                "business_ref": "SP-2026-PII-B",
                "operator": "clerk-017",
                "subjects": [
                    {"code": LI[1], "name": LI[0]},
                    {"code": MISTYPED, "name": ZHAO[0]},
                    {
                        "code": COMPANY[0],
                        "related_persons": [
                            {"role": "legal_representative", "code": OUYANG[1], "name": OUYANG[0]}
                        ],
                    },
                ],
            },
            headers=auth(checker),
        ),
    )
    assert batch.status_code == 200, batch.text

    # Errors that carry personal data in the request.
    for what, body, status in [
        ("mistyped id", _check((ZHAO[0], MISTYPED)), 422),
        (
            "mistyped related person",
            _check(LI, related_persons=[{"role": "legal_representative", "code": MISTYPED, "name": WANG[0]}]),
            422,
        ),
        ("unknown item", {**_check(LI), "item_code": "I99"}, 404),
        ("unknown field", {**_check(LI), "note": f"{LI[0]} {LI[1]}"}, 422),
        ("name too long", _check((LI[0] * 300, LI[1])), 422),
    ]:
        refused = rec.keep(what, await api.post("/v1/checks", json=body, headers=auth(checker)))
        assert refused.status_code == status, (what, refused.text)
    forbidden = rec.keep(
        "other department", await api.post("/v1/checks", json=_check(LI), headers=auth(outsider))
    )
    assert forbidden.status_code == 403, forbidden.text
    probe = rec.keep("id in the path", await api.get(f"/v1/checks/{LI[1]}", headers=auth(checker)))
    assert probe.status_code == 404

    # Reading back, the report, feedback, enforcement, entries, an event, a subscription.
    for check_id in check_ids:
        for suffix in ("", "/report", "/feedback"):
            read = rec.keep(
                f"read{suffix}", await api.get(f"/v1/checks/{check_id}{suffix}", headers=auth(checker))
            )
            assert read.status_code == 200, read.text
    for check_id, answer in zip(check_ids, [a for w, a in rec.answers if w == "check"], strict=True):
        measures = answer.json()["measures"]
        if not measures:
            continue
        fed = rec.keep(
            "feedback",
            await api.post(
                f"/v1/checks/{check_id}/feedback",
                json={
                    "decision": "rejected",
                    "measures": [
                        {"code": m["code"], "status": "not_applied", "note": "申请人已履行"} for m in measures
                    ],
                    "operator": "clerk-017",
                },
                headers=auth(checker),
            ),
        )
        assert fed.status_code == 200, fed.text
    for entry_id in entry_ids:
        for url in (f"/v1/entries/{entry_id}", f"/v1/entries/{entry_id}/enforcement"):
            read = rec.keep(url, await api.get(url, headers=auth(court)))
            assert read.status_code == 200, read.text
    event = rec.keep(
        "objection",
        await api.post(
            f"/v1/entries/{entry_ids[0]}/events",
            json={"type": "objection", "basis": "本人提出异议", "operator": "judge-3"},
            headers=auth(court),
        ),
    )
    assert event.status_code == 200, event.text
    subscribed = rec.keep(
        "subscription",
        await api.post(
            "/v1/subscriptions",
            json={"callback_url": "https://hooks.example/x", "subject_codes": [LI[1], COMPANY[0]]},
            headers=auth(court),
        ),
    )
    assert subscribed.status_code == 201, subscribed.text
    rec.keep("subscriptions", await api.get("/v1/subscriptions", headers=auth(court)))


async def test_no_personal_data_in_logs_or_in_answers_without_pii_read(
    db: Database, app_factory: AppFactory, test_settings: Settings, captured_logs: io.StringIO
) -> None:
    await load_catalogue(db)
    without_pii = [s for s in SCOPES if s != "pii:read"]
    _, court = await make_client(db, scopes=without_pii, department=OWNER_DEPARTMENT)
    _, checker = await make_client(
        db, scopes=without_pii, department="江门市人力资源和社会保障局", any_department=True
    )
    _, outsider = await make_client(db, scopes=without_pii, department="江门市财政局")
    settings = test_settings.model_copy(update={"access_log": True, "log_level": "DEBUG"})
    recorder = Recorder()
    async with api_client(app_factory(db, settings=settings)) as api:
        await _flow(api, court, checker, outsider, recorder)

    assert len(recorder.answers) >= 30
    assert any("text/html" in r.headers["content-type"] for _, r in recorder.answers)
    hits = {what: leaks(r.text) for what, r in recorder.answers if leaks(r.text)}
    assert hits == {}
    # The masked forms are there: the scan looked at the right answers.
    texts = "\n".join(r.text for _, r in recorder.answers)
    assert LI[1][:6] + "********" + LI[1][-4:] in texts
    assert "李*" in texts
    assert "欧阳*" in texts

    logs = captured_logs.getvalue()
    assert logs.count('"event": "request"') >= len(recorder.answers), "the access log was not captured"
    assert leaks(logs) == []


async def test_a_pii_read_client_sees_them_and_the_logs_still_do_not(
    db: Database, app_factory: AppFactory, test_settings: Settings, captured_logs: io.StringIO
) -> None:
    await load_catalogue(db)
    _, court = await make_client(db, department=OWNER_DEPARTMENT)
    _, checker = await make_client(db, department="江门市人力资源和社会保障局", any_department=True)
    _, outsider = await make_client(db, department="江门市财政局")
    settings = test_settings.model_copy(update={"access_log": True, "log_level": "DEBUG"})
    recorder = Recorder()
    async with api_client(app_factory(db, settings=settings)) as api:
        await _flow(api, court, checker, outsider, recorder)

    shown = set()
    for _, response in recorder.answers:
        shown.update(leaks(response.text))
    assert {LI[0], LI[1], OUYANG[0], OUYANG[1], ZHAO[0], ZHAO[1]} <= shown
    logs = captured_logs.getvalue()
    assert logs.count('"event": "request"') >= len(recorder.answers)
    assert leaks(logs) == []
