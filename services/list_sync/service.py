"""Domain logic of list-sync's API: entries (publish, read, lifecycle events), sources, subscriptions and the
quarantine. Runs live in `runs.py`. Functions take the database first and the rest keyword-only."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import urlsplit

from shared import audit
from shared.api.auth import Client, ensure_issuing_department
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
from shared.entries import (
    LinkedPerson,
    NewEntry,
    entry_views,
    insert_entry,
    mask_entry_view,
    raw_connection,
    resolve_aliases,
)
from shared.entries import apply_event as apply_entry_event
from shared.errors import (
    AmbiguousSubjectCodeError,
    Conflict,
    InvalidSubjectCode,
    NotFound,
    ValidationFailed,
)
from shared.ids import parse_uuid
from shared.lifecycle import TransitionRefused, business_date, effective_status
from shared.logging import mask_code_details
from shared.outbound import check_outbound_url, normalise_host
from shared.settings import Settings

from services.list_sync import repository as repo
from services.list_sync.schemas import EntryEventIn, PublishEntryIn, SourceIn, SubscriptionIn
from services.list_sync.upstream import RefusedURL, check_source_url


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the audit row records of the request."""

    method: str
    path: str
    request_id: str | None


def _subject(code: str, kind: SubjectKind | str | None, loc: list[str | int], today: dt.date) -> SubjectCode:
    try:
        return normalise(code, kind, today=today)
    except SubjectCodeError as exc:
        raise InvalidSubjectCode(
            exc.message, errors=[{"loc": loc, "msg": exc.message, "rule": exc.rule}]
        ) from None
    except AmbiguousSubjectCode as exc:
        raise AmbiguousSubjectCodeError(exc.message, extra={"kinds": [str(k) for k in exc.kinds]}) from None


def _invalid(loc: list[str | int], msg: str) -> ValidationFailed:
    return ValidationFailed(msg, errors=[{"loc": loc, "msg": msg}])


def _for_client(view: dict[str, Any], client: Client) -> dict[str, Any]:
    return view if client.sees_pii else mask_entry_view(view)


async def _audit(
    conn: Any,
    settings: Settings,
    client: Client,
    info: RequestInfo,
    *,
    action: str,
    status: int,
    entry: dict[str, Any],
    operator: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    masked, digest = audit.subject_fields(
        entry["subject"]["code"], entry["subject"]["kind"], settings.pii_hmac_key.get_secret_value().encode()
    )
    await audit.record(
        conn,
        audit.AuditRecord(
            client_id=client.client_id,
            department=client.department,
            action=action,
            operator=operator,
            method=info.method,
            path=info.path,
            status=status,
            subject_masked=masked,
            subject_hmac=digest,
            object_id=entry["entry_id"],
            request_id=info.request_id,
            detail=detail,
        ),
    )


# --- entries ---------------------------------------------------------------------------------------------


async def publish_entry(
    db: Database, *, settings: Settings, client: Client, body: PublishEntryIn, info: RequestInfo
) -> dict[str, Any]:
    today = business_date()
    department = body.issuing_department or client.department
    ensure_issuing_department(client, department)
    subject = _subject(body.subject.code, body.subject.kind, ["body", "subject", "code"], today)
    persons = tuple(
        LinkedPerson(
            p.role,
            _subject(p.code, SubjectKind.CITIZEN_ID, ["body", "linked_persons", i, "code"], today).code,
            p.name,
        )
        for i, p in enumerate(body.linked_persons)
    )
    operator = body.operator or client.name
    async with db.session() as session:
        conn = await raw_connection(session)
        types = await repo.list_types(conn)
        info_type = types.get(body.list_type)
        if info_type is None:
            raise _invalid(["body", "list_type"], f"unknown list type {body.list_type!r}")
        if "expires_on" in body.model_fields_set:
            expires_on = body.expires_on  # an explicit null is open-ended
        elif info_type.default_validity_days is not None:
            expires_on = body.listed_on + dt.timedelta(days=info_type.default_validity_days)
        else:
            expires_on = None
        if expires_on is not None and expires_on < body.listed_on:
            raise _invalid(["body", "expires_on"], "expires_on is before listed_on")
        entry_id = await insert_entry(
            session,
            NewEntry(
                list_type=body.list_type,
                subject=subject,
                subject_name=body.subject.name,
                reason=body.reason,
                decision_no=body.decision_no,
                issuing_department=department,
                listed_on=body.listed_on,
                expires_on=expires_on,
                linked_persons=persons,
            ),
            operator=operator,
            basis=body.decision_no,
            client_id=client.client_id,
        )
        view = (await entry_views(session, [entry_id], today=today))[entry_id]
        await _audit(
            conn, settings, client, info, action="entry.publish", status=201, entry=view, operator=operator
        )
        await session.commit()
    return _for_client(view, client)


async def read_entry(
    db: Database, *, settings: Settings, client: Client, entry_id: str, info: RequestInfo
) -> dict[str, Any]:
    parsed = parse_uuid(entry_id)
    if parsed is None:
        raise NotFound("no such entry")
    async with db.session() as session:
        views = await entry_views(session, [parsed])
        view = views.get(parsed)
        if view is None:
            raise NotFound("no such entry")
        await _audit(
            await raw_connection(session), settings, client, info, action="entry.read", status=200, entry=view
        )
        await session.commit()
    return _for_client(view, client)


async def post_entry_event(
    db: Database, *, settings: Settings, client: Client, entry_id: str, body: EntryEventIn, info: RequestInfo
) -> dict[str, Any]:
    parsed = parse_uuid(entry_id)
    if parsed is None:
        raise NotFound("no such entry")
    today = business_date()
    async with db.session() as session:
        conn = await raw_connection(session)
        row = await repo.lock_entry(conn, parsed)
        if row is None:
            raise NotFound("no such entry")
        ensure_issuing_department(client, row["issuing_department"])
        current = effective_status(
            row["status"], row["end_reason"], row["ended_on"], row["expires_on"], today
        ).status
        try:
            await apply_entry_event(
                session,
                parsed,
                body.type,
                current_status=current,
                operator=body.operator,
                basis=body.basis,
                client_id=client.client_id,
                today=today,
            )
        except TransitionRefused:
            raise Conflict(
                f"{body.type!r} is not allowed: the entry's current status is {current!r}",
                extra={"current_status": current},
            ) from None
        view = (await entry_views(session, [parsed], today=today))[parsed]
        await _audit(
            conn,
            settings,
            client,
            info,
            action="entry.event",
            status=200,
            entry=view,
            operator=body.operator,
            detail={"event": body.type, "from": current, "to": view["status"]},
        )
        await session.commit()
    return _for_client(view, client)


# --- sources ---------------------------------------------------------------------------------------------


def import_path(import_dir: Path, path: str) -> Path:
    """`path` inside ONECHECK_IMPORT_DIR, or ValueError: no absolute path, no `..`, no symlink leading out."""
    for flavour in (PurePosixPath(path), PureWindowsPath(path)):
        if flavour.is_absolute() or flavour.drive or ".." in flavour.parts:
            raise ValueError("path must be relative to ONECHECK_IMPORT_DIR, without '..'")
    base = import_dir.resolve()
    full = (base / path).resolve()
    if not full.is_relative_to(base) or full == base:
        raise ValueError("path leads outside ONECHECK_IMPORT_DIR")
    return full


def source_view(row: Any) -> dict[str, Any]:
    return {
        "name": row["name"],
        "kind": row["kind"],
        "base_url": row["base_url"],
        "path": row["path"],
        "has_token": row["token"] is not None,
        "interval_seconds": row["interval_seconds"],
        "cursor": row["cursor"],
        "enabled": row["enabled"],
        "created_at": repo.iso(row["created_at"]),
    }


async def create_source(db: Database, *, settings: Settings, body: SourceIn) -> dict[str, Any]:
    base_url, path = body.base_url, body.path
    if body.kind == "file":
        if path is None:
            raise _invalid(["body", "path"], "a file source needs a path")
        if base_url is not None or body.token is not None:
            raise _invalid(["body", "base_url"], "a file source has a path, not a base_url or token")
        try:
            import_path(settings.import_dir, path)
        except ValueError as exc:
            raise _invalid(["body", "path"], str(exc)) from None
    else:
        if base_url is None:
            raise _invalid(["body", "base_url"], f"a {body.kind} source needs a base_url")
        if path is not None:
            raise _invalid(["body", "path"], f"a {body.kind} source has a base_url, not a path")
        try:
            base_url = check_source_url(base_url, settings)
        except RefusedURL as exc:
            raise _invalid(["body", "base_url"], str(exc)) from None
    async with db.connection() as conn:
        row = await repo.insert_source(
            conn,
            name=body.name,
            kind=body.kind,
            base_url=base_url,
            path=path,
            token=body.token,
            interval_seconds=body.interval_seconds,
        )
    if row is None:
        raise Conflict(f"a source named {body.name!r} exists")
    return source_view(row)


async def list_sources(db: Database) -> dict[str, Any]:
    async with db.connection() as conn:
        rows = await repo.list_sources(conn)
    return {"sources": [source_view(r) for r in rows]}


# --- quarantine ------------------------------------------------------------------------------------------

_ID_LIKE = re.compile(r"(?<![0-9A-Za-z])(\d{17}[\dXx]|\d{15})(?![0-9A-Za-z])")
_PERSON_NAME_KEYS = ("法定代表人姓名",)


def _looks_personal(value: Any) -> bool:
    return isinstance(value, str) and _ID_LIKE.fullmatch(value.strip()) is not None


def mask_raw(value: Any) -> Any:
    """Best effort for arbitrary upstream records: id-shaped numbers masked everywhere, and the names of
    persons (linked persons, a natural-person subject, 法定代表人) masked. Fails closed: a 15-digit
    registration number is masked too."""
    if isinstance(value, str):
        return _ID_LIKE.sub(lambda m: mask_citizen_id(m.group(1)), value)
    if isinstance(value, list):
        return [mask_raw(v) for v in value]
    if not isinstance(value, dict):
        return value
    person = (
        "role" in value or value.get("kind") == SubjectKind.CITIZEN_ID or _looks_personal(value.get("code"))
    )
    file_person = value.get("主体代码类型") == SubjectKind.CITIZEN_ID or _looks_personal(
        value.get("主体代码")
    )
    out: dict[Any, Any] = {}
    for key, item in value.items():
        if isinstance(item, str) and (
            (key == "name" and person) or key in _PERSON_NAME_KEYS or (key == "主体名称" and file_person)
        ):
            out[key] = mask_name(item)
        else:
            out[key] = mask_raw(item)
    return out


async def quarantine(
    db: Database, *, client: Client, run_id: str, limit: int, after_line: int
) -> dict[str, Any]:
    parsed = parse_uuid(run_id)
    if parsed is None:
        raise NotFound("no such run")
    async with db.connection() as conn:
        if await repo.get_run(conn, parsed) is None:
            raise NotFound("no such run")
        rows = await repo.quarantine(conn, parsed, limit, after_line)
    return {
        "records": [
            {
                "run_id": str(r["run_id"]),
                "line": r["line"],
                "raw": r["raw"] if client.sees_pii else mask_raw(r["raw"]),
                # Code rules quote what they found (a citizen id's birth date …): masked like `raw`.
                "reason": r["reason"] if client.sees_pii else mask_code_details(r["reason"]),
                "rule": r["rule"],
            }
            for r in rows
        ]
    }


# --- subscriptions ---------------------------------------------------------------------------------------


def check_callback_url(url: str, settings: Settings) -> str:
    try:
        parts = urlsplit(url)
        host = normalise_host(parts.hostname or "")
    except ValueError:
        raise _invalid(["body", "callback_url"], "callback_url is not a URL") from None
    if parts.scheme == "http":
        if host not in {normalise_host(h) for h in settings.callback_http_hosts}:
            raise _invalid(
                ["body", "callback_url"],
                "callback_url must be https (http only to ONECHECK_CALLBACK_HTTP_HOSTS)",
            )
    elif parts.scheme != "https":
        raise _invalid(["body", "callback_url"], "callback_url must be an https URL")
    try:
        check_outbound_url(url, allow_loopback=settings.outbound_allow_loopback)
    except ValueError as exc:
        raise _invalid(["body", "callback_url"], str(exc)) from None
    if parts.username or parts.password or parts.fragment:
        raise _invalid(["body", "callback_url"], "callback_url must not carry credentials or a fragment")
    return url


_ORGANISATION_KINDS = frozenset({SubjectKind.USCC, SubjectKind.ORG_CODE, SubjectKind.REGISTRATION_NO})


def subscription_view(row: Any, client: Client) -> dict[str, Any]:
    codes: list[str] | None = row["subject_codes"]
    if codes is not None and not client.sees_pii:
        kinds: list[str] = row["subject_kinds"] or []
        # Anything not surely an organisation's code counts as personal (a missing kind too).
        codes = [
            c if i < len(kinds) and kinds[i] in _ORGANISATION_KINDS else mask_citizen_id(c)
            for i, c in enumerate(codes)
        ]
    return {
        "subscription_id": str(row["subscription_id"]),
        "callback_url": row["callback_url"],
        "subject_codes": codes,
        "list_kinds": row["list_kinds"],
        "active": row["active"],
        "created_at": repo.iso(row["created_at"]),
    }


async def create_subscription(
    db: Database, *, settings: Settings, client: Client, body: SubscriptionIn
) -> dict[str, Any]:
    callback_url = check_callback_url(body.callback_url, settings)
    today = business_date()
    subjects = [
        _subject(code, None, ["body", "subject_codes", i], today)
        for i, code in enumerate(body.subject_codes or [])
    ]
    secret = secrets.token_urlsafe(32)
    async with db.session() as session:
        legacy = [s.code for s in subjects if s.kind in (SubjectKind.ORG_CODE, SubjectKind.REGISTRATION_NO)]
        aliases = await resolve_aliases(session, legacy)
        # Each code with its kind (only a USCC matches by its embedded org code). Entries of a legacy code that
        # an alias maps are stored under the USCC: subscribe to both.
        kinds: dict[str, str] = {}
        for s in subjects:
            kinds.setdefault(s.code, s.kind.value)
            if s.code in aliases:
                kinds.setdefault(aliases[s.code], SubjectKind.USCC.value)
        row = await repo.insert_subscription(
            await raw_connection(session),
            client_id=client.client_id,
            callback_url=callback_url,
            subject_codes=list(kinds) or None,
            subject_kinds=list(kinds.values()) or None,
            list_kinds=sorted(set(body.list_kinds)) if body.list_kinds else None,
            secret=secret,
        )
        await session.commit()
    return {**subscription_view(row, client), "secret": secret}


async def list_subscriptions(db: Database, *, client: Client) -> dict[str, Any]:
    async with db.connection() as conn:
        rows = await repo.client_subscriptions(conn, client.client_id)
    return {"subscriptions": [subscription_view(r, client) for r in rows]}


async def cancel_subscription(db: Database, *, client: Client, subscription_id: str) -> dict[str, Any]:
    parsed = parse_uuid(subscription_id)
    row = None
    if parsed is not None:
        async with db.connection() as conn:
            row = await repo.deactivate_subscription(conn, client.client_id, parsed)
    if row is None:
        raise NotFound("no such subscription")
    return subscription_view(row, client)


async def subscription_deliveries(
    db: Database, *, client: Client, subscription_id: str, state: str | None, limit: int
) -> dict[str, Any]:
    parsed = parse_uuid(subscription_id)
    rows = None
    if parsed is not None:
        async with db.connection() as conn:
            rows = await repo.subscription_deliveries(conn, client.client_id, parsed, state, limit)
    if rows is None:
        raise NotFound("no such subscription")
    return {
        "deliveries": [
            {
                "event_id": str(r["message_id"]),
                "event": r["event"],
                "entry_id": r["entry_id"],
                "state": r["state"],
                "attempts": r["attempts"],
                "last_error": r["last_error"],
                "created_at": repo.iso(r["created_at"]),
                "delivered_at": repo.iso(r["delivered_at"]),
                "next_attempt_at": repo.iso(r["next_attempt_at"]) if r["state"] == "pending" else None,
            }
            for r in rows
        ]
    }
