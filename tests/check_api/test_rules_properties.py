"""Properties of `service.evaluate` (the pure rules) over generated matches on the demo catalogue."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.check_api.catalogue_cache import Catalogue
from services.check_api.repository import SubjectRecord
from services.check_api.service import clean_record_years, evaluate, whole_years
from shared.demo import demo_catalogue

CHECK_DATE = dt.date(2026, 11, 23)


def _catalogue() -> Catalogue:
    data = demo_catalogue()
    return Catalogue.from_snapshot(
        {
            "version": 1,
            "items": [
                {k: i.get(k) for k in ("code", "name", "type", "department", "section", "system")}
                for i in data["items"]
            ],
            "list_types": data["list_types"],
            "measures": data["measures"],
            "memoranda": data["memoranda"],
            "mappings": [
                {
                    "item_code": m["item"],
                    "list_type": m["list_type"],
                    "measure_code": mm["measure"],
                    "targets": mm["targets"],
                }
                for m in data["mappings"]
                for mm in m["measures"]
            ],
        }
    )


CATALOGUE = _catalogue()
KINDS = {code: lt["kind"] for code, lt in CATALOGUE.list_types.items()}

LIST_TYPES = sorted(KINDS)


def _match(n: int, via: str) -> dict[str, Any]:
    # One entry has one list type and one status whatever path finds it: both derive from its number.
    list_type = LIST_TYPES[n % len(LIST_TYPES)]
    return {
        "entry_id": f"00000000-0000-0000-0000-{n:012d}",
        "via": via,
        "matched_code": "x",
        "matched_role": None if via == "subject" else "legal_representative",
        "list_type": list_type,
        "list_name": list_type,
        "list_kind": KINDS[list_type],
        "subject_code": "x",
        "subject_kind": "uscc",
        "subject_name": "x",
        "reason": "r",
        "issuing_department": "d",
        "decision_no": "n",
        "listed_on": "2026-01-01",
        "expires_on": None,
        "status": "objection_pending" if (n // len(LIST_TYPES)) % 2 else "active",
    }


matches = st.lists(
    st.builds(
        _match, st.integers(0, 35), st.sampled_from(["subject", "related_person", "responsible_person"])
    ),
    max_size=8,
    unique_by=lambda m: (m["entry_id"], m["via"]),
)


def _record(found: list[dict[str, Any]], kind: str) -> SubjectRecord:
    return SubjectRecord("x", kind, found, False, None, 1, 1)


@given(matches, st.sampled_from(sorted(CATALOGUE.items)), st.sampled_from(["uscc", "citizen_id"]))
def test_every_measure_lands_in_exactly_one_list_by_the_rules(
    found: list[dict[str, Any]], item: str, kind: str
) -> None:
    result = evaluate(
        CATALOGUE, CATALOGUE.items[item], _record(found, kind), check_date=CHECK_DATE, feedback_due_days=30
    )
    by_id = {m["entry_id"]: m for m in found}
    codes = [m["code"] for m in result.measures + result.suspended + result.withheld]
    assert len(codes) == len(set(codes))
    black_active = {m["entry_id"] for m in found if m["list_kind"] == "black" and m["status"] == "active"}
    for measure in result.measures:
        assert all(by_id[e]["status"] == "active" for e in measure["triggered_by"])
        assert not (measure["kind"] == "incentive" and black_active)
    for measure in result.suspended:
        assert measure["reason"] == "核实期间暂不执行"
        assert all(by_id[e]["status"] == "objection_pending" for e in measure["blocked_by"])
    for measure in result.withheld:
        assert measure["kind"] == "incentive"
        assert set(measure["blocked_by"]) == black_active
    for measure in result.measures + result.suspended + result.withheld:
        # The target is one the mapping gives for the triggering entries' list types.
        mapped = {
            t
            for e in measure.get("triggered_by", measure.get("blocked_by", []))
            for mm in CATALOGUE.mappings[item].get(by_id[e]["list_type"], ())
            if e in by_id and mm.measure == measure["code"]
            for t in mm.targets
        }
        assert measure["target"] in mapped or measure in result.withheld
    kinds = {m["kind"] for m in result.measures}
    expected = (
        "clear" if not found else "review" if not kinds else "mixed" if len(kinds) == 2 else kinds.pop()
    )
    assert result.outcome == expected
    assert (result.feedback_due_on is None) == (not result.measures)
    assert len(result.matches) == len(found)


@given(
    st.dates(dt.date(2000, 1, 1), dt.date(2030, 12, 31)), st.dates(dt.date(2000, 1, 1), dt.date(2030, 12, 31))
)
def test_whole_years_is_counted_like_an_age(start: dt.date, end: dt.date) -> None:
    years = whole_years(start, end)
    if end >= start:
        assert years >= 0
        # `years` whole years fit between the two dates, `years + 1` do not.
        assert _add_years(start, years) <= end < _add_years(start, years + 1)


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a common year: the anniversary is 1 March
        return dt.date(day.year + years, 3, 1)


def test_leap_day_ends() -> None:
    assert whole_years(dt.date(2024, 2, 29), dt.date(2025, 2, 28)) == 0
    assert whole_years(dt.date(2024, 2, 29), dt.date(2025, 3, 1)) == 1


@given(st.dates(dt.date(2000, 1, 1), CHECK_DATE), st.booleans())
def test_clean_record_years_is_between_0_and_3(last_end: dt.date, in_effect: bool) -> None:
    record = SubjectRecord("x", "uscc", [], in_effect, last_end, 1, 1)
    years = clean_record_years(record, CHECK_DATE)
    assert 0 <= years <= 3
    assert years == (0 if in_effect else min(3, whole_years(last_end, CHECK_DATE)))
