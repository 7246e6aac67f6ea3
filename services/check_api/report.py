"""The printable check report (信用核查报告): Jinja2, autoescaped, A4 print CSS.

Rendered from the stored answer, always masked (`service.mask_check_body`): the contract masks citizen IDs and
natural persons' names in every report, whatever the client's scopes (`pii:read` unmasks responses only). A
printed report travels further than an answer, into paper files.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from typing import Any

import jinja2

OUTCOME_LABELS = {
    "clear": "未发现相关名单记录",
    "review": "存在名单记录，本事项无须实施措施，请人工研判",
    "incentive": "适用守信激励措施",
    "penalty": "适用失信惩戒措施",
    "mixed": "同时适用激励和惩戒措施",
}
LIST_KIND_LABELS = {"red": "红名单", "black": "黑名单", "watch": "重点关注名单"}
VIA_LABELS = {"subject": "核查主体本身", "related_person": "相关人员", "responsible_person": "负有责任的人员"}
ROLE_LABELS = {
    "legal_representative": "法定代表人",
    "responsible_person": "主要负责人",
    "actual_controller": "实际控制人",
    "directly_responsible": "直接责任人",
}
STATUS_LABELS = {"active": "有效", "objection_pending": "异议核实中"}
TARGET_LABELS = {
    "entity": "单位",
    "natural_person": "自然人",
    "responsible_person": "法定代表人/主要负责人/直接责任人",
}
KIND_LABELS = {"incentive": "激励", "penalty": "惩戒"}
SUBJECT_KIND_LABELS = {
    "uscc": "统一社会信用代码",
    "citizen_id": "公民身份号码",
    "org_code": "组织机构代码",
    "registration_no": "工商注册号",
}


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("services.check_api", "templates"),
        # Every value in a report comes from a request or a list entry: escape all of it.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        outcome_labels=OUTCOME_LABELS,
        list_kind_labels=LIST_KIND_LABELS,
        via_labels=VIA_LABELS,
        role_labels=ROLE_LABELS,
        status_labels=STATUS_LABELS,
        target_labels=TARGET_LABELS,
        kind_labels=KIND_LABELS,
        subject_kind_labels=SUBJECT_KIND_LABELS,
    )
    return env


def render_report(check: Mapping[str, Any], *, operator: str, business_ref: str, department: str) -> str:
    """The report of a check body; the caller passes the body masked."""
    template = _environment().get_template("report.html")
    entry_labels = {m["entry_id"]: f"{m['list']['name']}（{m['decision_no']}）" for m in check["matches"]}
    checked_at = dt.datetime.fromisoformat(check["checked_at"])
    return template.render(
        check=check,
        checked_at_display=f"{checked_at:%Y年%m月%d日 %H:%M:%S}（北京时间）",
        entry_labels=entry_labels,
        operator=operator,
        business_ref=business_ref,
        department=department,
    )
