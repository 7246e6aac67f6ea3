"""The one-click check (信用核查): rules of the contract's check-api section, as plain functions.

A check is two database round trips whatever the number of subjects: `repository.fetch_matches` (entries,
the clean-record aggregate, data versions) and `repository.insert_checks` (the records and audit rows). The
catalogue comes from the per-process cache. `evaluate` is pure: the rules live there and are tested there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from shared import audit
from shared.api.auth import Client, ensure_item_department
from shared.api.idempotency import StoredAnswer, canonical_hash
from shared.api.problems import problem_body
from shared.audit import AuditRecord, subject_fields
from shared.codes import (
    AmbiguousSubjectCode,
    SubjectCode,
    SubjectCodeError,
    SubjectKind,
    mask_citizen_id,
    mask_name,
    normalise,
)
from shared.db.engine import Database
from shared.errors import AmbiguousSubjectCodeError, InvalidSubjectCode, NotFound, OneCheckError, UnknownItem
from shared.ids import uuid7, uuid7_time
from shared.lifecycle import SHANGHAI, business_date
from shared.settings import Settings

from services.check_api import repository
from services.check_api.catalogue_cache import Catalogue, CatalogueCache, Item
from services.check_api.report import render_report
from services.check_api.repository import CheckRows, SubjectQuery, SubjectRecord
from services.check_api.schemas import BatchSubjectIn, RelatedPersonIn, SubjectIn

SUSPENDED_REASON = "核实期间暂不执行"
WITHHELD_REASON = "主体存在有效的失信联合惩戒对象名单（黑名单）记录，激励措施暂不适用"
MAX_CLEAN_YEARS = 3
# Which target a measure applies under when several triggers reach it: the subject's own first.
_TARGET_PRIORITY = ("entity", "natural_person", "responsible_person")
_NOT_FOUND_DETAIL = "no check with this id"


# --- input -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreparedSubject:
    code: SubjectCode
    name: str | None
    persons: tuple[tuple[str, str], ...]  # (normalised citizen id, role), one per person
    request: dict[str, Any]  # what the request said about this subject, for `request_hash`


def _code_error(loc: Sequence[str | int], error: SubjectCodeError) -> dict[str, Any]:
    return {"loc": list(loc), "msg": error.message, "rule": error.rule}


def prepare_subject(
    *,
    code: str,
    kind: str | None,
    name: str | None,
    related_persons: Sequence[RelatedPersonIn],
    today: dt.date,
    code_loc: Sequence[str | int],
    persons_loc: Sequence[str | int],
    request: dict[str, Any],
) -> PreparedSubject:
    """Normalise and validate the subject's code and its related persons' citizen IDs.

    Raises InvalidSubjectCode listing every bad code (subject and persons), else AmbiguousSubjectCodeError.
    """
    errors: list[dict[str, Any]] = []
    subject: SubjectCode | None = None
    ambiguous: AmbiguousSubjectCode | None = None
    try:
        subject = normalise(code, kind, today=today)
    except SubjectCodeError as exc:
        errors.append(_code_error(code_loc, exc))
    except AmbiguousSubjectCode as exc:
        ambiguous = exc
    persons: dict[str, str] = {}
    for i, person in enumerate(related_persons):
        try:
            normalised = normalise(person.code, SubjectKind.CITIZEN_ID, today=today)
        except SubjectCodeError as exc:
            errors.append(_code_error([*persons_loc, i, "code"], exc))
            continue
        # One person given twice (two roles) is checked once, under the first role given.
        persons.setdefault(normalised.code, person.role)
    if errors:
        raise InvalidSubjectCode(
            "a subject code fails the rules of its kind"
            if len(errors) == 1
            else "subject codes fail their rules",
            errors=errors,
        )
    if ambiguous is not None:
        raise AmbiguousSubjectCodeError(
            ambiguous.message, extra={"kinds": [str(k) for k in ambiguous.kinds], "loc": list(code_loc)}
        )
    assert subject is not None
    return PreparedSubject(subject, name, tuple(persons.items()), request)


# --- the rules -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Trigger:
    entry_id: str
    status: str
    list_type: str
    target: str


@dataclass(slots=True)
class Evaluation:
    outcome: str
    matches: list[dict[str, Any]]
    measures: list[dict[str, Any]]
    suspended: list[dict[str, Any]]
    withheld: list[dict[str, Any]]
    clean_record_years: int
    feedback_due_on: dt.date | None
    # check_measures rows without the check's keys: (code, disposition, kind, mandatory, target, ids, list types)
    measure_rows: list[dict[str, Any]]


def whole_years(start: dt.date, end: dt.date) -> int:
    """Whole calendar years from `start` to `end` (as an age is counted)."""
    return end.year - start.year - ((end.month, end.day) < (start.month, start.day))


def clean_record_years(record: SubjectRecord, check_date: dt.date) -> int:
    if record.record_in_effect:
        return 0
    if record.last_end is None:
        return MAX_CLEAN_YEARS
    return min(MAX_CLEAN_YEARS, max(0, whole_years(record.last_end, check_date)))


def _match_target(match: dict[str, Any], subject_kind: str) -> str:
    if match["via"] == "subject":
        return "natural_person" if subject_kind == SubjectKind.CITIZEN_ID else "entity"
    return "responsible_person"


def _match_body(match: dict[str, Any]) -> dict[str, Any]:
    return {
        "entry_id": match["entry_id"],
        "via": match["via"],
        "matched_code": match["matched_code"],
        "matched_role": match["matched_role"],
        "list": {"code": match["list_type"], "name": match["list_name"], "kind": match["list_kind"]},
        "subject_code": match["subject_code"],
        "subject_name": match["subject_name"],
        "reason": match["reason"],
        "issuing_department": match["issuing_department"],
        "decision_no": match["decision_no"],
        "listed_on": match["listed_on"],
        "expires_on": match["expires_on"],
        "status": match["status"],
    }


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _measure_body(catalogue: Catalogue, code: str, triggers: Sequence[_Trigger]) -> dict[str, Any]:
    view = catalogue.measure_view(code)
    targets = {t.target for t in triggers}
    target = next(t for t in _TARGET_PRIORITY if t in targets)
    # Contract order first (code, kind, category, content, mandatory, target, legal_basis, memorandum).
    body = {
        "code": view["code"],
        "kind": view["kind"],
        "category": view["category"],
        "content": view["content"],
        "mandatory": view["mandatory"],
        "target": target,
        "legal_basis": view["legal_basis"],
        "memorandum": view["memorandum"],
    }
    body.update(view)
    return body


def evaluate(
    catalogue: Catalogue,
    item: Item,
    record: SubjectRecord,
    *,
    check_date: dt.date,
    feedback_due_days: int,
) -> Evaluation:
    """Measures, dispositions, outcome and clean record of one subject's matches (no I/O)."""
    item_mapping = catalogue.mappings.get(item.code, {})
    triggers: dict[str, list[_Trigger]] = {}
    for match in record.matches:
        target = _match_target(match, record.kind)
        for mapped in item_mapping.get(match["list_type"], ()):
            if target in mapped.targets and mapped.measure in catalogue.measures:
                triggers.setdefault(mapped.measure, []).append(
                    _Trigger(match["entry_id"], match["status"], match["list_type"], target)
                )
    blockers = _unique(
        [m["entry_id"] for m in record.matches if m["list_kind"] == "black" and m["status"] == "active"]
    )

    measures: list[dict[str, Any]] = []
    suspended: list[dict[str, Any]] = []
    withheld: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for code in sorted(triggers):
        active = [t for t in triggers[code] if t.status == "active"]
        pending = [t for t in triggers[code] if t.status == "objection_pending"]
        if active:
            # An entry under objection adds nothing to a measure another, active entry requires anyway.
            body = _measure_body(catalogue, code, active)
            ids = _unique([t.entry_id for t in active])
            if body["kind"] == "incentive" and blockers:
                body.update(triggered_by=ids, reason=WITHHELD_REASON, blocked_by=blockers)
                withheld.append(body)
                disposition = "withheld"
            else:
                body["triggered_by"] = ids
                measures.append(body)
                disposition = "required"
            used = active
        else:
            body = _measure_body(catalogue, code, pending)
            ids = _unique([t.entry_id for t in pending])
            body.update(reason=SUSPENDED_REASON, blocked_by=ids)
            suspended.append(body)
            disposition = "suspended"
            used = pending
        rows.append(
            {
                "measure_code": code,
                "disposition": disposition,
                "kind": body["kind"],
                "mandatory": body["mandatory"],
                "target": body["target"],
                "triggered_by": ids,
                "list_types": sorted({t.list_type for t in used}),
            }
        )

    if not record.matches:
        outcome = "clear"
    elif not measures:
        outcome = "review"
    else:
        kinds = {m["kind"] for m in measures}
        outcome = "mixed" if len(kinds) == 2 else ("incentive" if kinds == {"incentive"} else "penalty")
    return Evaluation(
        outcome=outcome,
        matches=[_match_body(m) for m in record.matches],
        measures=measures,
        suspended=suspended,
        withheld=withheld,
        clean_record_years=clean_record_years(record, check_date),
        feedback_due_on=check_date + dt.timedelta(days=feedback_due_days) if measures else None,
        measure_rows=rows,
    )


# --- personal data ---------------------------------------------------------------------------------------


def _mask_match(match: dict[str, Any], person_subject: bool) -> dict[str, Any]:
    via = match["via"]
    # related_person / responsible_person: the matched code is always a natural person's.
    code_personal = via != "subject" or person_subject
    # The entry's own subject is a natural person for related_person matches and a person's subject match;
    # responsible_person matches are organisations' entries.
    entry_personal = via == "related_person" or (via == "subject" and person_subject)
    if not (code_personal or entry_personal):
        return match
    out = dict(match)
    if code_personal:
        out["matched_code"] = mask_citizen_id(match["matched_code"])
    if entry_personal:
        out["subject_code"] = mask_citizen_id(match["subject_code"])
        out["subject_name"] = mask_name(match["subject_name"])
    return out


def mask_check_body(body: dict[str, Any]) -> dict[str, Any]:
    """The body as a client without `pii:read` sees it (idempotent: masking a masked body changes nothing)."""
    subject = body["subject"]
    person_subject = subject["kind"] == SubjectKind.CITIZEN_ID
    out = dict(body)
    if person_subject:
        out["subject"] = {
            **subject,
            "code": mask_citizen_id(subject["code"]),
            "given_code": mask_citizen_id(subject["given_code"].strip()),
            "name": mask_name(subject["name"]) if subject["name"] is not None else None,
        }
    out["matches"] = [_mask_match(m, person_subject) for m in body["matches"]]
    return out


def dumps(body: Any) -> str:
    """The answer's JSON text: compact UTF-8, as Starlette's JSONResponse renders it. orjson, because this
    runs once per check (for a batch, per subject) and the stdlib encoder was a visible share of a check."""
    return orjson.dumps(body).decode()


# --- running checks --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckContext:
    client: Client
    item_code: str
    operator: str
    business_ref: str
    path: str
    request_id: str | None
    settings: Settings


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer as this client sees it: the body, and its JSON text exactly as stored and sent (rendered once)."""

    body: dict[str, Any]
    text: str


def now_ms() -> dt.datetime:
    # Milliseconds: the precision a UUIDv7 keeps, so the id and `checked_at` agree exactly.
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


async def resolve_item(
    conn: asyncpg.Connection, cache: CatalogueCache, client: Client, code: str
) -> Catalogue:
    """The catalogue holding `code` (404 unknown_item), after the department rule (403)."""
    catalogue = await cache.get(conn)
    if code not in catalogue.items:
        # It may have been imported since this process loaded the catalogue.
        catalogue = await cache.fresh(conn)
    item = catalogue.items.get(code)
    if item is None:
        raise UnknownItem(f"the catalogue has no item {code[:64]!r}")
    ensure_item_department(client, item.department)
    return catalogue


async def run_checks(
    conn: asyncpg.Connection,
    cache: CatalogueCache,
    catalogue: Catalogue,
    ctx: CheckContext,
    subjects: Sequence[PreparedSubject],
    *,
    checked_at: dt.datetime,
    batch_id: uuid.UUID | None,
) -> list[Answer]:
    """Match, evaluate, store and audit `subjects`; returns each check as this client sees it."""
    if not subjects:
        return []
    check_date = business_date(checked_at)
    records = await repository.fetch_matches(
        conn,
        [SubjectQuery(s.code.code, s.code.kind.value, s.persons) for s in subjects],
        check_date,
    )
    if records[0].catalogue_version != catalogue.version:
        # An import landed since the cache was filled: reload. The reload reads the catalogue as it is now,
        # which may be newer still than the version the match query saw; the answer and the stored check name
        # the version actually used (below), never one the measures did not come from.
        catalogue = await cache.at_version(conn, records[0].catalogue_version)
        if ctx.item_code not in catalogue.items:
            raise UnknownItem(f"the catalogue has no item {ctx.item_code[:64]!r}")
        ensure_item_department(ctx.client, catalogue.items[ctx.item_code].department)
    item = catalogue.items[ctx.item_code]
    catalogue_version = str(catalogue.version)
    hmac_key = ctx.settings.pii_hmac_key.get_secret_value().encode()
    checked_at_text = checked_at.astimezone(SHANGHAI).isoformat(timespec="milliseconds")
    item_ref = {"code": item.code, "name": item.name, "department": item.department}
    rows = CheckRows()
    answers: list[Answer] = []
    for subject, record in zip(subjects, records, strict=True):
        check_id = uuid7(checked_at)
        result = evaluate(
            catalogue, item, record, check_date=check_date, feedback_due_days=ctx.settings.feedback_due_days
        )
        body: dict[str, Any] = {
            "check_id": str(check_id),
            "checked_at": checked_at_text,
            "item": item_ref,
            "subject": {
                "code": record.code,
                "given_code": subject.code.given,
                "kind": record.kind,
                "given_kind": subject.code.kind.value,
                "name": subject.name,
            },
            "outcome": result.outcome,
            "matches": result.matches,
            "measures": result.measures,
            "suspended_measures": result.suspended,
            "withheld_incentives": result.withheld,
            "clean_record_years": result.clean_record_years,
            "data_version": {"lists": str(record.lists_version), "catalogue": catalogue_version},
            "feedback_due_on": result.feedback_due_on.isoformat() if result.feedback_due_on else None,
        }
        view = body if ctx.client.sees_pii else mask_check_body(body)
        answer = Answer(view, dumps(view))
        answers.append(answer)
        _add_rows(rows, answer, result, record, subject, check_id, hmac_key)
    header = repository.CheckHeader(
        checked_at=checked_at,
        check_date=check_date,
        client_id=ctx.client.client_id,
        department=ctx.client.department,
        item_code=item.code,
        item_department=item.department,
        operator=ctx.operator,
        business_ref=ctx.business_ref,
        batch_id=batch_id,
        lists_version=records[0].lists_version,
        catalogue_version=catalogue.version,
        path=ctx.path,
        request_id=ctx.request_id,
    )
    await repository.insert_checks(conn, header, rows)
    return answers


def _add_rows(
    rows: CheckRows,
    answer: Answer,
    result: Evaluation,
    record: SubjectRecord,
    subject: PreparedSubject,
    check_id: uuid.UUID,
    hmac_key: bytes,
) -> None:
    masked_subject, subject_hmac = subject_fields(record.code, record.kind, hmac_key)
    literal = repository.array_literal
    rows.checks.append(
        (
            check_id,
            masked_subject,
            record.kind,
            subject_hmac,
            canonical_hash(subject.request),
            result.outcome,
            len(result.matches),
            literal(_unique([m["entry_id"] for m in result.matches])),
            literal([m["code"] for m in result.measures]),
            literal([m["code"] for m in result.suspended]),
            literal([m["code"] for m in result.withheld]),
            literal(sorted({m["list"]["code"] for m in result.matches})),
            result.feedback_due_on,
            answer.text,
        )
    )
    person_subject = record.kind == SubjectKind.CITIZEN_ID
    for match in result.matches:
        personal = match["via"] != "subject" or person_subject
        rows.matches.append(
            (
                check_id,
                match["entry_id"],
                match["list"]["code"],
                match["list"]["kind"],
                match["issuing_department"],
                match["via"],
                mask_citizen_id(match["matched_code"]) if personal else match["matched_code"],
                match["matched_role"],
                match["status"],
            )
        )
    for row in result.measure_rows:
        rows.measures.append(
            (
                check_id,
                row["measure_code"],
                row["disposition"],
                row["kind"],
                row["mandatory"],
                row["target"],
                literal(row["triggered_by"]),
                literal(row["list_types"]),
            )
        )


def _subject_request(
    subject: SubjectIn | BatchSubjectIn, related: Sequence[RelatedPersonIn]
) -> dict[str, Any]:
    return {
        "code": subject.code,
        "kind": subject.kind,
        "name": subject.name,
        "related_persons": [p.model_dump() for p in related],
    }


async def create_check(
    db: Database,
    cache: CatalogueCache,
    ctx: CheckContext,
    *,
    subject: SubjectIn,
    related_persons: Sequence[RelatedPersonIn],
) -> Answer:
    """POST /v1/checks: one subject; errors raise (404 unknown_item, 403, 422 codes)."""
    checked_at = now_ms()
    async with db.connection() as conn:
        catalogue = await resolve_item(conn, cache, ctx.client, ctx.item_code)
        prepared = prepare_subject(
            code=subject.code,
            kind=subject.kind,
            name=subject.name,
            related_persons=related_persons,
            today=business_date(checked_at),
            code_loc=["body", "subject", "code"],
            persons_loc=["body", "related_persons"],
            request={
                "item_code": ctx.item_code,
                "business_ref": ctx.business_ref,
                "operator": ctx.operator,
                "subject": _subject_request(subject, related_persons),
            },
        )
        (answer,) = await run_checks(
            conn, cache, catalogue, ctx, [prepared], checked_at=checked_at, batch_id=None
        )
    return answer


async def create_batch(
    db: Database, cache: CatalogueCache, ctx: CheckContext, *, subjects: Sequence[BatchSubjectIn]
) -> Answer:
    """POST /v1/checks/batch: every valid subject checked with one match query and one insert."""
    checked_at = now_ms()
    today = business_date(checked_at)
    batch_id = uuid7(checked_at)
    results: list[Answer | None] = [None] * len(subjects)
    prepared: list[PreparedSubject] = []
    positions: list[int] = []
    refused: list[AuditRecord] = []
    async with db.connection() as conn:
        catalogue = await resolve_item(conn, cache, ctx.client, ctx.item_code)
        for i, subject in enumerate(subjects):
            try:
                prepared.append(
                    prepare_subject(
                        code=subject.code,
                        kind=subject.kind,
                        name=subject.name,
                        related_persons=subject.related_persons,
                        today=today,
                        code_loc=["body", "subjects", i, "code"],
                        persons_loc=["body", "subjects", i, "related_persons"],
                        request={
                            "item_code": ctx.item_code,
                            "business_ref": ctx.business_ref,
                            "operator": ctx.operator,
                            "subject": _subject_request(subject, subject.related_persons),
                        },
                    )
                )
                positions.append(i)
            except OneCheckError as exc:
                problem = problem_body(exc)
                results[i] = Answer(problem, dumps(problem))
                refused.append(refusal_record(ctx, exc, subject=subject, batch_id=batch_id))
        answers = await run_checks(
            conn, cache, catalogue, ctx, prepared, checked_at=checked_at, batch_id=batch_id
        )
        await audit.record_many(conn, refused)  # no round trip when every subject was checked
    for position, answer in zip(positions, answers, strict=True):
        results[position] = answer
    done = [r for r in results if r is not None]
    # The stored texts are spliced in as they are: 1,000 bodies are not serialised a second time.
    text = '{"batch_id":"' + str(batch_id) + '","results":[' + ",".join(r.text for r in done) + "]}"
    return Answer({"batch_id": str(batch_id), "results": [r.body for r in done]}, text)


# --- refused checks (the error path only) ----------------------------------------------------------------


def _refused_subject(code: str, kind: str | None, hmac_key: bytes) -> tuple[str, str | None]:
    """(masked code, HMAC or None) of a subject whose check was refused. A code that is not a valid code of
    another kind may be somebody's mistyped citizen id: it is masked as one (failing closed), without HMAC."""
    try:
        subject = normalise(code, kind)
    except (SubjectCodeError, AmbiguousSubjectCode):
        return mask_citizen_id(code.strip()), None
    return subject_fields(subject.code, subject.kind, hmac_key)


def refusal_record(
    ctx: CheckContext,
    error: OneCheckError,
    *,
    subject: SubjectIn | BatchSubjectIn | None,
    batch_id: uuid.UUID | None = None,
    subjects: int | None = None,
) -> AuditRecord:
    """The audit row of a check refused with `error` (P2: one row per request, failures included): the
    subject masked like any check's (never a raw id, never a name), or none for a whole refused batch."""
    masked, digest = None, None
    if subject is not None:
        masked, digest = _refused_subject(
            subject.code, subject.kind, ctx.settings.pii_hmac_key.get_secret_value().encode()
        )
    detail: dict[str, Any] = {"business_ref": ctx.business_ref, "code": error.code}
    if batch_id is not None:
        detail["batch_id"] = str(batch_id)
    if subjects is not None:
        detail["subjects"] = subjects
    return AuditRecord(
        client_id=ctx.client.client_id,
        department=ctx.client.department,
        action="check.create",
        operator=ctx.operator,
        method="POST",
        path=ctx.path,
        status=error.status,
        item_code=ctx.item_code,
        subject_masked=masked,
        subject_hmac=digest,
        request_id=ctx.request_id,
        detail=detail,
    )


async def audit_refused_check(
    db: Database,
    ctx: CheckContext,
    error: OneCheckError,
    *,
    subject: SubjectIn | None = None,
    subjects: int | None = None,
) -> None:
    """Record a refused `POST /v1/checks` (a subject) or `POST /v1/checks/batch` (the number of subjects)."""
    async with db.connection() as conn:
        await audit.record(conn, refusal_record(ctx, error, subject=subject, subjects=subjects))


# --- idempotent replays (not the hot path: a replay stores no check) -------------------------------------


async def replay_checks(db: Database, ctx: CheckContext, stored: StoredAnswer, *, batch: bool) -> str:
    """The `on_replay` of POST /v1/checks (`batch=False`) and /v1/checks/batch: audits the replay, one
    `check.replay` row per check it shows again (the subject masked as stored; a batch whose every result
    was refused gets one row for the batch), and answers the stored body as the client may see it now:
    masked if it lacks `pii:read`, even if it had it when first answered."""
    body: dict[str, Any] = json.loads(stored.body)
    checks = [r for r in body["results"] if "check_id" in r] if batch else [body]
    ids = [uuid.UUID(c["check_id"]) for c in checks]
    times = [uuid7_time(i) for i in ids]
    async with db.connection() as conn:
        written = 0
        if ids:
            written = await repository.audit_replay(
                conn,
                ids,
                ctx.client.client_id,
                between=(min(times), max(times)),
                department=ctx.client.department,
                path=ctx.path,
                status=stored.status,
                request_id=ctx.request_id,
            )
        if written == 0:
            detail: dict[str, Any] = {"business_ref": ctx.business_ref}
            if batch:
                detail["batch_id"] = body.get("batch_id")
            await audit.record(
                conn,
                AuditRecord(
                    client_id=ctx.client.client_id,
                    department=ctx.client.department,
                    action="check.replay",
                    operator=ctx.operator,
                    method="POST",
                    path=ctx.path,
                    status=stored.status,
                    item_code=ctx.item_code,
                    object_id=body.get("batch_id") if batch else body.get("check_id"),
                    request_id=ctx.request_id,
                    detail=detail,
                ),
            )
    if ctx.client.sees_pii:
        return stored.body
    if batch:
        body["results"] = [mask_check_body(r) if "check_id" in r else r for r in body["results"]]
        return dumps(body)
    return dumps(mask_check_body(body))


# --- reading checks --------------------------------------------------------------------------------------


def _check_time(check_id: str) -> tuple[uuid.UUID, dt.datetime] | None:
    try:
        value = uuid.UUID(check_id)
        if value.version != 7:
            return None
        return value, uuid7_time(value)
    except (ValueError, TypeError, OverflowError, OSError):
        return None


async def _stored_check(
    db: Database, client: Client, check_id: str, *, action: str, path: str, request_id: str | None
) -> repository.StoredCheck:
    """A stored check of this client, as first answered (audited); anything else is the same 404."""
    found = _check_time(check_id)
    stored = None
    if found is not None:
        value, around = found
        async with db.connection() as conn:
            stored = await repository.get_check(
                conn,
                value,
                client.client_id,
                around=around,
                department=client.department,
                action=action,
                path=path,
                request_id=request_id,
            )
    if stored is None:
        raise NotFound(_NOT_FOUND_DETAIL)
    return stored


async def read_check(
    db: Database, client: Client, check_id: str, *, action: str, path: str, request_id: str | None
) -> repository.StoredCheck:
    """GET /v1/checks/{check_id}: the stored check as this client may see it now (audited)."""
    stored = await _stored_check(db, client, check_id, action=action, path=path, request_id=request_id)
    if not client.sees_pii:
        # Stored as first answered; a client that has lost `pii:read` since sees it masked.
        stored = dataclasses.replace(stored, response=dumps(mask_check_body(json.loads(stored.response))))
    return stored


async def check_report(
    db: Database, client: Client, check_id: str, *, path: str, request_id: str | None
) -> str:
    """GET /v1/checks/{check_id}/report: the printable report (audited as `check.report`), always masked: the
    contract unmasks personal data for `pii:read` in responses only, never in a report."""
    stored = await _stored_check(
        db, client, check_id, action="check.report", path=path, request_id=request_id
    )
    return render_report(
        mask_check_body(json.loads(stored.response)),
        operator=stored.operator,
        business_ref=stored.business_ref,
        department=stored.department,
    )


# --- catalogue reads -------------------------------------------------------------------------------------


async def _fresh_catalogue(db: Database, cache: CatalogueCache) -> Catalogue:
    async with db.connection() as conn:
        return await cache.fresh(conn)


async def catalogue_items(db: Database, cache: CatalogueCache) -> dict[str, Any]:
    catalogue = await _fresh_catalogue(db, cache)
    return {"items": [item.summary() for item in catalogue.items.values()]}


async def catalogue_item(db: Database, cache: CatalogueCache, code: str) -> dict[str, Any]:
    catalogue = await _fresh_catalogue(db, cache)
    item = catalogue.items.get(code)
    if item is None:
        raise UnknownItem(f"the catalogue has no item {code[:64]!r}")
    return catalogue.item_detail(item)


async def catalogue_list_types(db: Database, cache: CatalogueCache) -> dict[str, Any]:
    catalogue = await _fresh_catalogue(db, cache)
    return {"list_types": list(catalogue.list_types.values())}


async def catalogue_measures(db: Database, cache: CatalogueCache) -> dict[str, Any]:
    catalogue = await _fresh_catalogue(db, cache)
    return {
        "measures": [
            catalogue.measure_with_targets(code, m["targets"]) for code, m in catalogue.measures.items()
        ]
    }


async def catalogue_memoranda(db: Database, cache: CatalogueCache) -> dict[str, Any]:
    catalogue = await _fresh_catalogue(db, cache)
    return {"memoranda": list(catalogue.memoranda.values())}
