"""GET /v1/checks/{check_id}/report: the printable 信用核查报告."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from shared.db.engine import Database
from tests.builders import load_demo_subjects, make_entry
from tests.check_api.conftest import BEIJING, CHEN, CHENGDU, HANGZHOU, SHENZHEN, WANG, Keys, check_request
from tests.conftest import api_client

pytestmark = pytest.mark.usefixtures("catalogue")


async def _report(
    api: httpx.AsyncClient, item: str, code: str, **extra: object
) -> tuple[dict[str, object], str]:
    posted = await api.post("/v1/checks", json=check_request(item, code, **extra))
    assert posted.status_code == 200, posted.text
    body = posted.json()
    report = await api.get(f"/v1/checks/{body['check_id']}/report")
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/html")
    return body, report.text


async def test_the_report_holds_the_whole_check(db: Database, api: httpx.AsyncClient) -> None:
    await load_demo_subjects(db)
    body, html = await _report(
        api, "I01", BEIJING, subject={"code": BEIJING, "name": "北京某建设工程有限公司"}
    )
    for text in (
        "信用核查报告",
        '<html lang="zh-CN">',
        "@page { size: A4",
        str(body["check_id"]),
        str(body["checked_at"]),
        "clerk-1",  # operator
        "SP-TEST-1",  # business reference
        "江门市政务服务数据管理局",  # the checking client's department
        "I01 建筑工程施工许可证核发",
        "住房和城乡建设局",
        "北京某建设工程有限公司",
        BEIJING,
        "失信被执行人",
        "有履行能力而拒不履行生效法律文书确定义务",
        "演示〔2026〕LT01号",
        "江门市人民法院",
        "从严审核行政许可申请，不适用告知承诺、容缺受理",
        "国发〔2016〕33号(十)",
        "关于对失信被执行人实施联合惩戒的合作备忘录",
        "适用失信惩戒措施",
        "名单数据 ",
        "措施清单 ",
    ):
        assert text in html, text


async def test_the_report_shows_suspended_measures_with_the_objection_note(
    db: Database, api: httpx.AsyncClient
) -> None:
    await load_demo_subjects(db)
    _, html = await _report(api, "I02", SHENZHEN)
    assert "暂不执行的措施" in html
    assert "核实期间暂不执行" in html
    assert "异议核实中" in html


async def test_the_report_shows_withheld_incentives(db: Database, api: httpx.AsyncClient) -> None:
    await load_demo_subjects(db)
    _, html = await _report(api, "I10", CHENGDU)
    assert "暂不适用的激励措施" in html
    assert "同等条件下优先安排财政资金、项目支持" in html


async def test_the_report_of_a_clear_check(api: httpx.AsyncClient) -> None:
    _, html = await _report(api, "I07", HANGZHOU)
    assert "未发现相关名单记录" in html
    assert "本事项无应实施的措施" in html


async def test_the_report_escapes_everything(db: Database, api: httpx.AsyncClient) -> None:
    await make_entry(db, reason='<script>alert("x")</script>', name="<b>公司</b>", list_type="LT02")
    _, html = await _report(api, "I07", BEIJING, subject={"code": BEIJING, "name": "<img src=x onerror=1>"})
    assert "<script>alert" not in html
    assert "&lt;script&gt;" in html
    assert "<img src=x" not in html
    assert "<b>公司</b>" not in html


@pytest.mark.parametrize("scopes", ["without pii:read", "with pii:read"])
async def test_the_report_always_masks_personal_data(
    db: Database, app: FastAPI, keys: Keys, scopes: str
) -> None:
    """Contract (Personal data): masked in every report; `pii:read` unmasks responses only."""
    await load_demo_subjects(db)
    request = check_request(
        "I12",
        CHEN,
        subject={"code": CHEN, "name": "陈某某"},
        related_persons=[{"role": "legal_representative", "code": WANG, "name": "王某某"}],
    )
    key = keys.pii if scopes == "with pii:read" else keys.platform
    async with api_client(app, key) as api:
        posted = (await api.post("/v1/checks", json=request)).json()
        report = await api.get(f"/v1/checks/{posted['check_id']}/report")
    assert report.status_code == 200
    html = report.text
    # The answer itself is unmasked only for the pii:read client ...
    assert (posted["subject"]["code"] == CHEN) == (scopes == "with pii:read")
    # ... the report never.
    for secret in (CHEN, WANG, "陈某某", "陈某", "王某某"):
        assert secret not in html, secret
    assert "310104********2469" in html
    assert "陈*" in html
    assert "110105********1239" in html  # WANG, named on BEIJING's entry: via responsible_person
    assert "一律按规定脱敏显示" in html
    assert "有权限的核查单位除外" not in html
