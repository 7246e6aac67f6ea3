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
    subject: SubjectIn
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
    code: str = Field(max_length=64, description="The subject's code, as in a single check.")
    name: Text | None = Field(default=None, max_length=500)
    kind: SubjectKindName | None = None
    related_persons: list[RelatedPersonIn] = Field(default_factory=list, max_length=50)


class BatchIn(_In):
    item_code: Text = Field(min_length=1, max_length=64)
    business_ref: Text = Field(min_length=1, max_length=200)
    operator: Text = Field(min_length=1, max_length=200)
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
    code: str
    name: str
    department: str = Field(description="The department whose clients may check this item.")


class SubjectOut(_Out):
    code: str = Field(
        description="Normalised code (a legacy code mapped to its USCC where known); citizen IDs masked without `pii:read`."
    )
    given_code: str = Field(description="The code exactly as sent (masked like `code`).")
    kind: SubjectKindName
    given_kind: SubjectKindName = Field(description="The kind of the code as sent, before alias mapping.")
    name: str | None = Field(
        description="As sent; a natural person's name is masked (`张*`) without `pii:read`."
    )


class ListRef(_Out):
    code: str
    name: str
    kind: Literal["red", "black", "watch"]


class MatchOut(_Out):
    entry_id: str
    via: Literal["subject", "related_person", "responsible_person"]
    matched_code: str = Field(description="The checked code that matched (masked for natural persons).")
    matched_role: str | None = Field(
        description="The role, for `related_person` (as sent) and `responsible_person` (as on the entry)."
    )
    list: ListRef
    subject_code: str
    subject_name: str
    reason: str
    issuing_department: str
    decision_no: str
    listed_on: str
    expires_on: str | None
    status: Literal["active", "objection_pending"]


class _MeasureFields(_Out):
    """What every measure of a check answer carries; the three lists add their own fields."""

    code: str
    kind: Literal["incentive", "penalty"]
    category: str
    content: str
    mandatory: bool
    target: Literal["entity", "natural_person", "responsible_person"]
    legal_basis: str
    memorandum: str | None = Field(description="Title of the memorandum (备忘录) that defines the measure.")
    memorandum_code: str | None
    nature: str | None
    implementing_department: str | None
    basis_level: str | None


class MeasureOut(_MeasureFields):
    triggered_by: list[str] = Field(description="The entries that trigger it.")


class SuspendedMeasureOut(_MeasureFields):
    """Suspended while its entries are under objection: `blocked_by` names them (no `triggered_by`)."""

    reason: str = Field(description="`核实期间暂不执行`")
    blocked_by: list[str] = Field(description="The entries under objection that trigger it.")


class WithheldIncentiveOut(MeasureOut):
    reason: str
    blocked_by: list[str] = Field(description="The active black-list entries that withhold it.")


class DataVersion(_Out):
    lists: str
    catalogue: str


class CheckOut(_Out):
    check_id: str
    checked_at: str
    item: ItemRef
    subject: SubjectOut
    outcome: Literal["clear", "review", "incentive", "penalty", "mixed"]
    matches: list[MatchOut]
    measures: list[MeasureOut]
    suspended_measures: list[SuspendedMeasureOut]
    withheld_incentives: list[WithheldIncentiveOut]
    clean_record_years: int = Field(ge=0, le=3)
    data_version: DataVersion
    feedback_due_on: str | None


class BatchOut(_Out):
    batch_id: str
    results: list[dict[str, Any]] = Field(description="In request order: a check body, or a problem object.")


class ItemSummary(_Out):
    code: str
    name: str
    department: str
    section: str | None
    type: str
    system: str | None


class ItemsOut(_Out):
    items: list[ItemSummary]


class CatalogueMeasure(_Out):
    code: str
    kind: str
    category: str
    content: str
    mandatory: bool
    legal_basis: str
    memorandum: str | None
    targets: list[str]


class MappingOut(_Out):
    list_type: str
    measures: list[CatalogueMeasure]


class ItemDetail(ItemSummary):
    mappings: list[MappingOut]


class ListTypeOut(_Out):
    code: str
    name: str
    kind: Literal["red", "black", "watch"]
    issuing_authority: str
    default_validity_days: int | None


class ListTypesOut(_Out):
    list_types: list[ListTypeOut]


class MeasuresOut(_Out):
    measures: list[CatalogueMeasure]


class MemorandumOut(_Out):
    code: str
    title: str
    doc_no: str | None
    kind: str
    list_types: list[str]


class MemorandaOut(_Out):
    memoranda: list[MemorandumOut]


class ImportOut(_Out):
    version: int | None = Field(description="The new catalogue version; null when the file changed nothing.")
    changed: bool
    rows: int
    counts: dict[str, int]
    summary: str
