"""Request bodies of the list-sync service (unknown fields answer 422) and response shapes for the docs."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from shared.api.text import NoNul
from shared.codes import SubjectKind

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _strict_date(value: object) -> object:
    """Dates are `YYYY-MM-DD` strings only (pydantic would also take timestamps and other spellings)."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and _DATE.fullmatch(value):
        return dt.date.fromisoformat(value)  # ValueError (2026-02-30) becomes a 422
    raise ValueError("must be a date as YYYY-MM-DD")


Date = Annotated[dt.date, BeforeValidator(_strict_date)]
# Every string of a request refuses a NUL (PostgreSQL text cannot hold one): 422, never a failed insert.
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000), NoNul]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64), NoNul]
Role = Literal["legal_representative", "responsible_person", "actual_controller", "directly_responsible"]
EventType = Literal["objection", "objection_upheld", "objection_rejected", "repair", "removal"]
ListKind = Literal["red", "black", "watch"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubjectIn(Strict):
    code: Code
    name: Text
    kind: SubjectKind | None = None


class LinkedPersonIn(Strict):
    role: Role
    code: Code = Field(description="citizen ID number (GB 11643)")
    name: Text


class PublishEntryIn(Strict):
    list_type: Annotated[str, StringConstraints(min_length=1, max_length=32), NoNul]
    subject: SubjectIn
    linked_persons: list[LinkedPersonIn] = Field(default_factory=list, max_length=100)
    reason: Text
    decision_no: Text
    issuing_department: Text | None = Field(
        None, description="default and only allowed value: the client's department"
    )
    listed_on: Date
    expires_on: Date | None = Field(
        None,
        description="omitted: listed_on plus the list type's default validity (open-ended where it has none); "
        "null: open-ended",
    )
    operator: Text | None = Field(None, description="who publishes (default: the client's name)")


class EntryEventIn(Strict):
    type: EventType
    basis: Text
    operator: Text


class SourceIn(Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    kind: Literal["feed", "snapshot", "file"]
    base_url: Annotated[str, StringConstraints(min_length=1, max_length=2000), NoNul] | None = None
    path: Annotated[str, StringConstraints(min_length=1, max_length=1000), NoNul] | None = Field(
        None, description="file sources: relative to ONECHECK_IMPORT_DIR"
    )
    token: Annotated[str, StringConstraints(min_length=1, max_length=4000), NoNul] | None = Field(
        None, description="bearer token for the upstream; never returned"
    )
    interval_seconds: int | None = Field(None, ge=60, le=31 * 86400, description="scheduled runs")


class SubscriptionIn(Strict):
    callback_url: Annotated[str, StringConstraints(min_length=1, max_length=2000), NoNul]
    subject_codes: list[Code] | None = Field(
        None, max_length=1000, description="omitted or empty: all subjects"
    )
    list_kinds: list[ListKind] | None = Field(None, max_length=3, description="omitted or empty: all kinds")


# --- responses (for the OpenAPI page; handlers return plain JSON) -----------------------------------------


class HistoryOut(BaseModel):
    event: str
    at: str
    operator: str | None
    basis: str | None


class EntryOut(BaseModel):
    entry_id: str
    list_type: str
    list_info: dict[str, Any] = Field(alias="list", description="{code, name, kind}")
    subject: dict[str, Any]
    linked_persons: list[dict[str, str]]
    reason: str
    decision_no: str
    issuing_department: str
    listed_on: str
    expires_on: str | None
    status: Literal["active", "objection_pending", "ended"]
    end_reason: Literal["expired", "removed", "repaired", "objection_upheld"] | None
    ended_on: str | None
    source: dict[str, Any] | None
    created_at: str
    updated_at: str
    history: list[HistoryOut]


class SourceOut(BaseModel):
    name: str
    kind: str
    base_url: str | None
    path: str | None
    has_token: bool
    interval_seconds: int | None
    cursor: str | None
    enabled: bool
    created_at: str


class SourcesOut(BaseModel):
    sources: list[SourceOut]


class CountsOut(BaseModel):
    received: int
    inserted: int
    updated: int
    unchanged: int
    duplicates: int
    stale: int
    quarantined: int
    ended: int
    unmapped_legacy: int


class RunOut(BaseModel):
    run_id: str
    source: str
    status: Literal["running", "succeeded", "failed", "held", "discarded"]
    started_at: str
    finished_at: str | None
    counts: CountsOut
    error: str | None


class RunsOut(BaseModel):
    runs: list[RunOut]


class QuarantinedOut(BaseModel):
    run_id: str
    line: int
    raw: Any
    reason: str
    rule: str | None


class QuarantineOut(BaseModel):
    records: list[QuarantinedOut]


class SubscriptionOut(BaseModel):
    subscription_id: str
    callback_url: str
    subject_codes: list[str] | None
    list_kinds: list[str] | None
    active: bool
    created_at: str


class SubscriptionCreatedOut(SubscriptionOut):
    secret: str = Field(description="HMAC key for X-OneCheck-Signature; shown once")


class SubscriptionsOut(BaseModel):
    subscriptions: list[SubscriptionOut]


class DeliveryOut(BaseModel):
    event_id: str
    event: str | None
    entry_id: str | None
    state: Literal["pending", "delivered", "dead"]
    attempts: int
    last_error: str | None
    created_at: str
    delivered_at: str | None
    next_attempt_at: str | None


class DeliveriesOut(BaseModel):
    deliveries: list[DeliveryOut]
