"""GET /v1/stats/enforcement against figures computed by hand.

The data set (today = T, old = T-60 days so its feedback is overdue, new = T-5 days):

    #  dept  item  date  matches            required (list type)      feedback (current)
    1  A     I01   old   LT01               M01, M02 (LT01)           M01 applied, M02 not_applied 已修复
    2  A     I01   old   LT01               M01 (LT01)                -                        awaiting, overdue
    3  A     I02   new   LT05               M05 (LT05)                M05 not_applicable 不涉及
    4  A     I02   new   -                  -                         -
    5  B     I03   old   LT01, LT05         M01 (LT01), M23 (LT05)    M01 applied              awaiting, overdue
    6  B     I03   new   LT05 (objection)   - (M23 suspended)         M23 applied (suspended: not counted)
    7  B     I01   new   LT01               M02 (LT01)                M02 not_applied 已修复
    8  B     I01   new   LT01               M01 (LT01)                M01 not_applied 申请人已履行, then applied
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from shared.db.engine import Database
from shared.lifecycle import SHANGHAI, business_date
from tests.builders import load_catalogue, make_client
from tests.conftest import AppFactory, api_client
from tests.feedback.builders import Match, Measure, make_check

A, B = "江门市住房和城乡建设局", "江门市市场监督管理局"
FIGURES = (
    "checks",
    "checks_with_matches",
    "awaiting_feedback",
    "overdue",
    "required_measures",
    "applied",
    "not_applied",
    "not_applicable",
)


def _fig(*values: int) -> dict[str, int]:
    return dict(zip(FIGURES, values, strict=True))


def _noon(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(12), tzinfo=SHANGHAI)


TODAY = business_date()
OLD, NEW = TODAY - dt.timedelta(days=60), TODAY - dt.timedelta(days=5)


@pytest.fixture
async def stats(db: Database, app_factory: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    app = app_factory(db, "feedback")
    a_id, a_key = await make_client(db, scopes="check,feedback", department=A)
    b_id, b_key = await make_client(db, scopes="check,feedback", department=B)

    async def check(
        client_id: uuid.UUID,
        dept: str,
        item: str,
        day: dt.date,
        matches: list[Match],
        measures: list[Measure],
        suspended: list[Measure] | None = None,
    ) -> uuid.UUID:
        return await make_check(
            db,
            client_id=client_id,
            department=dept,
            item_code=item,
            item_department=dept,
            checked_at=_noon(day),
            matches=matches,
            measures=list(measures),
            suspended=list(suspended or []),
        )

    lt01, lt05 = Match(list_type="LT01"), Match(list_type="LT05")
    objection = Match(list_type="LT05", entry_status="objection_pending")
    c1 = await check(a_id, A, "I01", OLD, [lt01], [Measure("M01"), Measure("M02")])
    await check(a_id, A, "I01", OLD, [lt01], [Measure("M01")])
    c3 = await check(a_id, A, "I02", NEW, [lt05], [Measure("M05")])
    await check(a_id, A, "I02", NEW, [], [])
    c5 = await check(
        b_id,
        B,
        "I03",
        OLD,
        [lt01, lt05],
        [Measure("M01", triggered_by=(lt01.entry_id,)), Measure("M23", triggered_by=(lt05.entry_id,))],
    )
    c6 = await check(b_id, B, "I03", NEW, [objection], [], suspended=[Measure("M23")])
    c7 = await check(b_id, B, "I01", NEW, [lt01], [Measure("M02")])
    c8 = await check(b_id, B, "I01", NEW, [lt01], [Measure("M01")])

    async def report(key: str, check_id: uuid.UUID, *measures: dict[str, Any]) -> None:
        async with api_client(app, key) as api:
            response = await api.post(
                f"/v1/checks/{check_id}/feedback",
                json={"decision": "approved", "measures": list(measures), "operator": "clerk"},
            )
            assert response.status_code == 200, response.text

    await report(
        a_key,
        c1,
        {"code": "M01", "status": "applied"},
        {"code": "M02", "status": "not_applied", "note": "已修复"},
    )
    await report(a_key, c3, {"code": "M05", "status": "not_applicable", "note": "不涉及"})
    await report(b_key, c5, {"code": "M01", "status": "applied"})
    await report(b_key, c6, {"code": "M23", "status": "applied"})
    await report(b_key, c7, {"code": "M02", "status": "not_applied", "note": "已修复"})
    await report(b_key, c8, {"code": "M01", "status": "not_applied", "note": "申请人已履行"})
    await report(b_key, c8, {"code": "M01", "status": "applied"})

    _, key = await make_client(db, scopes="stats:read")
    async with api_client(app, key) as api:
        yield api


async def _get(api: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await api.get("/v1/stats/enforcement", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_all_time(stats: httpx.AsyncClient) -> None:
    body = await _get(stats)
    assert body["totals"] == _fig(8, 7, 2, 2, 8, 3, 2, 1)
    assert body["by_department"] == [
        {"department": A, **_fig(4, 3, 1, 1, 4, 1, 1, 1)},
        {"department": B, **_fig(4, 4, 1, 1, 4, 2, 1, 0)},
    ]
    assert body["by_item"] == [
        {"item_code": "I01", "item_name": None, **_fig(4, 4, 1, 1, 5, 2, 2, 0)},
        {"item_code": "I02", "item_name": None, **_fig(2, 1, 0, 0, 1, 0, 0, 1)},
        {"item_code": "I03", "item_name": None, **_fig(2, 2, 1, 1, 2, 1, 0, 0)},
    ]
    assert body["not_applied_reasons"] == [{"reason": "已修复", "count": 2}]


async def test_date_range(stats: httpx.AsyncClient) -> None:
    body = await _get(stats, **{"from": NEW.isoformat(), "to": TODAY.isoformat()})
    assert body["totals"] == _fig(5, 4, 0, 0, 3, 1, 1, 1)
    assert body["not_applied_reasons"] == [{"reason": "已修复", "count": 1}]
    only_old = await _get(stats, **{"from": OLD.isoformat(), "to": OLD.isoformat()})
    assert only_old["totals"] == _fig(3, 3, 2, 2, 5, 2, 1, 0)
    nothing = await _get(stats, **{"to": (OLD - dt.timedelta(days=1)).isoformat()})
    assert nothing == {
        "totals": _fig(0, 0, 0, 0, 0, 0, 0, 0),
        "by_department": [],
        "by_item": [],
        "not_applied_reasons": [],
    }


async def test_department_and_item_filters(stats: httpx.AsyncClient) -> None:
    assert (await _get(stats, department=B))["totals"] == _fig(4, 4, 1, 1, 4, 2, 1, 0)
    assert (await _get(stats, item_code="I03"))["totals"] == _fig(2, 2, 1, 1, 2, 1, 0, 0)
    both = await _get(stats, department=A, item_code="I01")
    assert both["totals"] == _fig(2, 2, 1, 1, 3, 1, 1, 0)
    assert [d["department"] for d in both["by_department"]] == [A]


async def test_list_type_counts_only_the_measures_it_triggered(stats: httpx.AsyncClient) -> None:
    lt05 = await _get(stats, list_type="LT05")
    assert lt05["totals"] == _fig(3, 3, 1, 1, 2, 0, 0, 1)
    assert lt05["not_applied_reasons"] == []
    assert lt05["by_item"] == [  # most checks first
        {"item_code": "I03", "item_name": None, **_fig(2, 2, 1, 1, 1, 0, 0, 0)},
        {"item_code": "I02", "item_name": None, **_fig(1, 1, 0, 0, 1, 0, 0, 1)},
    ]
    lt01 = await _get(stats, list_type="LT01")
    assert lt01["totals"] == _fig(5, 5, 2, 2, 6, 3, 2, 0)
    assert lt01["not_applied_reasons"] == [{"reason": "已修复", "count": 2}]


async def test_item_names_come_from_the_catalogue(db: Database, stats: httpx.AsyncClient) -> None:
    await load_catalogue(db)
    names = {i["item_code"]: i["item_name"] for i in (await _get(stats))["by_item"]}
    assert names["I01"] == "建筑工程施工许可证核发"


async def test_check_dates_are_shanghai_dates(db: Database, app_factory: AppFactory) -> None:
    client_id, _ = await make_client(db, scopes="check")
    day = dt.date(2026, 5, 10)
    late = dt.datetime.combine(day, dt.time(23, 30), tzinfo=SHANGHAI)  # 15:30 UTC the same day
    early = dt.datetime.combine(
        day + dt.timedelta(days=1), dt.time(0, 10), tzinfo=SHANGHAI
    )  # 16:10 UTC on `day`
    await make_check(db, client_id=client_id, checked_at=late)
    await make_check(db, client_id=client_id, checked_at=early)
    _, key = await make_client(db, scopes="stats:read")
    async with api_client(app_factory(db, "feedback"), key) as api:
        on_day = await _get(api, **{"from": day.isoformat(), "to": day.isoformat()})
        next_day = await _get(api, **{"from": (day + dt.timedelta(days=1)).isoformat()})
    assert on_day["totals"]["checks"] == 1
    assert next_day["totals"]["checks"] == 1


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"from": "2026-13-01"}, 422),
        ({"to": "yesterday"}, 422),
        ({"from": "2026-11-02", "to": "2026-11-01"}, 422),
    ],
)
async def test_bad_dates_are_422(
    db: Database, app_factory: AppFactory, params: dict[str, str], status: int
) -> None:
    _, key = await make_client(db, scopes="stats:read")
    async with api_client(app_factory(db, "feedback"), key) as api:
        response = await api.get("/v1/stats/enforcement", params=params)
    assert response.status_code == status
    assert response.json()["code"] == "validation_error"


async def test_stats_need_the_stats_scope(db: Database, app_factory: AppFactory) -> None:
    _, key = await make_client(db, scopes="check,feedback,lists:read")
    async with api_client(app_factory(db, "feedback"), key) as api:
        assert (await api.get("/v1/stats/enforcement")).status_code == 403
    async with api_client(app_factory(db, "feedback")) as api:
        assert (await api.get("/v1/stats/enforcement")).status_code == 401
