"""Which measures a check answers, and how: targets, dedup, objections, withheld incentives, outcome,
clean_record_years and feedback_due_on."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import pytest

from shared.db.engine import Database
from shared.lifecycle import business_date
from shared.settings import Settings
from tests.builders import load_demo_subjects, make_client, make_entry
from tests.check_api.conftest import (
    BEIJING,
    CHEN,
    CHENGDU,
    GUANGZHOU,
    HANGZHOU,
    SHENZHEN,
    check_request,
)
from tests.conftest import AppFactory, api_client

pytestmark = pytest.mark.usefixtures("catalogue")

MEASURE_KEYS = {
    "code",
    "kind",
    "category",
    "content",
    "mandatory",
    "target",
    "legal_basis",
    "memorandum",
    "memorandum_code",
    "nature",
    "implementing_department",
    "basis_level",
}


async def _check(api: httpx.AsyncClient, item: str, code: str, **extra: Any) -> dict[str, Any]:
    response = await api.post("/v1/checks", json=check_request(item, code, **extra))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _codes(items: list[dict[str, Any]]) -> list[str]:
    return [m["code"] for m in items]


async def test_an_organisation_gets_the_entity_measures_a_person_the_natural_person_ones(
    db: Database, api: httpx.AsyncClient
) -> None:
    await load_demo_subjects(db)
    # I08 × LT01: M02 for the entity, M03 for a natural person.
    company = await _check(api, "I08", BEIJING)
    person = await _check(api, "I08", CHEN)
    assert [(m["code"], m["target"]) for m in company["measures"]] == [("M02", "entity")]
    assert [(m["code"], m["target"]) for m in person["measures"]] == [("M03", "natural_person")]


async def test_a_measure_object_carries_the_catalogue_fields(db: Database, api: httpx.AsyncClient) -> None:
    await load_demo_subjects(db)
    body = await _check(api, "I01", BEIJING)
    m22 = next(m for m in body["measures"] if m["code"] == "M22")
    assert set(m22) == MEASURE_KEYS | {"triggered_by"}
    assert m22["kind"] == "penalty"
    assert m22["category"] == "加强监管"
    assert m22["content"] == "列为重点监管对象，提高随机抽查比例和频次"
    assert m22["mandatory"] is True
    assert m22["legal_basis"] == "《关于对失信被执行人实施联合惩戒的合作备忘录》 第十二条"
    assert m22["memorandum"] == "关于对失信被执行人实施联合惩戒的合作备忘录"
    assert m22["memorandum_code"] == "MEMO-SXBZXR"
    assert m22["basis_level"] == "备忘录"


async def test_one_measure_is_listed_once_with_every_triggering_entry(
    db: Database, api: httpx.AsyncClient
) -> None:
    await load_demo_subjects(db)
    body = await _check(api, "I01", BEIJING)
    lt01, lt06 = (m["entry_id"] for m in body["matches"])
    assert _codes(body["measures"]) == ["M05", "M11", "M22"]
    by_code = {m["code"]: m["triggered_by"] for m in body["measures"]}
    assert by_code == {"M05": [lt01, lt06], "M11": [lt06], "M22": [lt01]}


async def test_unmapped_list_types_trigger_nothing_review(db: Database, api: httpx.AsyncClient) -> None:
    await load_demo_subjects(db)
    body = await _check(api, "I02", BEIJING)  # I02 maps neither LT01 nor LT06
    assert len(body["matches"]) == 2
    assert body["measures"] == []
    assert body["outcome"] == "review"
    assert body["feedback_due_on"] is None


async def test_an_entry_under_objection_suspends_its_measures(db: Database, api: httpx.AsyncClient) -> None:
    await load_demo_subjects(db)
    body = await _check(api, "I02", SHENZHEN)
    (match,) = body["matches"]
    assert match["status"] == "objection_pending"
    assert body["measures"] == []
    assert _codes(body["suspended_measures"]) == ["M05", "M22"]
    for suspended in body["suspended_measures"]:
        assert suspended["reason"] == "核实期间暂不执行"
        assert suspended["blocked_by"] == [match["entry_id"]]
        assert set(suspended) >= MEASURE_KEYS
    assert body["outcome"] == "review"
    assert body["feedback_due_on"] is None


async def test_an_active_entry_keeps_a_measure_an_objected_one_would_suspend(
    db: Database, api: httpx.AsyncClient
) -> None:
    active = await make_entry(db, list_type="LT01", decision_no="a")
    pending = await make_entry(db, list_type="LT02", decision_no="p", events=["objection"])
    body = await _check(api, "I07", BEIJING)  # both map to M01
    assert {m["entry_id"] for m in body["matches"]} == {str(active), str(pending)}
    assert [(m["code"], m["triggered_by"]) for m in body["measures"]] == [("M01", [str(active)])]
    assert body["suspended_measures"] == []
    assert body["outcome"] == "penalty"


async def test_an_active_black_entry_withholds_incentives(db: Database, api: httpx.AsyncClient) -> None:
    await load_demo_subjects(db)
    body = await _check(api, "I10", CHENGDU)
    black = next(m["entry_id"] for m in body["matches"] if m["list"]["kind"] == "black")
    red = next(m["entry_id"] for m in body["matches"] if m["list"]["kind"] == "red")
    assert _codes(body["measures"]) == ["M07", "M10"]
    (withheld,) = body["withheld_incentives"]
    assert withheld["code"] == "M31"
    assert withheld["kind"] == "incentive"
    assert withheld["blocked_by"] == [black]
    assert withheld["triggered_by"] == [red]
    assert withheld["reason"]
    assert body["outcome"] == "penalty"


async def test_incentives_only(db: Database, api: httpx.AsyncClient) -> None:
    entry = await make_entry(db, list_type="LT08", code=HANGZHOU)
    body = await _check(api, "I10", HANGZHOU)
    assert [(m["code"], m["kind"], m["triggered_by"]) for m in body["measures"]] == [
        ("M31", "incentive", [str(entry)])
    ]
    assert body["withheld_incentives"] == []
    assert body["outcome"] == "incentive"
    assert body["feedback_due_on"] is not None


async def test_a_watch_list_entry_does_not_withhold_incentives_mixed(
    db: Database, api: httpx.AsyncClient
) -> None:
    await make_entry(db, list_type="LT08", code=HANGZHOU, decision_no="red")
    await make_entry(db, list_type="LT07", code=HANGZHOU, decision_no="watch")
    body = await _check(api, "I02", HANGZHOU)
    assert _codes(body["measures"]) == ["M22", "M28", "M29"]
    assert body["withheld_incentives"] == []
    assert body["outcome"] == "mixed"


async def test_a_black_entry_under_objection_does_not_withhold_incentives(
    db: Database, api: httpx.AsyncClient
) -> None:
    await make_entry(db, list_type="LT08", code=HANGZHOU, decision_no="red")
    await make_entry(db, list_type="LT02", code=HANGZHOU, decision_no="black", events=["objection"])
    body = await _check(api, "I10", HANGZHOU)
    assert _codes(body["measures"]) == ["M31"]
    assert _codes(body["suspended_measures"]) == ["M07", "M10"]
    assert body["withheld_incentives"] == []
    assert body["outcome"] == "incentive"


async def test_a_related_persons_active_black_entry_withholds_the_subjects_incentives(
    db: Database, api: httpx.AsyncClient
) -> None:
    await make_entry(db, list_type="LT08", code=HANGZHOU, decision_no="red")
    person_entry = await make_entry(db, list_type="LT01", code=CHEN, kind="citizen_id", name="陈某")
    body = await _check(
        api, "I10", HANGZHOU, related_persons=[{"role": "legal_representative", "code": CHEN}]
    )
    assert [w["code"] for w in body["withheld_incentives"]] == ["M31"]
    assert body["withheld_incentives"][0]["blocked_by"] == [str(person_entry)]
    # I10 × LT01: M07 and M09 reach responsible persons.
    assert [(m["code"], m["target"]) for m in body["measures"]] == [
        ("M07", "responsible_person"),
        ("M09", "responsible_person"),
    ]


async def test_outcome_clear_without_matches(db: Database, api: httpx.AsyncClient) -> None:
    await load_demo_subjects(db)
    body = await _check(api, "I01", GUANGZHOU)  # its only entry expired
    assert body["matches"] == body["measures"] == []
    assert body["outcome"] == "clear"
    assert body["feedback_due_on"] is None


async def test_feedback_due_on_uses_the_setting(
    db: Database, app_factory: AppFactory, test_settings: Settings
) -> None:
    await load_demo_subjects(db)
    _, key = await make_client(db, scopes="check", any_department=True)
    settings = test_settings.model_copy(update={"feedback_due_days": 10})
    async with api_client(app_factory(db, "check-api", settings), key) as api:
        body = await _check(api, "I07", BEIJING)
    assert body["feedback_due_on"] == (business_date() + dt.timedelta(days=10)).isoformat()


# --- clean_record_years ------------------------------------------------------------------------------------


async def _end(db: Database, entry: uuid.UUID, on: dt.date) -> None:
    async with db.connection() as conn:
        await conn.execute("UPDATE list_entries SET ended_on = $2 WHERE entry_id = $1", entry, on)


def _years_ago(today: dt.date, years: int, days: int = 0) -> dt.date:
    return today.replace(year=today.year - years) - dt.timedelta(days=days)


async def _years(api: httpx.AsyncClient, code: str = BEIJING) -> int:
    years: int = (await _check(api, "I07", code))["clean_record_years"]
    return years


async def test_clean_record_years_is_3_without_any_record(db: Database, api: httpx.AsyncClient) -> None:
    assert await _years(api) == 3


async def test_clean_record_years_is_0_while_a_black_or_watch_entry_is_in_effect(
    db: Database, api: httpx.AsyncClient
) -> None:
    await make_entry(db, list_type="LT07")
    assert await _years(api) == 0


async def test_clean_record_years_counts_an_entry_under_objection_as_in_effect(
    db: Database, api: httpx.AsyncClient
) -> None:
    await make_entry(db, list_type="LT02", events=["objection"])
    assert await _years(api) == 0


async def test_clean_record_years_ignores_red_entries(db: Database, api: httpx.AsyncClient) -> None:
    await make_entry(db, list_type="LT08")
    assert await _years(api) == 3


async def test_clean_record_years_from_the_day_after_expiry(db: Database, api: httpx.AsyncClient) -> None:
    today = business_date()
    # Ended (day after expiry) exactly one year ago today: one whole year.
    end = _years_ago(today, 1)
    await make_entry(
        db, list_type="LT02", listed_on=end - dt.timedelta(days=400), expires_on=end - dt.timedelta(days=1)
    )
    assert await _years(api) == 1


async def test_clean_record_years_a_day_short_of_a_year_is_0(db: Database, api: httpx.AsyncClient) -> None:
    today = business_date()
    end = _years_ago(today, 1) + dt.timedelta(days=1)
    await make_entry(
        db, list_type="LT02", listed_on=end - dt.timedelta(days=400), expires_on=end - dt.timedelta(days=1)
    )
    assert await _years(api) == 0


async def test_clean_record_years_from_the_ending_event(db: Database, api: httpx.AsyncClient) -> None:
    today = business_date()
    entry = await make_entry(
        db, list_type="LT03", listed_on=_years_ago(today, 4), expires_on=None, events=["repair"]
    )
    await _end(db, entry, _years_ago(today, 2, days=3))
    assert await _years(api) == 2


async def test_clean_record_years_uses_the_latest_end(db: Database, api: httpx.AsyncClient) -> None:
    today = business_date()
    old = await make_entry(
        db, list_type="LT03", decision_no="old", listed_on=_years_ago(today, 6), events=["removal"]
    )
    await _end(db, old, _years_ago(today, 5))
    recent = await make_entry(
        db, list_type="LT07", decision_no="recent", listed_on=_years_ago(today, 3), events=["removal"]
    )
    await _end(db, recent, _years_ago(today, 1, days=1))
    assert await _years(api) == 1


async def test_clean_record_years_is_capped_at_3(db: Database, api: httpx.AsyncClient) -> None:
    today = business_date()
    await make_entry(db, list_type="LT02", listed_on=_years_ago(today, 9), expires_on=_years_ago(today, 6))
    assert await _years(api) == 3


async def test_clean_record_years_ignores_entries_ended_by_an_upheld_objection(
    db: Database, api: httpx.AsyncClient
) -> None:
    await make_entry(db, list_type="LT02", events=["objection", "objection_upheld"])
    assert await _years(api) == 3


async def test_clean_record_years_counts_a_removal_today_as_0(db: Database, api: httpx.AsyncClient) -> None:
    await make_entry(db, list_type="LT02", events=["removal"])
    assert await _years(api) == 0


async def test_clean_record_years_ignores_an_entry_that_ended_before_it_took_effect(
    db: Database, api: httpx.AsyncClient
) -> None:
    """A future `listed_on`, removed (or repaired) before that day: the entry never took effect, so it is no
    record at all, not a record ending on the day it was removed."""
    today = business_date()
    await make_entry(db, list_type="LT02", listed_on=today + dt.timedelta(days=30), events=["removal"])
    await make_entry(db, list_type="LT07", listed_on=today + dt.timedelta(days=5), events=["repair"])
    assert await _years(api) == 3


async def test_clean_record_years_ignores_an_entry_ended_on_the_day_it_was_to_take_effect(
    db: Database, api: httpx.AsyncClient
) -> None:
    today = business_date()
    listed = _years_ago(today, 2)
    entry = await make_entry(db, list_type="LT02", listed_on=listed, events=["removal"])
    await _end(db, entry, listed)  # ended the day it was listed: in effect on no day
    assert await _years(api) == 3
    await _end(db, entry, listed + dt.timedelta(days=1))  # in effect for one day: a record, ended then
    assert await _years(api) == 1


async def test_clean_record_years_counts_entries_under_the_org_code(
    db: Database, api: httpx.AsyncClient
) -> None:
    await make_entry(db, list_type="LT07", code="MA01ABCD5", kind="org_code")
    assert await _years(api) == 0


async def test_clean_record_years_only_counts_the_subjects_own_entries(
    db: Database, api: httpx.AsyncClient
) -> None:
    await make_entry(db, list_type="LT01", code=CHEN, kind="citizen_id", name="陈某")
    body = await _check(
        api, "I07", HANGZHOU, related_persons=[{"role": "legal_representative", "code": CHEN}]
    )
    assert len(body["matches"]) == 1
    assert body["clean_record_years"] == 3


async def test_demo_guangzhou_expired_14_months_ago_has_one_clean_year(
    db: Database, api: httpx.AsyncClient
) -> None:
    await load_demo_subjects(db)
    assert await _years(api, GUANGZHOU) == 1
