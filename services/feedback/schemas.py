"""Request and response bodies of the feedback service (contract: feedback)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from shared.api.text import NulFree

Decision = Literal["approved", "rejected", "approved_with_conditions", "withdrawn"]
ReportedStatus = Literal["applied", "not_applied", "not_applicable"]
MeasureStatus = Literal["applied", "not_applied", "not_applicable", "awaiting"]

MAX_NOTE_CHARS = 2000
MAX_MEASURES = 200


class MeasureReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: NulFree = Field(
        min_length=1, max_length=64, description="A code of the check's `measures` or `suspended_measures`"
    )
    status: ReportedStatus
    note: NulFree | None = Field(
        default=None, max_length=MAX_NOTE_CHARS, description="Required for `not_applied` and `not_applicable`"
    )

    @field_validator("code")
    @classmethod
    def _strip_code(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("note")
    @classmethod
    def _strip_note(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return value.strip() or None

    @model_validator(mode="after")
    def _note_when_not_applied(self) -> MeasureReport:
        if self.status != "applied" and self.note is None:
            raise ValueError(f"a note is required when status is {self.status} (say why)")
        return self


class FeedbackIn(BaseModel):
    """`POST /v1/checks/{check_id}/feedback`: what the business system decided and applied."""

    model_config = ConfigDict(extra="forbid")

    decision: Decision
    measures: list[MeasureReport] = Field(
        max_length=MAX_MEASURES, description="Statuses to report now; feedback may come in parts"
    )
    operator: NulFree = Field(min_length=1, max_length=200, description="Who at the business system reports")

    @field_validator("operator")
    @classmethod
    def _strip_operator(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("measures")
    @classmethod
    def _one_status_per_code(cls, value: list[MeasureReport]) -> list[MeasureReport]:
        counts = Counter(m.code for m in value)
        twice = sorted(code for code, n in counts.items() if n > 1)
        if twice:
            raise ValueError(f"each measure at most once per submission; repeated: {', '.join(twice)}")
        return value


class HistoryItem(BaseModel):
    status: ReportedStatus
    note: str | None
    operator: str
    reported_at: dt.datetime


class MeasureFeedback(BaseModel):
    code: str
    status: MeasureStatus
    note: str | None
    operator: str | None
    reported_at: dt.datetime | None
    history: list[HistoryItem] = Field(description="Every version, oldest first, the current one included")
    required: bool = Field(
        description="true: one of the check's `measures` (counts towards `complete`); false: a suspended "
        "measure that was reported on"
    )


class FeedbackStatus(BaseModel):
    check_id: str
    decision: Decision | None
    complete: bool = Field(description="Every required measure has a status")
    feedback_due_on: dt.date | None
    overdue: bool = Field(description="Not complete after `feedback_due_on` (Asia/Shanghai)")
    measures: list[MeasureFeedback]


class StatsFigures(BaseModel):
    checks: int
    checks_with_matches: int
    awaiting_feedback: int
    overdue: int
    required_measures: int
    applied: int
    not_applied: int
    not_applicable: int


class DepartmentStats(StatsFigures):
    department: str


class ItemStats(StatsFigures):
    item_code: str
    item_name: str | None


class ReasonCount(BaseModel):
    reason: str
    count: int


class EnforcementStats(BaseModel):
    totals: StatsFigures
    by_department: list[DepartmentStats]
    by_item: list[ItemStats]
    not_applied_reasons: list[ReasonCount] = Field(
        description="The notes given for required measures currently `not_applied`, most frequent first (top 20)"
    )


class SubjectView(BaseModel):
    code: str
    kind: str
    name: str | None


class MatchView(BaseModel):
    via: str
    matched_code: str
    matched_role: str | None
    entry_status: str = Field(description="The entry's status when checked: active | objection_pending")


class EnforcedMeasure(BaseModel):
    code: str
    disposition: Literal["required", "suspended", "withheld"]
    kind: str
    mandatory: bool
    target: str
    status: MeasureStatus | None = Field(
        description="Required measures: their current status or `awaiting`; suspended ones: their status if "
        "reported, else null; withheld incentives: null"
    )
    note: str | None
    operator: str | None
    reported_at: dt.datetime | None


class EnforcementCheck(BaseModel):
    check_id: str
    checked_at: dt.datetime
    check_date: dt.date
    item_code: str
    item_department: str
    department: str = Field(description="The checking client's department (实施部门)")
    business_ref: str
    subject: SubjectView
    outcome: str
    matches: list[MatchView]
    decision: Decision | None
    complete: bool
    feedback_due_on: dt.date | None
    overdue: bool
    measures: list[EnforcedMeasure] = Field(description="The measures this entry triggered or blocked")


class EnforcementTotals(BaseModel):
    checks: int
    required_measures: int
    applied: int
    not_applied: int
    not_applicable: int
    awaiting: int


class EntryEnforcement(BaseModel):
    entry_id: str
    list_type: str
    issuing_department: str
    subject: SubjectView
    totals: EnforcementTotals = Field(description="Over every check of the entry, not only this page")
    checks: list[EnforcementCheck]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one")


class TopicCounts(BaseModel):
    topic: str
    pending: int
    delivered: int
    dead: int
    oldest_pending_age_seconds: float | None


class DeadLetter(BaseModel):
    message_id: str
    topic: str
    target_url: str | None
    subscription_id: str | None
    attempts: int
    last_error: str | None
    created_at: dt.datetime
    next_attempt_at: dt.datetime


class OutboxStatus(BaseModel):
    topics: list[TopicCounts]
    oldest_pending_age_seconds: float | None
    dead_letters: list[DeadLetter]


class ReplayResult(BaseModel):
    requeued: int
