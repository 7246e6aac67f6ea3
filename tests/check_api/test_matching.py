"""Which entries a check matches: codes, aliases, org codes, the check date, the three `via` paths."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from services.check_api import service
from shared.codes import normalise, uscc_check_char
from shared.db.engine import Database
from shared.lifecycle import business_date
from tests.builders import load_demo_subjects, make_entry
from tests.check_api.conftest import (
    BEIJING,
    BEIJING_ORG,
    CHEN,
    CHEN_15,
    HANGZHOU,
    OTHER_PERSON,
    SHANGHAI,
    SHANGHAI_REG,
    WANG,
    check_request,
)

pytestmark = pytest.mark.usefixtures("catalogue")


async def _check(api: httpx.AsyncClient, item: str, code: str, **extra: Any) -> dict[str, Any]:
    response = await api.post("/v1/checks", json=check_request(item, code, **extra))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _matched(body: dict[str, Any]) -> list[tuple[str, str, str | None, str]]:
    return [(m["via"], m["list"]["code"], m["matched_role"], m["status"]) for m in body["matches"]]


# --- codes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        BEIJING,
        BEIJING.lower(),
        f"  {BEIJING}\t",
        # Full-width characters (NFKC)
        "".join(chr(ord(c) + 0xFEE0) for c in BEIJING),
    ],
)
async def test_a_code_is_normalised_before_matching(db: Database, api: httpx.AsyncClient, given: str) -> None:
    await load_demo_subjects(db)
    body = await _check(api, "I07", given)
    assert body["subject"]["code"] == BEIJING
    assert body["subject"]["given_code"] == given
    assert body["subject"]["kind"] == "uscc"
    assert [m["list"]["code"] for m in body["matches"]] == ["LT01", "LT06"]
    assert body["outcome"] == "penalty"


async def test_kind_is_detected_and_a_given_kind_is_honoured(db: Database, api: httpx.AsyncClient) -> None:
    await load_demo_subjects(db)
    detected = await _check(api, "I12", CHEN)
    assert detected["subject"]["kind"] == "citizen_id"
    given = await api.post(
        "/v1/checks", json=check_request("I12", CHEN, subject={"code": CHEN, "kind": "uscc"})
    )
    # The same digits are not a valid USCC: the given kind decides which rules apply.
    assert given.status_code == 422
    assert given.json()["code"] == "invalid_subject_code"
    assert given.json()["errors"][0]["rule"].startswith("uscc.")


async def test_a_legacy_15_digit_citizen_id_matches_the_18_digit_entry(
    db: Database, api: httpx.AsyncClient
) -> None:
    await load_demo_subjects(db)
    body = await _check(api, "I12", CHEN_15)
    assert body["subject"]["code"].startswith("310104")  # masked, but 18 characters
    assert len(body["subject"]["code"]) == 18
    assert _matched(body) == [("subject", "LT01", None, "active")]
    assert [m["code"] for m in body["measures"]] == ["M20"]


async def test_a_registration_number_is_mapped_to_its_uscc(db: Database, api: httpx.AsyncClient) -> None:
    await load_demo_subjects(db)
    body = await _check(api, "I02", SHANGHAI_REG)
    assert body["subject"]["code"] == SHANGHAI
    assert body["subject"]["kind"] == "uscc"
    assert body["subject"]["given_kind"] == "registration_no"
    assert body["subject"]["given_code"] == SHANGHAI_REG
    assert _matched(body) == [("subject", "LT07", None, "active")]
    assert body["matches"][0]["matched_code"] == SHANGHAI
    assert [m["code"] for m in body["measures"]] == ["M22"]


async def test_an_unmapped_registration_number_is_checked_as_given(
    db: Database, api: httpx.AsyncClient
) -> None:
    code = "110108000000016"  # GS 15 example, no alias known
    await make_entry(db, list_type="LT07", code=code, kind="registration_no")
    body = await _check(api, "I02", code)
    assert body["subject"]["code"] == code
    assert body["subject"]["kind"] == "registration_no"
    assert _matched(body) == [("subject", "LT07", None, "active")]


async def test_a_uscc_matches_entries_recorded_under_its_org_code(
    db: Database, api: httpx.AsyncClient
) -> None:
    entry = await make_entry(db, list_type="LT02", code="MA01ABCD-5", kind="org_code")
    body = await _check(api, "I07", BEIJING)
    assert [m["entry_id"] for m in body["matches"]] == [str(entry)]
    assert body["matches"][0]["matched_code"] == BEIJING_ORG
    assert body["matches"][0]["subject_code"] == BEIJING_ORG
    assert [m["code"] for m in body["measures"]] == ["M01"]


# Another subject's USCC embedding the same organisation code as BEIJING (another registration category):
# valid, but a different subject.
SAME_ORG_OTHER_USCC = "92110105MA01ABCD5" + uscc_check_char("92110105MA01ABCD5")


async def test_a_uscc_does_not_match_another_usccs_entries_embedding_the_same_org_code(
    db: Database, api: httpx.AsyncClient
) -> None:
    """Contract: a USCC also matches entries recorded under its embedded org code, i.e. under the org code
    itself; an entry recorded under another USCC is that subject's, whatever it embeds."""
    assert normalise(SAME_ORG_OTHER_USCC).org_code == BEIJING_ORG
    await make_entry(db, list_type="LT02", code=SAME_ORG_OTHER_USCC)
    body = await _check(api, "I07", BEIJING)
    assert body["matches"] == []
    assert body["outcome"] == "clear"
    assert body["clean_record_years"] == 3  # not the other subject's record either
    other = await _check(api, "I07", SAME_ORG_OTHER_USCC)
    assert _matched(other) == [("subject", "LT02", None, "active")]


async def test_an_unmapped_org_code_is_checked_as_given(db: Database, api: httpx.AsyncClient) -> None:
    """Without an alias the org code is not known to be any USCC's: only entries under the org code match."""
    await make_entry(db, list_type="LT02", code=BEIJING)
    own = await make_entry(db, list_type="LT07", code="MA01ABCD-5", kind="org_code")
    body = await _check(api, "I07", "ma01abcd-5")
    assert body["subject"]["kind"] == "org_code"
    assert body["subject"]["code"] == BEIJING_ORG
    assert [m["entry_id"] for m in body["matches"]] == [str(own)]
    assert body["matches"][0]["matched_code"] == BEIJING_ORG
    assert body["clean_record_years"] == 0  # its own watch-list entry; the USCC's entry is not counted


async def test_a_mapped_org_code_is_checked_as_its_uscc(db: Database, api: httpx.AsyncClient) -> None:
    uscc_entry = await make_entry(db, list_type="LT02", code=BEIJING)
    org_entry = await make_entry(db, list_type="LT04", code="MA01ABCD-5", kind="org_code")
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO subject_aliases (alias_code, alias_kind, uscc) VALUES ($1, 'org_code', $2)",
            BEIJING_ORG,
            BEIJING,
        )
    body = await _check(api, "I07", "MA01ABCD-5")
    assert (body["subject"]["code"], body["subject"]["kind"]) == (BEIJING, "uscc")
    assert body["subject"]["given_kind"] == "org_code"
    assert {(m["entry_id"], m["matched_code"]) for m in body["matches"]} == {
        (str(uscc_entry), BEIJING),
        (str(org_entry), BEIJING_ORG),
    }


async def test_a_uscc_matches_entries_kept_under_a_legacy_code_mapped_later(
    db: Database, api: httpx.AsyncClient
) -> None:
    code = "110108000000016"
    entry = await make_entry(db, list_type="LT02", code=code, kind="registration_no")
    async with db.connection() as conn:  # the alias arrives after the entry was stored
        await conn.execute(
            "INSERT INTO subject_aliases (alias_code, alias_kind, uscc) VALUES ($1, 'registration_no', $2)",
            code,
            HANGZHOU,
        )
    body = await _check(api, "I07", HANGZHOU)
    assert [m["entry_id"] for m in body["matches"]] == [str(entry)]
    assert body["matches"][0]["matched_code"] == code


async def test_codes_of_other_subjects_do_not_match(db: Database, api: httpx.AsyncClient) -> None:
    await load_demo_subjects(db)
    body = await _check(api, "I07", HANGZHOU)
    assert body["matches"] == []
    assert body["outcome"] == "clear"


# --- the check date ----------------------------------------------------------------------------------------


async def test_only_entries_in_effect_on_the_check_date_match(db: Database, api: httpx.AsyncClient) -> None:
    today = business_date()
    day = dt.timedelta(days=1)
    in_effect = {
        await make_entry(db, decision_no="listed today", listed_on=today, expires_on=today + 10 * day),
        await make_entry(db, decision_no="expires today", listed_on=today - 10 * day, expires_on=today),
        await make_entry(db, decision_no="open-ended", listed_on=today - 10 * day, expires_on=None),
        await make_entry(db, decision_no="under objection", events=["objection"]),
    }
    # Not in effect: future, expired yesterday, or ended by an event (stored status 'ended').
    await make_entry(db, decision_no="future", listed_on=today + day, expires_on=today + 10 * day)
    await make_entry(db, decision_no="expired", listed_on=today - 10 * day, expires_on=today - day)
    await make_entry(db, decision_no="removed", events=["removal"])
    await make_entry(db, decision_no="repaired", events=["repair"])
    await make_entry(db, decision_no="upheld", events=["objection", "objection_upheld"])
    body = await _check(api, "I07", BEIJING)
    assert {m["entry_id"] for m in body["matches"]} == {str(e) for e in in_effect}
    statuses = {m["decision_no"]: m["status"] for m in body["matches"]}
    assert statuses["under objection"] == "objection_pending"
    assert statuses["listed today"] == "active"


async def test_an_active_entry_past_its_expiry_does_not_match(db: Database, api: httpx.AsyncClient) -> None:
    today = business_date()
    # Stored status still 'active' (no expiry job has run): it reads ended/expired and must not match.
    await make_entry(db, listed_on=today - dt.timedelta(days=800), expires_on=today - dt.timedelta(days=70))
    body = await _check(api, "I07", BEIJING)
    assert body["matches"] == []


async def test_the_check_date_is_the_date_in_asia_shanghai(
    db: Database, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 17:30 UTC on 1 March is 01:30 on 2 March in Shanghai: the check date is 2 March.
    at = dt.datetime(2026, 3, 1, 17, 30, tzinfo=dt.UTC)
    monkeypatch.setattr(service, "now_ms", lambda: at)
    ended = await make_entry(
        db, decision_no="ends 1 March", listed_on=dt.date(2026, 1, 1), expires_on=dt.date(2026, 3, 1)
    )
    starts = await make_entry(
        db, decision_no="starts 2 March", listed_on=dt.date(2026, 3, 2), expires_on=None
    )
    body = await _check(api, "I07", BEIJING)
    assert [m["entry_id"] for m in body["matches"]] == [str(starts)]
    assert str(ended) not in body["measures"][0]["triggered_by"]
    assert body["checked_at"] == "2026-03-02T01:30:00.000+08:00"
    assert body["feedback_due_on"] == "2026-04-01"  # 2 March + 30 days


# --- via -------------------------------------------------------------------------------------------------


async def test_via_related_person(db: Database, api: httpx.AsyncClient) -> None:
    await load_demo_subjects(db)
    body = await _check(
        api,
        "I12",
        HANGZHOU,
        related_persons=[{"role": "legal_representative", "code": CHEN, "name": "陈某"}],
    )
    assert _matched(body) == [("related_person", "LT01", "legal_representative", "active")]
    match = body["matches"][0]
    assert match["matched_code"] == "310104********2469"
    # I12 × LT01 maps M20 to natural_person and responsible_person: a related person's match triggers the latter.
    assert [(m["code"], m["target"]) for m in body["measures"]] == [("M20", "responsible_person")]
    # I07 × LT01 maps M01 to the entity only: the legal representative's entry triggers nothing there.
    only_entity = await _check(
        api, "I07", HANGZHOU, related_persons=[{"role": "legal_representative", "code": CHEN}]
    )
    assert len(only_entity["matches"]) == 1
    assert only_entity["measures"] == []
    assert only_entity["outcome"] == "review"


async def test_via_responsible_person_for_a_natural_person_subject(
    db: Database, api: httpx.AsyncClient
) -> None:
    await load_demo_subjects(db)
    body = await _check(api, "I01", WANG)
    # 王某 is named on 北京某建设's LT06 entry as its legal representative.
    assert _matched(body) == [("responsible_person", "LT06", "legal_representative", "active")]
    match = body["matches"][0]
    assert match["subject_code"] == BEIJING
    assert match["subject_name"] == "北京某建设工程有限公司"
    assert [(m["code"], m["target"]) for m in body["measures"]] == [
        ("M05", "responsible_person"),
        ("M11", "responsible_person"),
    ]
    assert body["outcome"] == "penalty"


async def test_via_responsible_person_for_a_related_person(db: Database, api: httpx.AsyncClient) -> None:
    await load_demo_subjects(db)
    # A new company whose proposed legal representative was responsible for a listed one (I06-style).
    body = await _check(
        api, "I10", HANGZHOU, related_persons=[{"role": "actual_controller", "code": WANG, "name": "王某"}]
    )
    # The role is the one on the entry, where 王某 is named.
    assert _matched(body) == [("responsible_person", "LT06", "legal_representative", "active")]
    assert body["matches"][0]["matched_code"] == "110105********1239"
    assert [(m["code"], m["target"]) for m in body["measures"]] == [
        ("M08", "responsible_person"),
        ("M10", "responsible_person"),
    ]


async def test_a_subject_and_its_named_legal_representative_both_match(
    db: Database, api: httpx.AsyncClient
) -> None:
    await load_demo_subjects(db)
    body = await _check(
        api, "I01", BEIJING, related_persons=[{"role": "legal_representative", "code": WANG, "name": "王某"}]
    )
    assert _matched(body) == [
        ("subject", "LT01", None, "active"),
        ("subject", "LT06", None, "active"),
        ("responsible_person", "LT06", "legal_representative", "active"),
    ]
    measures = {m["code"]: m for m in body["measures"]}
    assert set(measures) == {"M05", "M11", "M22"}
    # The entity target wins over the person one; each entry listed once.
    assert measures["M11"]["target"] == "entity"
    assert len(measures["M11"]["triggered_by"]) == 1
    assert len(measures["M05"]["triggered_by"]) == 2


async def test_a_natural_person_named_on_another_natural_persons_entry_is_not_responsible(
    db: Database, api: httpx.AsyncClient
) -> None:
    # `responsible_person` is about organisations' entries only.
    await make_entry(
        db,
        code=CHEN,
        kind="citizen_id",
        name="陈某",
        linked_persons=[{"role": "directly_responsible", "code": OTHER_PERSON, "name": "赵某"}],
    )
    body = await _check(api, "I12", OTHER_PERSON)
    assert body["matches"] == []


async def test_a_person_given_twice_is_matched_once(db: Database, api: httpx.AsyncClient) -> None:
    await load_demo_subjects(db)
    body = await _check(
        api,
        "I12",
        HANGZHOU,
        related_persons=[
            {"role": "legal_representative", "code": CHEN},
            {"role": "actual_controller", "code": CHEN_15},
        ],
    )
    assert _matched(body) == [("related_person", "LT01", "legal_representative", "active")]
