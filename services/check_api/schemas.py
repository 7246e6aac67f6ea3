"""Request and response models of the check-api (pydantic only at the edges).

Requests are validated by these models (unknown fields: 422). Answers are built as plain dicts by the service
and sent as they are; the response models below document them in OpenAPI.
Subject codes are plain strings here on purpose: the service validates them, so that a bad code answers
`invalid_subject_code` with the failed rule rather than a generic `validation_error`.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field
from shared.api.text import NulFree

SubjectKindName = Literal["uscc", "citizen_id", "org_code", "registration_no"]
Role = Literal["legal_representative", "responsible_person", "actual_controller", "directly_responsible"]
MAX_BATCH = 1000
# PostgreSQL text cannot hold NUL: refused here (422) rather than failing at the insert.
Text = NulFree


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RelatedPersonIn(_In):
    role: Role = Field(
        description="The person's role for the subject (法定代表人, 主要负责人, 实际控制人, 直接责任人)."
    )
    code: str = Field(
        max_length=64, description="Citizen ID (公民身份号码), 18 digits or the 15-digit legacy form."
    )
    name: Text | None = Field(default=None, max_length=200, description="The person's name (optional).")


class SubjectIn(_In):
    code: str = Field(
        max_length=64,
        description="USCC, citizen ID, organisation code or registration number; normalised (NFKC, spaces, "
        "case, an org code's hyphen) before it is validated.",
    )
    name: Text | None = Field(
        default=None, max_length=500, description="The subject's name as the business knows it."
    )
    kind: SubjectKindName | None = Field(
        default=None, description="The code's kind; omitted, it is detected (an ambiguous code answers 422)."
    )


class CheckIn(_In):
    item_code: Text = Field(
        min_length=1, max_length=64, description="The item (权责事项) being decided, e.g. `I07`."
    )
    subject: SubjectIn = Field(
        description="The subject (信用主体) to check: a company, organisation or person."
    )
    related_persons: list[RelatedPersonIn] = Field(
        default_factory=list,
        max_length=50,
        description="Natural persons behind the subject (法定代表人 …); checked too (`via: related_person`, "
        "`via: responsible_person`).",
    )
    business_ref: Text = Field(min_length=1, max_length=200, description="The business file number (办件号).")
    operator: Text = Field(
        min_length=1, max_length=200, description="Who at the business system asks (for the audit log)."
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "item_code": "I07",
                    "subject": {
                        "code": "91110105MA01ABCD5F",
                        "name": "北京某建设工程有限公司",
                        "kind": "uscc",
                    },
                    "related_persons": [
                        {"role": "legal_representative", "code": "110105199003071239", "name": "王某"}
                    ],
                    "business_ref": "SP-2026-000123",
                    "operator": "clerk-017",
                }
            ]
        },
    )


class BatchSubjectIn(_In):
    code: str = Field(
        max_length=64,
        description="The subject's code, as in a single check: USCC (统一社会信用代码), citizen ID (公民身份号码), "
        "organisation code (组织机构代码) or registration number (工商注册号).",
    )
    name: Text | None = Field(
        default=None, max_length=500, description="The subject's name as the business knows it (optional)."
    )
    kind: SubjectKindName | None = Field(
        default=None,
        description="The code's kind; omitted, it is detected (an ambiguous code answers a problem).",
    )
    related_persons: list[RelatedPersonIn] = Field(
        default_factory=list,
        max_length=50,
        description="Natural persons behind this subject (法定代表人 …), checked with it.",
    )


class BatchIn(_In):
    item_code: Text = Field(
        min_length=1,
        max_length=64,
        description="The item (权责事项) every subject is checked for, e.g. `I07`.",
    )
    business_ref: Text = Field(
        min_length=1, max_length=200, description="The business file number (办件号), kept with every check."
    )
    operator: Text = Field(
        min_length=1, max_length=200, description="Who at the business system asks (for the audit log)."
    )
    subjects: list[BatchSubjectIn] = Field(
        min_length=1, max_length=MAX_BATCH, description="1 to 1,000 subjects, answered in this order."
    )


class CatalogueUploadIn(_In):
    """`POST /v1/catalogue/import`, a multipart form: the file and nothing else (another field: 422)."""

    file: UploadFile = Field(description="The catalogue file (.csv UTF-8, or .xlsx)")


# --- answers (documentation) -----------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ItemRef(_Out):
    code: str = Field(description="The item's code (权责事项编码), e.g. `I07`.")
    name: str = Field(description="The item's name, in Chinese as the catalogue gives it.")
    department: str = Field(description="The department whose clients may check this item.")


class SubjectOut(_Out):
    code: str = Field(
        description="Normalised code (a legacy code mapped to its USCC where known); citizen IDs masked without `pii:read`."
    )
    given_code: str = Field(description="The code exactly as sent (masked like `code`).")
    kind: SubjectKindName = Field(
        description="The kind of `code`: `uscc` (统一社会信用代码), `citizen_id` (公民身份号码), `org_code` (组织机构代码) "
        "or `registration_no` (工商注册号)."
    )
    given_kind: SubjectKindName = Field(description="The kind of the code as sent, before alias mapping.")
    name: str | None = Field(
        description="As sent; a natural person's name is masked (`张*`) without `pii:read`."
    )


class ListRef(_Out):
    code: str = Field(description="The list type's code (名单类型), e.g. `LT01`.")
    name: str = Field(description="The list type's name, e.g. 失信被执行人.")
    kind: Literal["red", "black", "watch"] = Field(
        description="`red` (红名单, incentives), `black` (黑名单, penalties) or `watch` (重点关注名单)."
    )


class MatchOut(_Out):
    entry_id: str = Field(description="The matched list entry (opaque id).")
    via: Literal["subject", "related_person", "responsible_person"] = Field(
        description="How it matched: `subject` (the checked subject's own entry), `related_person` (an entry of "
        "one of `related_persons`) or `responsible_person` (an organisation's entry naming a checked person)."
    )
    matched_code: str = Field(description="The checked code that matched (masked for natural persons).")
    matched_role: str | None = Field(
        description="The role, for `related_person` (as sent) and `responsible_person` (as on the entry)."
    )
    list: ListRef = Field(description="The list type of the entry.")
    subject_code: str = Field(description="The entry's subject code (masked for natural persons).")
    subject_name: str = Field(description="The entry's subject name (masked for natural persons).")
    reason: str = Field(description="Why the subject was listed (列入事由), in Chinese.")
    issuing_department: str = Field(description="The department that listed the subject (认定部门).")
    decision_no: str = Field(description="The decision number (认定文号).")
    listed_on: str = Field(description="The date the entry takes effect (列入日期), `YYYY-MM-DD`.")
    expires_on: str | None = Field(description="The last day it is in effect (有效期至); null: open-ended.")
    status: Literal["active", "objection_pending"] = Field(
        description="`active`, or `objection_pending` (异议 being verified: its measures are suspended)."
    )


class _MeasureFields(_Out):
    """What every measure of a check answer carries; the three lists add their own fields."""

    code: str = Field(description="The measure's code (措施编码), e.g. `M01`.")
    kind: Literal["incentive", "penalty"] = Field(description="`incentive` (激励) or `penalty` (惩戒).")
    category: str = Field(description="The measure category (措施类别), e.g. 限制政府采购.")
    content: str = Field(description="What the business must do (措施内容), in Chinese.")
    mandatory: bool = Field(
        description="true: must be applied by law (依法必须); false: advisory, to be considered (参考)."
    )
    target: Literal["entity", "natural_person", "responsible_person"] = Field(
        description="The target it applies under (激励/惩戒对象): `entity` (单位), `natural_person` (自然人) or "
        "`responsible_person` (法定代表人/主要负责人)."
    )
    legal_basis: str = Field(description="The law, regulation or memorandum article behind it (相关依据).")
    memorandum: str | None = Field(description="Title of the memorandum (备忘录) that defines the measure.")
    memorandum_code: str | None = Field(
        description="The memorandum's code, e.g. `MEMO-SXBZXR`; null if none."
    )
    nature: str | None = Field(description="The measure's nature (措施性质), e.g. 行政性, 管理性.")
    implementing_department: str | None = Field(
        description="The department that applies it (实施部门), as the catalogue names it."
    )
    basis_level: str | None = Field(description="The level of the legal basis, e.g. 法律, 备忘录.")


class MeasureOut(_MeasureFields):
    triggered_by: list[str] = Field(description="The entries that trigger it.")


class SuspendedMeasureOut(_MeasureFields):
    """Suspended while its entries are under objection: `blocked_by` names them (no `triggered_by`)."""

    reason: str = Field(description="`核实期间暂不执行` (not applied while the objection is verified).")
    blocked_by: list[str] = Field(description="The entries under objection that trigger it.")


class WithheldIncentiveOut(MeasureOut):
    reason: str = Field(description="Why the incentive is withheld (an active black-list entry).")
    blocked_by: list[str] = Field(description="The active black-list entries that withhold it.")


class DataVersion(_Out):
    lists: str = Field(
        description="Version of the list data (entries, linked persons, aliases) checked against."
    )
    catalogue: str = Field(description="Version of the measure catalogue the measures came from.")


class CheckOut(_Out):
    check_id: str = Field(
        description="The check's id (opaque); read it back with `GET /v1/checks/{check_id}`."
    )
    checked_at: str = Field(
        description="When it was checked, RFC 3339 in Beijing time with milliseconds; its date is the check date."
    )
    item: ItemRef = Field(description="The item (权责事项) checked for.")
    subject: SubjectOut = Field(description="The checked subject (信用主体), normalised.")
    outcome: Literal["clear", "review", "incentive", "penalty", "mixed"] = Field(
        description="`clear` (no match), `review` (matches, no measure), `incentive`, `penalty` or `mixed` (both)."
    )
    matches: list[MatchOut] = Field(description="The list entries in effect on the check date that matched.")
    measures: list[MeasureOut] = Field(
        description="The measures (奖惩措施) the item must apply or consider; report on them with feedback."
    )
    suspended_measures: list[SuspendedMeasureOut] = Field(
        description="Measures triggered only by entries under objection (异议): not applied (核实期间暂不执行)."
    )
    withheld_incentives: list[WithheldIncentiveOut] = Field(
        description="Incentives withheld while an active black-list entry matches."
    )
    clean_record_years: int = Field(
        ge=0,
        le=3,
        description="Whole years without a black- or watch-list record (连续无不良信用记录年数), capped at 3.",
    )
    data_version: DataVersion = Field(description="What the answer was based on: keep it with the decision.")
    feedback_due_on: str | None = Field(
        description="Report what was applied (反馈) by this date, `YYYY-MM-DD`; null when `measures` is empty."
    )


class BatchOut(_Out):
    batch_id: str = Field(description="The batch's id (opaque).")
    results: list[dict[str, Any]] = Field(description="In request order: a check body, or a problem object.")


class ItemSummary(_Out):
    code: str = Field(description="The item's code, e.g. `I07`.")
    name: str = Field(description="The item's name (事项名称).")
    department: str = Field(description="The department that decides it (实施部门); its clients check it.")
    section: str | None = Field(description="The responsible section (关联科室).")
    type: str = Field(description="The item's type, e.g. 行政许可, 其他权力/公共服务.")
    system: str | None = Field(description="The business system it is handled in, e.g. 行政审批.")


class ItemsOut(_Out):
    items: list[ItemSummary] = Field(description="Every item of the catalogue.")


class CatalogueMeasure(_Out):
    code: str = Field(description="The measure's code, e.g. `M01`.")
    kind: str = Field(description="`incentive` (激励) or `penalty` (惩戒).")
    category: str = Field(description="The measure category (措施类别).")
    content: str = Field(description="What the business must do (措施内容).")
    mandatory: bool = Field(description="true: required by law (依法必须); false: advisory (参考).")
    legal_basis: str = Field(description="The legal basis (相关依据).")
    memorandum: str | None = Field(description="Title of the memorandum (合作备忘录) that defines it.")
    targets: list[str] = Field(
        description="The targets it applies to: `entity`, `natural_person`, `responsible_person`."
    )


class MappingOut(_Out):
    list_type: str = Field(description="The list type's code (名单类型), e.g. `LT01`.")
    measures: list[CatalogueMeasure] = Field(
        description="The measures the item applies for this list type, with their targets."
    )


class ItemDetail(ItemSummary):
    mappings: list[MappingOut] = Field(description="The item-measure mapping (应用事项清单), per list type.")


class ListTypeOut(_Out):
    code: str = Field(description="The list type's code, e.g. `LT01`.")
    name: str = Field(description="Its name (名单名称), e.g. 失信被执行人.")
    kind: Literal["red", "black", "watch"] = Field(
        description="`red` (红名单), `black` (黑名单) or `watch` (重点关注名单)."
    )
    issuing_authority: str = Field(description="Who lists subjects on it (认定部门), e.g. 人民法院.")
    default_validity_days: int | None = Field(
        description="Days an entry stays in effect when published without `expires_on`; null: open-ended."
    )


class ListTypesOut(_Out):
    list_types: list[ListTypeOut] = Field(description="Every list type of the catalogue.")


class MeasuresOut(_Out):
    measures: list[CatalogueMeasure] = Field(description="Every measure (奖惩措施) of the catalogue.")


class MemorandumOut(_Out):
    code: str = Field(description="The memorandum's code, e.g. `MEMO-SXBZXR`.")
    title: str = Field(description="Its title (合作备忘录名称).")
    doc_no: str | None = Field(description="Its document number (文号), e.g. 发改财金〔2016〕141号.")
    kind: str = Field(description="`incentive` (激励) or `penalty` (惩戒).")
    list_types: list[str] = Field(description="The list types whose measures it defines.")


class MemorandaOut(_Out):
    memoranda: list[MemorandumOut] = Field(
        description="Every cooperation memorandum (合作备忘录) of the catalogue."
    )


class ImportOut(_Out):
    version: int | None = Field(description="The new catalogue version; null when the file changed nothing.")
    changed: bool = Field(
        description="true: a new catalogue version was written; false: the file equals the current one."
    )
    rows: int = Field(description="Data rows read from the file.")
    counts: dict[str, int] = Field(description="What the file holds: `measures`, `items` and `mappings`.")
    summary: str = Field(description="One line saying what was imported.")
