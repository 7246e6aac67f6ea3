"""Feedback (反馈), the issuing department's view (发起-响应-反馈) and enforcement statistics.

Choices the contract leaves open, documented in docs/feedback.md:
- A measure reported with the status and note it already has is not a new version (a client may resend its
  whole picture); the submission itself is still recorded.
- `measures` in the status lists every required measure (`awaiting` until reported), then the suspended
  measures that were reported on, with `required: false`; those never count towards `complete`.
- `decision` is the latest submission's.
- The upstream message carries the whole current picture (not only the measures of this submission), so an
  upstream that receives messages out of order keeps the one with the latest `reported_at`. Its
  `subject_code` is not masked: the upstream platform is the government credit platform that published the
  lists and needs the identifier to attribute the feedback to its record (like the provincial 联合奖惩反馈
  interfaces, which carry the code in clear); it goes over https with a bearer token and is never logged.
  A natural person's number is sent as the check kept it: full only if the checking client had `pii:read`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from shared.api.auth import Client
from shared.audit import AuditRecord, record
from shared.codes import SubjectKind, mask_code, mask_name
from shared.errors import NotFound, ValidationFailed
from shared.lifecycle import SHANGHAI, business_date
from shared.outbox import enqueue_conn

from services.feedback import repository as repo
from services.feedback.schemas import (
    DepartmentStats,
    EnforcedMeasure,
    EnforcementCheck,
    EnforcementStats,
    EnforcementTotals,
    EntryEnforcement,
    FeedbackIn,
    FeedbackStatus,
    HistoryItem,
    ItemStats,
    MatchView,
    MeasureFeedback,
    ReasonCount,
    StatsFigures,
    SubjectView,
)

FEEDBACK_TOPIC = "feedback"
# One message for a missing check and for another client's: nothing tells them apart (contract: Object access).
CHECK_NOT_FOUND = "no such check"
ENTRY_NOT_FOUND = "no such entry"
STATUSES = ("applied", "not_applied", "not_applicable")


@dataclass(frozen=True, slots=True)
class RequestInfo:
    method: str
    path: str
    request_id: str | None


def _local(at: dt.datetime) -> dt.datetime:
    """Times are answered with the Asia/Shanghai offset, like the check itself."""
    return at.astimezone(SHANGHAI)


# --------------------------------------------------------------------------------------------- feedback


def _validate_codes(check: asyncpg.Record, body: FeedbackIn) -> None:
    required = set(check["measure_codes"])
    suspended = set(check["suspended_codes"])
    withheld = set(check["withheld_codes"])
    errors: list[dict[str, Any]] = []
    for index, report in enumerate(body.measures):
        if report.code in required or report.code in suspended:
            continue
        why = (
            f"{report.code} is a withheld incentive of this check; it takes no feedback"
            if report.code in withheld
            else f"{report.code} is not a measure of this check"
        )
        errors.append({"loc": ["body", "measures", index, "code"], "msg": why})
    if errors:
        unknown = ", ".join(str(e["msg"]).split(" ", 1)[0] for e in errors)
        raise ValidationFailed(
            f"measure codes not among this check's measures or suspended measures: {unknown}", errors=errors
        )


def _summary(
    check: asyncpg.Record, decision: str, current: dict[str, tuple[str, str | None]]
) -> repo.Summary:
    required = list(check["measure_codes"])
    counts = dict.fromkeys(STATUSES, 0)
    for code in required:
        if code in current:
            counts[current[code][0]] += 1
    return repo.Summary(
        statuses={
            code: {"status": status, "note": note, "required": code in required}
            for code, (status, note) in current.items()
        },
        decision=decision,
        complete=all(code in current for code in required),
        required_count=len(required),
        applied=counts["applied"],
        not_applied=counts["not_applied"],
        not_applicable=counts["not_applicable"],
        feedback_due_on=check["feedback_due_on"],
    )


def _upstream_payload(
    check: asyncpg.Record,
    *,
    submission_id: uuid.UUID,
    decision: str,
    operator: str,
    reported_at: dt.datetime,
    latest: dict[str, dict[str, Any]],
    complete: bool,
) -> dict[str, Any]:
    """The contract's upstream body, plus `submission_id`, `operator`, `complete` and per-measure details."""
    required = list(check["measure_codes"])
    order = required + [c for c in check["suspended_codes"] if c not in required]
    subject_code = check["response_subject_code"] or check["subject_code"]
    return {
        "check_id": str(check["check_id"]),
        "item_code": check["item_code"],
        "department": check["department"],
        "subject_code": subject_code,
        "subject_kind": check["subject_kind"],
        "decision": decision,
        "measures": [
            {
                "code": code,
                "status": latest[code]["status"],
                "note": latest[code]["note"],
                "required": code in required,
                "operator": latest[code]["operator"],
                "reported_at": _local(latest[code]["reported_at"]).isoformat(),
            }
            for code in order
            if code in latest
        ],
        "complete": complete,
        "operator": operator,
        "submission_id": str(submission_id),
        "reported_at": _local(reported_at).isoformat(),
    }


async def submit_feedback(
    conn: asyncpg.Connection,
    *,
    client: Client,
    check_id: uuid.UUID | None,
    body: FeedbackIn,
    request: RequestInfo,
) -> FeedbackStatus:
    """Record a submission: new versions, the summary, the upstream message and the audit row, in one
    transaction, committed before the answer is built."""
    async with conn.transaction():
        check = None
        if check_id is not None:
            check = await repo.fetch_own_check(conn, check_id=check_id, client_id=client.client_id)
        if check is None:
            raise NotFound(CHECK_NOT_FOUND)
        _validate_codes(check, body)
        previous_decision, now = await repo.lock_summary(conn, check)
        current = await repo.current_versions(conn, check["check_id"])
        versions = [
            repo.Version(m.code, m.status, m.note)
            for m in body.measures
            if m.code not in current
            or (current[m.code]["status"], current[m.code]["note"]) != (m.status, m.note)
        ]
        submission_id = uuid.uuid4()
        await repo.insert_submission(
            conn,
            submission_id=submission_id,
            check_id=check["check_id"],
            client_id=client.client_id,
            decision=body.decision,
            operator=body.operator,
            reported_at=now,
            versions=versions,
        )
        latest: dict[str, dict[str, Any]] = {
            code: {
                "status": r["status"],
                "note": r["note"],
                "operator": r["operator"],
                "reported_at": r["reported_at"],
            }
            for code, r in current.items()
        }
        for v in versions:
            latest[v.code] = {
                "status": v.status,
                "note": v.note,
                "operator": body.operator,
                "reported_at": now,
            }
        summary = _summary(
            check, body.decision, {code: (v["status"], v["note"]) for code, v in latest.items()}
        )
        await repo.update_summary(conn, check["check_id"], summary, now)
        changed = bool(versions) or previous_decision != body.decision
        message_id = None
        if changed:
            message_id = await enqueue_conn(
                conn,
                topic=FEEDBACK_TOPIC,
                payload=_upstream_payload(
                    check,
                    submission_id=submission_id,
                    decision=body.decision,
                    operator=body.operator,
                    reported_at=now,
                    latest=latest,
                    complete=summary.complete,
                ),
            )
        await record(
            conn,
            AuditRecord(
                client_id=client.client_id,
                department=client.department,
                action="feedback.submit",
                operator=body.operator,
                method=request.method,
                path=request.path,
                status=200,
                item_code=check["item_code"],
                subject_masked=mask_code(check["subject_code"], check["subject_kind"]),
                subject_hmac=check["subject_hmac"],
                object_id=str(check["check_id"]),
                request_id=request.request_id,
                detail={
                    "submission_id": str(submission_id),
                    "decision": body.decision,
                    "versions": [{"code": v.code, "status": v.status} for v in versions],
                    "outbox_message_id": str(message_id) if message_id else None,
                },
            ),
        )
    return await _status(conn, check)


async def feedback_status(
    conn: asyncpg.Connection, *, client: Client, check_id: uuid.UUID | None
) -> FeedbackStatus:
    check = None
    if check_id is not None:
        check = await repo.fetch_own_check(conn, check_id=check_id, client_id=client.client_id)
    if check is None:
        raise NotFound(CHECK_NOT_FOUND)
    return await _status(conn, check)


def _is_overdue(complete: bool, due_on: dt.date | None, today: dt.date) -> bool:
    return not complete and due_on is not None and today > due_on


async def _status(conn: asyncpg.Connection, check: asyncpg.Record) -> FeedbackStatus:
    rows = await repo.history(conn, check["check_id"])
    decision = await repo.decision(conn, check["check_id"])
    by_code: dict[str, list[HistoryItem]] = {}
    for r in rows:
        by_code.setdefault(r["measure_code"], []).append(
            HistoryItem(
                status=r["status"],
                note=r["note"],
                operator=r["operator"],
                reported_at=_local(r["reported_at"]),
            )
        )
    required = list(check["measure_codes"])
    suspended = [c for c in check["suspended_codes"] if c not in required and c in by_code]
    measures = []
    for code in required + suspended:
        versions = by_code.get(code, [])
        last = versions[-1] if versions else None
        measures.append(
            MeasureFeedback(
                code=code,
                status=last.status if last else "awaiting",
                note=last.note if last else None,
                operator=last.operator if last else None,
                reported_at=last.reported_at if last else None,
                history=versions,
                required=code in required,
            )
        )
    complete = all(code in by_code for code in required)
    return FeedbackStatus(
        check_id=str(check["check_id"]),
        decision=decision,
        complete=complete,
        feedback_due_on=check["feedback_due_on"],
        overdue=_is_overdue(complete, check["feedback_due_on"], business_date()),
        measures=measures,
    )


async def audit_refusal(
    conn: asyncpg.Connection,
    *,
    client: Client,
    action: str,
    status: int,
    object_id: str,
    request: RequestInfo,
    operator: str | None = None,
) -> None:
    """An audit row for a refused request (a probe for another client's ids shows up here)."""
    await record(
        conn,
        AuditRecord(
            client_id=client.client_id,
            department=client.department,
            action=action,
            operator=operator,
            method=request.method,
            path=request.path,
            status=status,
            object_id=object_id,
            request_id=request.request_id,
        ),
    )


# ------------------------------------------------------------------------------------------ enforcement


def _subject_view(code: str, kind: str, name: str | None, *, pii: bool) -> SubjectView:
    person = kind == SubjectKind.CITIZEN_ID
    if person and not pii:
        return SubjectView(code=mask_code(code, kind), kind=kind, name=mask_name(name) if name else name)
    return SubjectView(code=code, kind=kind, name=name)


def _check_subject(row: asyncpg.Record, *, pii: bool) -> SubjectView:
    given = row["response_subject"] or {}
    kind = str(given.get("kind") or row["subject_kind"])
    # checks.subject_code is masked for natural persons; the answer kept in `response` has the full one.
    code = str(given.get("code") or row["subject_code"]) if pii else row["subject_code"]
    return _subject_view(code, kind, given.get("name"), pii=pii)


def _matched_code(match: asyncpg.Record, row: asyncpg.Record, entry_id: uuid.UUID, *, pii: bool) -> str:
    person = match["via"] != "subject" or row["subject_kind"] == SubjectKind.CITIZEN_ID
    if not pii:
        return mask_code(match["matched_code"], SubjectKind.CITIZEN_ID) if person else match["matched_code"]
    for answered in row["response_matches"] or []:
        if (
            str(answered.get("entry_id")) == str(entry_id)
            and answered.get("via") == match["via"]
            and answered.get("matched_code")
        ):
            return str(answered["matched_code"])
    return str(match["matched_code"])


async def entry_enforcement(
    conn: asyncpg.Connection,
    *,
    client: Client,
    entry_id: uuid.UUID | None,
    cursor: uuid.UUID | None,
    limit: int,
    request: RequestInfo,
) -> EntryEnforcement:
    entry = None
    if entry_id is not None:
        entry = await repo.fetch_department_entry(conn, entry_id=entry_id, department=client.department)
    if entry is None:
        raise NotFound(ENTRY_NOT_FOUND)
    pii = client.sees_pii
    found = await repo.entry_checks(conn, entry_id=entry["entry_id"], after=cursor, limit=limit, with_pii=pii)
    today = business_date()
    matches: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for m in found.matches:
        matches.setdefault(m["check_id"], []).append(m)
    measures: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for m in found.measures:
        measures.setdefault(m["check_id"], []).append(m)
    latest = {(r["check_id"], r["measure_code"]): r for r in found.latest}

    checks = []
    for row in found.checks:
        cid = row["check_id"]
        complete = all((cid, code) in latest for code in row["measure_codes"])
        enforced = []
        for m in measures.get(cid, []):
            fb = latest.get((cid, m["measure_code"])) if m["disposition"] != "withheld" else None
            status: str | None = fb["status"] if fb else None
            if status is None and m["disposition"] == "required":
                status = "awaiting"
            enforced.append(
                EnforcedMeasure(
                    code=m["measure_code"],
                    disposition=m["disposition"],
                    kind=m["kind"],
                    mandatory=m["mandatory"],
                    target=m["target"],
                    status=status,
                    note=fb["note"] if fb else None,
                    operator=fb["operator"] if fb else None,
                    reported_at=_local(fb["reported_at"]) if fb else None,
                )
            )
        checks.append(
            EnforcementCheck(
                check_id=str(cid),
                checked_at=_local(row["checked_at"]),
                check_date=row["check_date"],
                item_code=row["item_code"],
                item_department=row["item_department"],
                department=row["department"],
                business_ref=row["business_ref"],
                subject=_check_subject(row, pii=pii),
                outcome=row["outcome"],
                matches=[
                    MatchView(
                        via=m["via"],
                        matched_code=_matched_code(m, row, entry["entry_id"], pii=pii),
                        matched_role=m["matched_role"],
                        entry_status=m["entry_status"],
                    )
                    for m in matches.get(cid, [])
                ],
                decision=row["decision"],
                complete=complete,
                feedback_due_on=row["feedback_due_on"],
                overdue=_is_overdue(complete, row["feedback_due_on"], today),
                measures=enforced,
            )
        )
    totals = found.totals
    assert totals is not None
    await record(
        conn,
        AuditRecord(
            client_id=client.client_id,
            department=client.department,
            action="entry.enforcement.read",
            method=request.method,
            path=request.path,
            status=200,
            subject_masked=mask_code(entry["subject_code"], entry["subject_kind"]),
            object_id=str(entry["entry_id"]),
            request_id=request.request_id,
            detail={"checks": len(checks), "pii": pii},
        ),
    )
    return EntryEnforcement(
        entry_id=str(entry["entry_id"]),
        list_type=entry["list_type"],
        issuing_department=entry["issuing_department"],
        subject=_subject_view(entry["subject_code"], entry["subject_kind"], entry["subject_name"], pii=pii),
        totals=EnforcementTotals(**{k: int(totals[k]) for k in EnforcementTotals.model_fields}),
        checks=checks,
        next_cursor=checks[-1].check_id if len(checks) == limit else None,
    )


# ------------------------------------------------------------------------------------------- statistics

_FIGURES = tuple(StatsFigures.model_fields)
_MEASURE_FIGURES = ("required_measures", "applied", "not_applied", "not_applicable")


def _add(into: dict[str, int], figures: dict[str, int]) -> None:
    for k, v in figures.items():
        into[k] = into.get(k, 0) + v


def _zero() -> dict[str, int]:
    return dict.fromkeys(_FIGURES, 0)


async def enforcement_stats(conn: asyncpg.Connection, *, f: repo.StatsFilter) -> EnforcementStats:
    if f.date_from is not None and f.date_to is not None and f.date_from > f.date_to:
        raise ValidationFailed(
            "`from` is after `to`",
            errors=[{"loc": ["query", "from"], "msg": "must not be after `to`"}],
        )
    # One row per (department, item), summed here into the totals and both breakdowns.
    cells: dict[tuple[str, str], dict[str, int]] = {
        (r["department"], r["item_code"]): {k: int(r[k]) for k in _FIGURES}
        for r in await repo.stats_check_figures(conn, f, today=business_date())
    }
    if f.list_type is not None:
        # Measures of these checks that other list types triggered are not this list type's enforcement.
        for cell in cells.values():
            cell.update(dict.fromkeys(_MEASURE_FIGURES, 0))
        for r in await repo.stats_list_type_measures(conn, f):
            cell = cells.setdefault((r["department"], r["item_code"]), _zero())
            cell.update({k: int(r[k]) for k in _MEASURE_FIGURES})
    totals = _zero()
    by_department: dict[str, dict[str, int]] = {}
    by_item: dict[str, dict[str, int]] = {}
    for (department, item), cell in cells.items():
        _add(totals, cell)
        _add(by_department.setdefault(department, _zero()), cell)
        _add(by_item.setdefault(item, _zero()), cell)
    reasons = await repo.stats_not_applied_reasons(conn, f)
    names = await repo.item_names(conn, sorted(by_item))

    def most_checks_first(groups: dict[str, dict[str, int]]) -> list[tuple[str, dict[str, int]]]:
        return sorted(groups.items(), key=lambda kv: (-kv[1]["checks"], kv[0]))

    return EnforcementStats(
        totals=StatsFigures(**totals),
        by_department=[DepartmentStats(department=d, **v) for d, v in most_checks_first(by_department)],
        by_item=[ItemStats(item_code=i, item_name=names.get(i), **v) for i, v in most_checks_first(by_item)],
        not_applied_reasons=[ReasonCount(reason=r["reason"], count=r["n"]) for r in reasons],
    )
