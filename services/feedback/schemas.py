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
    status: ReportedStatus = Field(
        description="`applied` (落实), `not_applied` or `not_applicable`; the last two need a `note`."
    )
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

    decision: Decision = Field(
        description="The business decision: `approved`, `rejected`, `approved_with_conditions` or `withdrawn`."
    )
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


_TIME = "RFC 3339 with offset"


class HistoryItem(BaseModel):
    status: ReportedStatus = Field(description="The status reported in this version.")
    note: str | None = Field(description="Its note; null if none was given.")
    operator: str = Field(description="Who reported it.")
    reported_at: dt.datetime = Field(description=f"When it was reported, {_TIME}.")


class MeasureFeedback(BaseModel):
    code: str = Field(description="The measure's code (措施编码), as in the check's `measures`.")
    status: MeasureStatus = Field(
        description="The current status: `applied`, `not_applied`, `not_applicable`, or `awaiting` (not reported)."
    )
    note: str | None = Field(description="The current note; null if none.")
    operator: str | None = Field(description="Who reported the current status; null while `awaiting`.")
    reported_at: dt.datetime | None = Field(description=f"When, {_TIME}; null while `awaiting`.")
    history: list[HistoryItem] = Field(description="Every version, oldest first, the current one included")
    required: bool = Field(
        description="true: one of the check's `measures` (counts towards `complete`); false: a suspended "
        "measure that was reported on"
    )


class FeedbackStatus(BaseModel):
    check_id: str = Field(description="The check the feedback is on.")
    decision: Decision | None = Field(description="The latest business decision reported; null before any.")
    complete: bool = Field(description="Every required measure has a status")
    feedback_due_on: dt.date | None = Field(
        description="The check's due date for feedback (`YYYY-MM-DD`); null when it had no measures."
    )
    overdue: bool = Field(description="Not complete after `feedback_due_on` (Asia/Shanghai)")
    measures: list[MeasureFeedback] = Field(
        description="The required measures, then the suspended ones reported on, each with its history."
    )


class StatsFigures(BaseModel):
    checks: int = Field(description="Checks made.")
    checks_with_matches: int = Field(description="Checks that matched at least one entry.")
    awaiting_feedback: int = Field(description="Checks with required measures not all reported yet.")
    overdue: int = Field(
        description="Checks awaiting feedback after their `feedback_due_on` (⊂ awaiting_feedback)."
    )
    required_measures: int = Field(description="Required measures of those checks (what they had to apply).")
    applied: int = Field(description="Required measures reported `applied`.")
    not_applied: int = Field(description="Required measures reported `not_applied`.")
    not_applicable: int = Field(description="Required measures reported `not_applicable`.")


class DepartmentStats(StatsFigures):
    department: str = Field(description="The checking client's department (实施部门).")


class ItemStats(StatsFigures):
    item_code: str = Field(description="The item's code (权责事项).")
    item_name: str | None = Field(description="The item's name; null if the catalogue no longer has it.")


class ReasonCount(BaseModel):
    reason: str = Field(description="A note given for a measure reported `not_applied`.")
    count: int = Field(description="How many required measures carry it.")


class EnforcementStats(BaseModel):
    totals: StatsFigures = Field(description="The figures over every check selected.")
    by_department: list[DepartmentStats] = Field(description="The same figures per checking department.")
    by_item: list[ItemStats] = Field(description="The same figures per item.")
    not_applied_reasons: list[ReasonCount] = Field(
        description="The notes given for required measures currently `not_applied`, most frequent first (top 20)"
    )


class SubjectView(BaseModel):
    code: str = Field(description="The subject's code (masked for natural persons without `pii:read`).")
    kind: str = Field(description="`uscc`, `citizen_id`, `org_code` or `registration_no`.")
    name: str | None = Field(
        description="The subject's name (masked for natural persons without `pii:read`)."
    )


class MatchView(BaseModel):
    via: str = Field(
        description="How the check matched the entry: `subject`, `related_person`, `responsible_person`."
    )
    matched_code: str = Field(description="The checked code that matched (masked for natural persons).")
    matched_role: str | None = Field(description="The role, for `related_person` and `responsible_person`.")
    entry_status: str = Field(description="The entry's status when checked: active | objection_pending")


class EnforcedMeasure(BaseModel):
    code: str = Field(description="The measure's code (措施编码).")
    disposition: Literal["required", "suspended", "withheld"] = Field(
        description="In the check: `required` (its `measures`), `suspended` (异议) or `withheld` (incentives)."
    )
    kind: str = Field(description="`incentive` (激励) or `penalty` (惩戒).")
    mandatory: bool = Field(description="true: required by law (依法必须); false: advisory (参考).")
    target: str = Field(description="`entity`, `natural_person` or `responsible_person`.")
    status: MeasureStatus | None = Field(
        description="Required measures: their current status or `awaiting`; suspended ones: their status if "
        "reported, else null; withheld incentives: null"
    )
    note: str | None = Field(description="The current note; null if none.")
    operator: str | None = Field(description="Who reported the current status; null if not reported.")
    reported_at: dt.datetime | None = Field(description=f"When, {_TIME}; null if not reported.")


class EnforcementCheck(BaseModel):
    check_id: str = Field(description="The check (信用核查).")
    checked_at: dt.datetime = Field(description=f"When it was made, {_TIME}.")
    check_date: dt.date = Field(description="Its check date (Asia/Shanghai), `YYYY-MM-DD`.")
    item_code: str = Field(description="The item checked for (权责事项).")
    item_department: str = Field(description="The item's department.")
    department: str = Field(description="The checking client's department (实施部门)")
    business_ref: str = Field(description="The business file number (办件号).")
    subject: SubjectView = Field(description="The checked subject.")
    outcome: str = Field(
        description="The check's outcome: `clear`, `review`, `incentive`, `penalty`, `mixed`."
    )
    matches: list[MatchView] = Field(description="How the check matched this entry.")
    decision: Decision | None = Field(description="The business decision reported (反馈); null before any.")
    complete: bool = Field(description="Every required measure has a status.")
    feedback_due_on: dt.date | None = Field(
        description="The check's due date for feedback; null without measures."
    )
    overdue: bool = Field(description="Not complete after `feedback_due_on`.")
    measures: list[EnforcedMeasure] = Field(description="The measures this entry triggered or blocked")


class EnforcementTotals(BaseModel):
    checks: int = Field(description="Checks that matched the entry.")
    required_measures: int = Field(description="Required measures the entry triggered in them.")
    applied: int = Field(description="Of those, reported `applied`.")
    not_applied: int = Field(description="Of those, reported `not_applied`.")
    not_applicable: int = Field(description="Of those, reported `not_applicable`.")
    awaiting: int = Field(description="Of those, not reported yet.")


class EntryEnforcement(BaseModel):
    entry_id: str = Field(description="The entry (名单条目).")
    list_type: str = Field(description="Its list type's code (名单类型).")
    issuing_department: str = Field(
        description="Its issuing department (认定部门): the only one that reads this."
    )
    subject: SubjectView = Field(description="The entry's subject.")
    totals: EnforcementTotals = Field(description="Over every check of the entry, not only this page")
    checks: list[EnforcementCheck] = Field(
        description="This page of the checks that matched it, oldest first."
    )
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last one")


class TopicCounts(BaseModel):
    topic: str = Field(description="`feedback` (to the upstream platform) or `subscription` (callbacks).")
    pending: int = Field(description="Messages waiting for delivery or a retry.")
    delivered: int = Field(description="Messages delivered.")
    dead: int = Field(description="Messages given up on (dead letters).")
    oldest_pending_age_seconds: float | None = Field(
        description="Age of the oldest pending message, in seconds; null when none is pending."
    )


class DeadLetter(BaseModel):
    message_id: str = Field(
        description="The message's id (the callback's `event_id`, or the feedback's key)."
    )
    topic: str = Field(description="`feedback` or `subscription`.")
    target_url: str | None = Field(description="Where it was to be delivered.")
    subscription_id: str | None = Field(description="The subscription, for callbacks; else null.")
    attempts: int = Field(description="Delivery attempts made.")
    last_error: str | None = Field(description="Why the last attempt failed.")
    created_at: dt.datetime = Field(description=f"When it was queued, {_TIME}.")
    next_attempt_at: dt.datetime = Field(description=f"When it would have been tried next, {_TIME}.")


class OutboxStatus(BaseModel):
    topics: list[TopicCounts] = Field(description="Message counts by topic and state.")
    oldest_pending_age_seconds: float | None = Field(
        description="Age of the oldest pending message of any topic, in seconds; null when none is pending."
    )
    dead_letters: list[DeadLetter] = Field(description="The most recent dead letters (up to `dead_limit`).")


class ReplayResult(BaseModel):
    requeued: int = Field(description="Dead letters made pending again.")
