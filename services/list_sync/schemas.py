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
    code: Code = Field(
        description="USCC (统一社会信用代码), citizen ID (公民身份号码), organisation code (组织机构代码) or "
        "registration number (工商注册号); validated and normalised."
    )
    name: Text = Field(description="The subject's name (主体名称).")
    kind: SubjectKind | None = Field(
        None, description="The code's kind; omitted, it is detected (an ambiguous code answers 422)."
    )


class LinkedPersonIn(Strict):
    role: Role = Field(
        description="The person's role for the subject: `legal_representative` (法定代表人), `responsible_person` "
        "(主要负责人), `actual_controller` (实际控制人) or `directly_responsible` (直接责任人)."
    )
    code: Code = Field(description="citizen ID number (GB 11643)")
    name: Text = Field(description="The person's name.")


class PublishEntryIn(Strict):
    list_type: Annotated[str, StringConstraints(min_length=1, max_length=32), NoNul] = Field(
        description="The list type's code (名单类型), e.g. `LT01` (see `GET /v1/list-types`)."
    )
    subject: SubjectIn = Field(description="Who is listed (信用主体).")
    linked_persons: list[LinkedPersonIn] = Field(
        default_factory=list,
        max_length=100,
        description="People the entry also reaches (法定代表人 / 主要负责人 …): checks of them match it "
        "(`via: responsible_person`).",
    )
    reason: Text = Field(description="Why the subject is listed (列入事由).")
    decision_no: Text = Field(description="The decision number (认定文号).")
    issuing_department: Text | None = Field(
        None, description="default and only allowed value: the client's department"
    )
    listed_on: Date = Field(
        description="The date it takes effect (列入日期), `YYYY-MM-DD`; past and future allowed."
    )
    expires_on: Date | None = Field(
        None,
        description="omitted: listed_on plus the list type's default validity (open-ended where it has none); "
        "null: open-ended",
    )
    operator: Text | None = Field(None, description="who publishes (default: the client's name)")


class EntryEventIn(Strict):
    type: EventType = Field(
        description="`objection` (异议), `objection_upheld`, `objection_rejected`, `repair` (信用修复) or "
        "`removal` (移出)."
    )
    basis: Text = Field(description="The basis of the event: a decision, a document number, a note.")
    operator: Text = Field(description="Who records it (for the history and the audit log).")


class SourceIn(Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] = Field(
        description="A unique name: letters, digits, `.`, `_`, `-` (up to 64)."
    )
    kind: Literal["feed", "snapshot", "file"] = Field(
        description="`feed` (paged, resumed from its cursor), `snapshot` (the complete listing each run) or "
        "`file` (CSV or XLSX, applied like a snapshot)."
    )
    base_url: Annotated[str, StringConstraints(min_length=1, max_length=2000), NoNul] | None = Field(
        None, description="feed and snapshot sources: the platform's API; runs read `{base_url}/entries`"
    )
    path: Annotated[str, StringConstraints(min_length=1, max_length=1000), NoNul] | None = Field(
        None, description="file sources: relative to ONECHECK_IMPORT_DIR"
    )
    token: Annotated[str, StringConstraints(min_length=1, max_length=4000), NoNul] | None = Field(
        None, description="bearer token for the upstream; never returned"
    )
    interval_seconds: int | None = Field(
        None,
        ge=60,
        le=31 * 86400,
        description="scheduled runs: every so many seconds (omitted: on demand only)",
    )


class SubscriptionIn(Strict):
    callback_url: Annotated[str, StringConstraints(min_length=1, max_length=2000), NoNul] = Field(
        description="Where changes are POSTed: https (http only to a host in ONECHECK_CALLBACK_HTTP_HOSTS)."
    )
    subject_codes: list[Code] | None = Field(
        None, max_length=1000, description="omitted or empty: all subjects"
    )
    list_kinds: list[ListKind] | None = Field(None, max_length=3, description="omitted or empty: all kinds")


# --- responses (for the OpenAPI page; handlers return plain JSON) -----------------------------------------

_TIME = "RFC 3339 with offset"


class HistoryOut(BaseModel):
    event: str = Field(
        description="`published`, `updated`, `objection`, `objection_upheld`, `objection_rejected`, `repair`, "
        "`removal`, `removed` (by a sync) or `expired`."
    )
    at: str = Field(description=f"When it happened, {_TIME}.")
    operator: str | None = Field(description="Who recorded it (`system` for the expiry job).")
    basis: str | None = Field(description="Its basis (the decision number for `published`).")


class EntryOut(BaseModel):
    entry_id: str = Field(description="The entry's id (opaque).")
    list_type: str = Field(description="The list type's code (名单类型), e.g. `LT01`.")
    list_info: dict[str, Any] = Field(alias="list", description="{code, name, kind}")
    subject: dict[str, Any] = Field(
        description="{code, name, kind, original_code, original_kind}: the subject (信用主体) and the code as "
        "given (a legacy code an alias maps is stored under the USCC); masked for natural persons without "
        "`pii:read`."
    )
    linked_persons: list[dict[str, str]] = Field(
        description="[{role, code, name}]: people the entry also reaches; masked without `pii:read`."
    )
    reason: str = Field(description="Why the subject is listed (列入事由).")
    decision_no: str = Field(description="The decision number (认定文号).")
    issuing_department: str = Field(description="The department that listed the subject (认定部门).")
    listed_on: str = Field(description="The date it takes effect (列入日期), `YYYY-MM-DD`.")
    expires_on: str | None = Field(description="The last day in effect (有效期至); null: open-ended.")
    status: Literal["active", "objection_pending", "ended"] = Field(
        description="`active`, `objection_pending` (异议 being verified) or `ended`."
    )
    end_reason: Literal["expired", "removed", "repaired", "objection_upheld"] | None = Field(
        description="Why it ended (移出): `expired`, `removed`, `repaired` (信用修复) or `objection_upheld`; "
        "null while not ended."
    )
    ended_on: str | None = Field(description="The date it ended, `YYYY-MM-DD`; null while not ended.")
    source: dict[str, Any] | None = Field(
        description="{name, record_id, updated_at}: the upstream source and record it was synced from; null when "
        "published through the API."
    )
    created_at: str = Field(description=f"When it was first stored, {_TIME}.")
    updated_at: str = Field(description=f"When it last changed, {_TIME}.")
    history: list[HistoryOut] = Field(description="Every event, oldest first; nothing is deleted.")


class SourceOut(BaseModel):
    name: str = Field(description="The source's name.")
    kind: str = Field(description="`feed`, `snapshot` or `file`.")
    base_url: str | None = Field(description="feed and snapshot sources: the platform's API.")
    path: str | None = Field(description="file sources: the file, relative to ONECHECK_IMPORT_DIR.")
    has_token: bool = Field(description="Whether a bearer token is stored (the token is never returned).")
    interval_seconds: int | None = Field(description="Scheduled every so many seconds; null: on demand only.")
    cursor: str | None = Field(
        description="feed sources: the cursor of the last committed page (resumed from)."
    )
    enabled: bool = Field(description="Whether the scheduler runs it.")
    created_at: str = Field(description=f"When it was registered, {_TIME}.")


class SourcesOut(BaseModel):
    sources: list[SourceOut] = Field(description="Every registered source.")


class CountsOut(BaseModel):
    received: int = Field(
        description="Records read: inserted + updated + unchanged + duplicates + stale + quarantined."
    )
    inserted: int = Field(description="New source records.")
    updated: int = Field(description="Records whose content or status changed.")
    unchanged: int = Field(description="Records with the same content and status as stored.")
    duplicates: int = Field(description="Repeats of a `source_id` within the run.")
    stale: int = Field(description="Records older (`updated_at`) than what is stored; not applied.")
    quarantined: int = Field(description="Records refused (see `GET /v1/quarantine`).")
    ended: int = Field(description="Entries the run ended (not part of the sum).")
    unmapped_legacy: int = Field(
        description="Records counted inserted, updated or unchanged that are kept under a legacy code no alias "
        "maps to a USCC: once per `source_id` and run, never a stale record or a duplicate (not part of the sum)."
    )


class RunOut(BaseModel):
    run_id: str = Field(description="The run's id (opaque).")
    source: str = Field(description="The source's name.")
    status: Literal["running", "succeeded", "failed", "held", "discarded"] = Field(
        description="`running`, `succeeded`, `failed`, `held` (a snapshot that would end too many entries: "
        "confirm or discard it) or `discarded`."
    )
    started_at: str = Field(description=f"When it started, {_TIME}.")
    finished_at: str | None = Field(description=f"When it finished, {_TIME}; null while running.")
    counts: CountsOut = Field(description="What the run did with the records it read.")
    error: str | None = Field(description="A failed run's `<class>: <message>`; else null.")


class RunsOut(BaseModel):
    runs: list[RunOut] = Field(description="The runs, newest first.")


class QuarantinedOut(BaseModel):
    run_id: str = Field(description="The run that refused it.")
    line: int = Field(
        description="The record's number in the run (for files: its line, the header is line 1)."
    )
    raw: Any = Field(
        description="The record as received (id-shaped numbers and names masked without `pii:read`)."
    )
    reason: str = Field(description="Why it was refused, in plain words.")
    rule: str | None = Field(
        description="The failed rule, e.g. `required.subject.code`, `list_type.unknown`."
    )


class QuarantineOut(BaseModel):
    records: list[QuarantinedOut] = Field(description="The quarantined records, by line.")


class SubscriptionOut(BaseModel):
    subscription_id: str = Field(description="The subscription's id (opaque).")
    callback_url: str = Field(description="Where changes are POSTed.")
    subject_codes: list[str] | None = Field(description="Only changes of these subjects; null: all.")
    list_kinds: list[str] | None = Field(
        description="Only changes of these list kinds (red, black, watch); null: all."
    )
    active: bool = Field(description="false once stopped (`DELETE`).")
    created_at: str = Field(description=f"When it was made, {_TIME}.")


class SubscriptionCreatedOut(SubscriptionOut):
    secret: str = Field(description="HMAC key for X-OneCheck-Signature; shown once")


class SubscriptionsOut(BaseModel):
    subscriptions: list[SubscriptionOut] = Field(description="This client's subscriptions.")


class DeliveryOut(BaseModel):
    event_id: str = Field(
        description="The callback's `event_id`: the same on every retry (deduplicate on it)."
    )
    event: str | None = Field(
        description="The change: `published`, `updated`, a lifecycle event, `removed`, `expired`."
    )
    entry_id: str | None = Field(description="The entry that changed.")
    state: Literal["pending", "delivered", "dead"] = Field(
        description="`pending` (to be sent or retried), `delivered` (a 2xx answered) or `dead` (given up on)."
    )
    attempts: int = Field(description="Delivery attempts so far.")
    last_error: str | None = Field(description="Why the last attempt failed; null if none did.")
    created_at: str = Field(description=f"When it was queued, {_TIME}.")
    delivered_at: str | None = Field(description=f"When a 2xx answered, {_TIME}; null until then.")
    next_attempt_at: str | None = Field(description=f"When it is tried next, {_TIME}.")


class DeliveriesOut(BaseModel):
    deliveries: list[DeliveryOut] = Field(description="The callbacks, newest first.")
