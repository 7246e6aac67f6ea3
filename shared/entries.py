"""The shared write path for list entries: every way an entry is created or changed goes through here, so
each change leaves its event (append-only history) and its subscription notifications in the same
transaction. Used by list-sync (API, sync runs, expiry job) and by the demo loader.

    insert_entry / apply_event      one entry: publish, lifecycle event (objection, repair, ...)
    SyncBatch                       many entries of one source: COPY into a staging table, set-based apply
    expire_due_entries              the expiry job: `expired` events for entries past `expires_on`
    fan_out                         one outbox message per (change, matching subscription)
    entry_views / mask_entry_view   the entry as the API and the callbacks show it
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import json.encoder
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.codes import SubjectCode, SubjectKind, mask_code, mask_name
from shared.lifecycle import SHANGHAI, business_date, effective_status, transition
from shared.models import EntryEvent, EntryPerson, ListEntry, ListType, SubjectAlias
from shared.outbox import enqueue

LEGACY_KINDS = (SubjectKind.ORG_CODE.value, SubjectKind.REGISTRATION_NO.value)


@dataclass(frozen=True)
class LinkedPerson:
    role: str
    code: str  # normalised citizen id
    name: str

    def as_json(self) -> dict[str, str]:
        return {"role": self.role, "code": self.code, "name": self.name}


@dataclass(frozen=True)
class NewEntry:
    list_type: str
    subject: SubjectCode
    subject_name: str
    reason: str
    decision_no: str
    issuing_department: str
    listed_on: dt.date
    expires_on: dt.date | None
    linked_persons: tuple[LinkedPerson, ...] = ()
    source_name: str | None = None
    source_record_id: str | None = None
    upstream_updated_at: dt.datetime | None = None
    entry_id: uuid.UUID = field(default_factory=uuid.uuid4)


def content_hash(entry: NewEntry, subject_code: str) -> str:
    """What makes two versions of a record the same content (everything but ids and `updated_at`).

    bench/generate.py computes the same digest for its COPY-loaded rows: change both together.
    """
    return content_digest(
        list_type=entry.list_type,
        subject_code=subject_code,
        subject_name=entry.subject_name,
        persons=[(p.role, p.code, p.name) for p in entry.linked_persons],
        reason=entry.reason,
        decision_no=entry.decision_no,
        issuing_department=entry.issuing_department,
        listed_on=entry.listed_on,
        expires_on=entry.expires_on,
    )


_json_str = json.encoder.encode_basestring  # what json.dumps(..., ensure_ascii=False) writes for a str


def content_digest(
    *,
    list_type: str,
    subject_code: str,
    subject_name: str,
    persons: Iterable[tuple[str, str, str]],
    reason: str,
    decision_no: str,
    issuing_department: str,
    listed_on: dt.date,
    expires_on: dt.date | None,
) -> str:
    """`content_hash` from plain values: SHA-256 of the content as
    `json.dumps({...}, sort_keys=True, ensure_ascii=False)` writes it (persons as sorted [role, code, name]
    lists), built directly: a snapshot hashes every one of its records."""
    return content_digest_iso(
        list_type,
        subject_code,
        subject_name,
        sorted(persons),
        reason,
        decision_no,
        issuing_department,
        listed_on.isoformat(),
        expires_on.isoformat() if expires_on else None,
    )


def content_digest_iso(
    list_type: str,
    subject_code: str,
    subject_name: str,
    sorted_persons: Sequence[tuple[str, str, str]],
    reason: str,
    decision_no: str,
    issuing_department: str,
    listed_on: str,
    expires_on: str | None,
) -> str:
    """`content_digest` with the persons already sorted and the dates as `YYYY-MM-DD` (the bulk path)."""
    enc = _json_str
    people = ", ".join([f"[{enc(r)}, {enc(c)}, {enc(n)}]" for r, c, n in sorted_persons])
    expiry = f'"{expires_on}"' if expires_on else "null"
    text = (
        f'{{"decision_no": {enc(decision_no)}, "expires_on": {expiry}, '
        f'"issuing_department": {enc(issuing_department)}, "linked_persons": [{people}], '
        f'"list_type": {enc(list_type)}, "listed_on": "{listed_on}", '
        f'"reason": {enc(reason)}, "subject_code": {enc(subject_code)}, '
        f'"subject_name": {enc(subject_name)}}}'
    )
    return hashlib.sha256(text.encode()).hexdigest()


async def resolve_alias(session: AsyncSession, subject: SubjectCode) -> tuple[str, str, str | None]:
    """(code, kind, org_code) to store: a legacy code mapped to its USCC where an alias is known."""
    if subject.kind in (SubjectKind.ORG_CODE, SubjectKind.REGISTRATION_NO):
        uscc = await session.scalar(select(SubjectAlias.uscc).where(SubjectAlias.alias_code == subject.code))
        if uscc is not None:
            return uscc, SubjectKind.USCC.value, uscc[8:17]
    return subject.code, subject.kind.value, subject.org_code


async def resolve_aliases(session: AsyncSession, codes: Iterable[str]) -> dict[str, str]:
    """Legacy code → USCC for those of `codes` that an alias maps (one query for a whole page)."""
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    rows = await session.execute(
        select(SubjectAlias.alias_code, SubjectAlias.uscc).where(SubjectAlias.alias_code.in_(wanted))
    )
    return {alias: uscc for alias, uscc in rows}


async def default_expiry(session: AsyncSession, list_type: str, listed_on: dt.date) -> dt.date | None:
    days = await session.scalar(select(ListType.default_validity_days).where(ListType.code == list_type))
    return listed_on + dt.timedelta(days=days) if days is not None else None


async def raw_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under `session`, inside the session's transaction (for COPY and bulk SQL).

    SQLAlchemy begins its transaction lazily on the first statement, so we issue one first: otherwise raw
    statements would run in autocommit, outside the unit of work.
    """
    await session.execute(text("SELECT 1"))
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    return driver


# --- one entry -------------------------------------------------------------------------------------------


async def insert_entry(
    session: AsyncSession,
    entry: NewEntry,
    *,
    operator: str | None,
    basis: str | None = None,
    client_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
    notify: bool = True,
) -> uuid.UUID:
    """Insert a new entry with its linked persons and its `published` event, and notify subscribers.
    Does not commit."""
    code, kind, org_code = await resolve_alias(session, entry.subject)
    list_kind = await session.scalar(select(ListType.kind).where(ListType.code == entry.list_type))
    if list_kind is None:
        raise ValueError(f"unknown list type {entry.list_type!r}")
    now = dt.datetime.now(dt.UTC)
    await session.execute(
        insert(ListEntry).values(
            entry_id=entry.entry_id,
            list_type=entry.list_type,
            list_kind=list_kind,
            subject_code=code,
            subject_kind=kind,
            subject_org_code=org_code,
            subject_name=entry.subject_name,
            original_code=entry.subject.code,
            original_kind=entry.subject.kind.value,
            linked_persons=[p.as_json() for p in entry.linked_persons],
            reason=entry.reason,
            decision_no=entry.decision_no,
            issuing_department=entry.issuing_department,
            listed_on=entry.listed_on,
            expires_on=entry.expires_on,
            status="active",
            source_name=entry.source_name,
            source_record_id=entry.source_record_id,
            upstream_updated_at=entry.upstream_updated_at,
            content_hash=content_hash(entry, code),
            created_by_client=client_id,
            created_at=now,
            updated_at=now,
        )
    )
    persons = {(p.code, p.role): p for p in entry.linked_persons}
    if persons:
        await session.execute(
            insert(EntryPerson),
            [
                {"entry_id": entry.entry_id, "person_code": p.code, "role": p.role, "person_name": p.name}
                for p in persons.values()
            ],
        )
    await record_event(
        session,
        entry.entry_id,
        "published",
        status_after="active",
        operator=operator,
        basis=basis,
        client_id=client_id,
        run_id=run_id,
        at=now,
    )
    if notify:
        await fan_out(session, [EntryChange(entry.entry_id, "published", now)])
    return entry.entry_id


async def record_event(
    session: AsyncSession,
    entry_id: uuid.UUID,
    event: str,
    *,
    status_after: str,
    operator: str | None,
    basis: str | None,
    client_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> None:
    values: dict[str, Any] = {
        "entry_id": entry_id,
        "event": event,
        "operator": operator,
        "basis": basis,
        "client_id": client_id,
        "run_id": run_id,
        "status_after": status_after,
        "data": data,
    }
    if at is not None:
        values["at"] = at
    await session.execute(insert(EntryEvent).values(**values))


async def apply_event(
    session: AsyncSession,
    entry_id: uuid.UUID,
    event: str,
    *,
    current_status: str,
    operator: str | None,
    basis: str | None,
    client_id: uuid.UUID | None = None,
    today: dt.date | None = None,
    notify: bool = True,
) -> str:
    """Apply a lifecycle event (raises `TransitionRefused`); returns the new status. Does not commit.

    `current_status` is the status the entry *reads* as (an expired entry reads `ended`), taken under a row
    lock by the caller when concurrent changes are possible.
    """
    after, end_reason = transition(event, current_status)
    now = dt.datetime.now(dt.UTC)
    values: dict[str, Any] = {"status": after, "end_reason": end_reason, "updated_at": now}
    values["ended_on"] = (today or business_date()) if after == "ended" else None
    await session.execute(update(ListEntry).where(ListEntry.entry_id == entry_id).values(**values))
    await record_event(
        session,
        entry_id,
        event,
        status_after=after,
        operator=operator,
        basis=basis,
        client_id=client_id,
        at=now,
    )
    if notify:
        await fan_out(session, [EntryChange(entry_id, event, now)])
    return after


# --- reading entries -------------------------------------------------------------------------------------


def _time(value: dt.datetime | None) -> str | None:
    return value.astimezone(SHANGHAI).isoformat() if value is not None else None


def _date(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


ENTRY_COLUMNS = (*ListEntry.__table__.c, ListType.name.label("list_name"))


async def entry_views(
    session: AsyncSession, entry_ids: Sequence[uuid.UUID], *, today: dt.date | None = None
) -> dict[uuid.UUID, dict[str, Any]]:
    """The entries as the API shows them (unmasked; see `mask_entry_view`), with their history."""
    if not entry_ids:
        return {}
    today = today or business_date()
    ids = list(dict.fromkeys(entry_ids))
    rows = (
        await session.execute(
            select(*ENTRY_COLUMNS)
            .join(ListType, ListType.code == ListEntry.list_type)
            .where(ListEntry.entry_id.in_(ids))
        )
    ).mappings()
    views: dict[uuid.UUID, dict[str, Any]] = {}
    for row in rows:
        status = effective_status(row["status"], row["end_reason"], row["ended_on"], row["expires_on"], today)
        source = None
        if row["source_name"] is not None:
            source = {
                "name": row["source_name"],
                "record_id": row["source_record_id"],
                "updated_at": _time(row["upstream_updated_at"]),
            }
        views[row["entry_id"]] = {
            "entry_id": str(row["entry_id"]),
            "list_type": row["list_type"],
            "list": {"code": row["list_type"], "name": row["list_name"], "kind": row["list_kind"]},
            "subject": {
                "code": row["subject_code"],
                "name": row["subject_name"],
                "kind": row["subject_kind"],
                "original_code": row["original_code"],
                "original_kind": row["original_kind"],
            },
            "linked_persons": [
                {"role": p["role"], "code": p["code"], "name": p["name"]} for p in row["linked_persons"] or []
            ],
            "reason": row["reason"],
            "decision_no": row["decision_no"],
            "issuing_department": row["issuing_department"],
            "listed_on": _date(row["listed_on"]),
            "expires_on": _date(row["expires_on"]),
            "status": status.status,
            "end_reason": status.end_reason,
            "ended_on": _date(status.ended_on),
            "source": source,
            "created_at": _time(row["created_at"]),
            "updated_at": _time(row["updated_at"]),
            "history": [],
        }
    events = await session.execute(
        select(EntryEvent.entry_id, EntryEvent.event, EntryEvent.at, EntryEvent.operator, EntryEvent.basis)
        .where(EntryEvent.entry_id.in_(list(views)))
        .order_by(EntryEvent.entry_id, EntryEvent.id)
    )
    for entry_id, event, at, operator, basis in events:
        views[entry_id]["history"].append(
            {"event": event, "at": _time(at), "operator": operator, "basis": basis}
        )
    return views


def mask_entry_view(view: dict[str, Any]) -> dict[str, Any]:
    """Citizen ids and natural persons' names masked (contract: Conventions → Personal data)."""
    subject = dict(view["subject"])
    if subject["kind"] == SubjectKind.CITIZEN_ID:
        subject["code"] = mask_code(subject["code"], SubjectKind.CITIZEN_ID)
        subject["name"] = mask_name(subject["name"])
    if subject["original_kind"] == SubjectKind.CITIZEN_ID:
        subject["original_code"] = mask_code(subject["original_code"], SubjectKind.CITIZEN_ID)
    persons = [
        {**p, "code": mask_code(p["code"], SubjectKind.CITIZEN_ID), "name": mask_name(p["name"])}
        for p in view["linked_persons"]
    ]
    return {**view, "subject": subject, "linked_persons": persons}


# --- subscriptions ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryChange:
    entry_id: uuid.UUID
    event: str  # published | updated | <lifecycle event> | removed | expired
    occurred_at: dt.datetime


# A subscription matches an entry by list kind and, when it names codes, exactly as a check of each code would
# find the entry (services/check_api/repository.py MATCH_SQL, paths `subject` and `responsible_person`):
#   - a legacy code an alias maps is taken as its USCC (aliases as they are now, not as they were when the
#     subscription was made);
#   - the entry's subject code is the code, or for a USCC one of its aliases (entries stored before their
#     alias was known keep the legacy code);
#   - a USCC also reaches entries recorded under its embedded organisation code (characters 9-17), and only
#     entries of kind `org_code`: never another USCC embedding the same characters, and never for a citizen id
#     (whose characters 9-17 may pass GB 11714 by chance) — so the kind of each code is stored with it;
#   - a citizen id also reaches organisations' entries naming it among their linked persons.
# An unmapped org code or registration number is only itself. Each (change, subscription) comes out once.
MATCH_SQL = text("""
WITH changed AS (
    SELECT c.ord, e.entry_id, e.list_kind, e.subject_code, e.subject_kind
    FROM unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS c(entry_id, ord)
    JOIN list_entries e ON e.entry_id = c.entry_id
),
subs AS (
    SELECT s.subscription_id, s.callback_url, s.subject_codes, s.subject_kinds, s.list_kinds,
           ('pii:read' = ANY(a.scopes)) AS pii
    FROM subscriptions s JOIN api_clients a ON a.client_id = s.client_id AND a.revoked_at IS NULL
    WHERE s.active
),
subj AS (
    SELECT s.subscription_id, coalesce(a.uscc, u.code) AS code,
           CASE WHEN a.uscc IS NOT NULL THEN 'uscc' ELSE u.kind END AS kind
    FROM subs s
    CROSS JOIN LATERAL unnest(s.subject_codes, s.subject_kinds) AS u(code, kind)
    LEFT JOIN subject_aliases a ON u.kind IN ('org_code', 'registration_no') AND a.alias_code = u.code
),
-- (subscription, a subject_code its entries may have, whether that code reaches only org-code entries)
codes AS (
    SELECT subscription_id, code, false AS org_only FROM subj
    UNION
    SELECT s.subscription_id, a.alias_code, false
    FROM subj s JOIN subject_aliases a ON a.uscc = s.code WHERE s.kind = 'uscc'
    UNION
    SELECT subscription_id, substr(code, 9, 9), true FROM subj WHERE kind = 'uscc'
),
hits AS (
    SELECT c.ord, k.subscription_id
    FROM changed c JOIN codes k ON k.code = c.subject_code AND (NOT k.org_only OR c.subject_kind = 'org_code')
    UNION
    SELECT c.ord, p.subscription_id
    FROM changed c
    JOIN entry_persons ep ON ep.entry_id = c.entry_id
    JOIN subj p ON p.kind = 'citizen_id' AND p.code = ep.person_code
    WHERE c.subject_kind <> 'citizen_id'
    UNION
    SELECT c.ord, s.subscription_id FROM changed c CROSS JOIN subs s WHERE s.subject_codes IS NULL
)
SELECT h.ord, s.subscription_id, s.callback_url, s.pii
FROM hits h
JOIN changed c ON c.ord = h.ord
JOIN subs s ON s.subscription_id = h.subscription_id
WHERE s.list_kinds IS NULL OR c.list_kind = ANY(s.list_kinds)
ORDER BY h.ord, s.subscription_id
""")


async def any_subscription(session: AsyncSession) -> bool:
    return bool(await session.scalar(text("SELECT EXISTS (SELECT 1 FROM subscriptions WHERE active)")))


async def fan_out(session: AsyncSession, changes: Sequence[EntryChange]) -> int:
    """Enqueue one `subscription` outbox message per (change, matching subscription), in the caller's
    transaction. Returns how many. The entry is shown as of now (after the change), masked unless the
    subscribing client has `pii:read`; `event_id` is the outbox message id (the same on every retry)."""
    if not changes or not await any_subscription(session):
        return 0
    pairs = (await session.execute(MATCH_SQL, {"ids": [c.entry_id for c in changes]})).all()
    if not pairs:
        return 0
    views = await entry_views(session, [changes[ord_ - 1].entry_id for ord_, *_ in pairs])
    for ord_, subscription_id, callback_url, pii in pairs:
        change = changes[ord_ - 1]
        view = views.get(change.entry_id)
        if view is None:  # pragma: no cover - the join above found it in this transaction
            continue
        message_id = uuid.uuid4()
        await enqueue(
            session,
            topic="subscription",
            target_url=callback_url,
            subscription_id=subscription_id,
            message_id=message_id,
            payload={
                "event_id": str(message_id),
                "event": "removal" if change.event == "removed" else change.event,
                "occurred_at": _time(change.occurred_at),
                "entry": view if pii else mask_entry_view(view),
            },
        )
    return len(pairs)


# --- expiry ----------------------------------------------------------------------------------------------

# The stored status follows the read one: `ended`/`expired` from the day after `expires_on`. The status before
# is kept in the event, so a later sync that extends `expires_on` can restore it (see SyncBatch).
EXPIRE_SQL = text("""
WITH due AS (
    SELECT entry_id, status, expires_on FROM list_entries
    WHERE status <> 'ended' AND expires_on < CAST(:today AS date)
    ORDER BY expires_on
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE list_entries e
    SET status = 'ended', end_reason = 'expired', ended_on = due.expires_on + 1,
        updated_at = CAST(:at AS timestamptz)
    FROM due WHERE e.entry_id = due.entry_id
)
INSERT INTO entry_events (entry_id, event, at, operator, basis, status_after, data)
SELECT entry_id, 'expired', CAST(:at AS timestamptz), 'system', 'expires_on passed', 'ended',
       jsonb_build_object('status_before', status, 'expires_on', expires_on)
FROM due
RETURNING entry_id
""")


async def expire_due_entries(
    session: AsyncSession, *, today: dt.date | None = None, limit: int = 1000
) -> int:
    """Record `expired` for up to `limit` entries whose `expires_on` has passed, and notify. Does not commit.

    SKIP LOCKED lets replicas run the job at once without recording an expiry twice.
    """
    at = dt.datetime.now(dt.UTC)
    rows = await session.execute(EXPIRE_SQL, {"today": today or business_date(), "limit": limit, "at": at})
    ids = list(rows.scalars())
    await fan_out(session, [EntryChange(entry_id, "expired", at) for entry_id in ids])
    return len(ids)


# --- many entries of one source: staged, set-based --------------------------------------------------------


# The staging table's columns, in the order of the COPY text rows `SyncBatch.stage` takes (one valid upstream
# record each, normalised; see services/list_sync/runs.py `stage_row`).
STAGE_COLUMNS = (
    "seq",  # its number in the run: the first of equal `updated_at` repeats wins
    "source_id",
    "list_type",
    "list_kind",
    "subject_code",  # after alias mapping
    "subject_kind",
    "subject_org_code",
    "original_code",
    "original_kind",
    "subject_name",
    "linked_persons",  # JSON array of {role, code, name}
    "reason",
    "decision_no",
    "issuing_department",
    "listed_on",
    "expires_on",
    "upstream_status",  # active | removed
    "updated_at",
    "content_hash",
    "unmapped",  # a legacy code no alias maps
    "seen_before",  # its source_id came in an earlier batch of this run (a feed's earlier page)
    "entry_id",  # used if it is inserted: time-ordered (UUIDv7), so the primary key grows at its end
)
# Its linked persons, one COPY text row each (the entry_persons rows if the record is inserted or updated).
PERSON_COLUMNS = ("seq", "person_code", "role", "person_name")

_STAGE_COLUMNS_DDL = """
    seq integer NOT NULL, source_id text NOT NULL, list_type text NOT NULL, list_kind text NOT NULL,
    subject_code text NOT NULL, subject_kind text NOT NULL, subject_org_code text, original_code text NOT NULL,
    original_kind text NOT NULL, subject_name text NOT NULL, linked_persons jsonb NOT NULL, reason text NOT NULL,
    decision_no text NOT NULL, issuing_department text NOT NULL, listed_on date NOT NULL, expires_on date,
    upstream_status text NOT NULL, updated_at timestamptz, content_hash text NOT NULL, unmapped boolean NOT NULL,
    seen_before boolean NOT NULL, entry_id uuid NOT NULL
"""

# Temp tables live as long as the connection and are emptied at every commit: a pooled connection creates
# them once, and statements prepared against them stay valid (a DROP/CREATE per batch would also pile up
# relation locks in a long transaction). The names are new with this layout of the staging table (a
# connection keeps a temp table as it was first created). The plan holds only what the statements need
# besides the staged record, which they join by `seq`.
_STAGE_DDL = f"""
CREATE TEMP TABLE IF NOT EXISTS _sync_stage2 ({_STAGE_COLUMNS_DDL}) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _sync_ids (source_id text NOT NULL) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _sync_persons (
    seq integer NOT NULL, person_code text NOT NULL, role text NOT NULL, person_name text NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _sync_plan2 (
    seq integer NOT NULL, entry_id uuid NOT NULL, cur_id uuid, cur_in_effect boolean, move text NOT NULL,
    new_status text NOT NULL, new_end_reason text, new_ended_on date, action text NOT NULL, touch boolean,
    before jsonb, seen_before boolean NOT NULL, unmapped boolean NOT NULL, updated_at timestamptz
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _sync_changes (
    entry_id uuid NOT NULL, event text NOT NULL, status_after text NOT NULL, basis text, data jsonb
) ON COMMIT DELETE ROWS;
"""

# Several batches may share one transaction (tests; a caller applying more than one).
_EMPTY_DDL = "TRUNCATE _sync_stage2, _sync_ids, _sync_persons, _sync_plan2, _sync_changes"

_STAGE_LIST = ", ".join(STAGE_COLUMNS)
_END_DATE = "LEAST($2::date, coalesce((w.updated_at AT TIME ZONE 'Asia/Shanghai')::date, $2::date))"

# Winners: per source_id the newest record (ties: the first). Each is compared with the stored entry:
#   move   new | end (upstream removed it) | reopen (re-listed after a sync ended it) |
#          unexpire (a later expires_on revives an entry the expiry job ended) | keep
#   action insert | stale (older than stored) | unchanged (same content and status) | update
#   touch  unchanged, but with a newer upstream `updated_at` than stored (kept, so an older re-delivery is
#          recognised as stale)
# Lifecycle decisions taken here (repair, objection_upheld, an API removal) are never undone by a sync.
# Only the columns the decision needs are sorted for DISTINCT ON; the rest stays in the stage. The plan is
# written in `seq` order, the order of the staged records and of their entry ids, so new entries go into the
# primary key (and the foreign-key checks of their events and persons find them) in ascending order.
_PLAN_SQL = f"""
INSERT INTO _sync_plan2 (seq, entry_id, cur_id, cur_in_effect, move, new_status, new_end_reason, new_ended_on,
                         action, touch, before, seen_before, unmapped, updated_at)
SELECT w.seq, coalesce(e.entry_id, w.entry_id), e.entry_id,
       (e.status IN ('active', 'objection_pending') AND e.listed_on <= $2::date
        AND (e.expires_on IS NULL OR e.expires_on >= $2::date)),
       m.move, n.new_status, n.new_end_reason, n.new_ended_on, a.action,
       a.action = 'unchanged' AND w.updated_at > coalesce(e.upstream_updated_at, '-infinity'::timestamptz),
       CASE WHEN a.action = 'update' THEN jsonb_build_object(
           'list_type', e.list_type, 'subject_code', e.subject_code, 'subject_kind', e.subject_kind,
           'subject_name', e.subject_name, 'linked_persons', e.linked_persons, 'reason', e.reason,
           'decision_no', e.decision_no, 'issuing_department', e.issuing_department, 'listed_on', e.listed_on,
           'expires_on', e.expires_on, 'status', e.status, 'end_reason', e.end_reason,
           'upstream_updated_at', e.upstream_updated_at) END,
       w.seen_before, w.unmapped, w.updated_at
FROM (SELECT DISTINCT ON (source_id) seq, source_id, upstream_status, expires_on, updated_at, content_hash,
             seen_before, unmapped, entry_id
      FROM _sync_stage2 ORDER BY source_id, updated_at DESC NULLS LAST, seq) w
LEFT JOIN list_entries e ON e.source_name = $1 AND e.source_record_id = w.source_id
LEFT JOIN LATERAL (
    SELECT ev.event, ev.data FROM entry_events ev
    WHERE e.status = 'ended' AND ev.entry_id = e.entry_id
      AND ev.event IN ('published', 'removed', 'removal', 'repair', 'objection_upheld', 'expired')
    ORDER BY ev.id DESC LIMIT 1
) le ON true
CROSS JOIN LATERAL (SELECT CASE
    WHEN e.entry_id IS NULL THEN 'new'
    WHEN w.upstream_status = 'removed' THEN CASE WHEN e.status <> 'ended' THEN 'end' ELSE 'keep' END
    WHEN e.status <> 'ended' THEN 'keep'
    WHEN e.end_reason = 'removed' AND le.event IN ('removed', 'published') THEN 'reopen'
    WHEN e.end_reason = 'expired' AND le.event = 'expired'
         AND (w.expires_on IS NULL OR w.expires_on >= $2::date) THEN 'unexpire'
    ELSE 'keep' END AS move) m
CROSS JOIN LATERAL (SELECT
    CASE m.move
        WHEN 'new' THEN CASE WHEN w.upstream_status = 'removed' THEN 'ended' ELSE 'active' END
        WHEN 'end' THEN 'ended'
        WHEN 'reopen' THEN 'active'
        WHEN 'unexpire' THEN coalesce(le.data ->> 'status_before', 'active')
        ELSE e.status END AS new_status,
    CASE m.move
        WHEN 'new' THEN CASE WHEN w.upstream_status = 'removed' THEN 'removed' END
        WHEN 'end' THEN 'removed'
        WHEN 'reopen' THEN NULL
        WHEN 'unexpire' THEN NULL
        ELSE e.end_reason END AS new_end_reason,
    CASE m.move
        WHEN 'new' THEN CASE WHEN w.upstream_status = 'removed' THEN {_END_DATE} END
        WHEN 'end' THEN {_END_DATE}
        WHEN 'reopen' THEN NULL
        WHEN 'unexpire' THEN NULL
        ELSE e.ended_on END AS new_ended_on) n
CROSS JOIN LATERAL (SELECT CASE
    WHEN e.entry_id IS NULL THEN 'insert'
    WHEN w.updated_at < e.upstream_updated_at THEN 'stale'
    WHEN w.content_hash = e.content_hash AND n.new_status = e.status
         AND n.new_end_reason IS NOT DISTINCT FROM e.end_reason THEN 'unchanged'
    ELSE 'update' END AS action) a
ORDER BY w.seq
"""

# `unmapped_legacy` counts only records that are also counted inserted, updated or unchanged: at most one per
# source_id and run (a repeat is a duplicate, on this page or an earlier one), never a stale one.
_COUNT_PLAN_SQL = """
SELECT (SELECT count(*) FROM _sync_stage2) AS staged,
       count(*) AS winners,
       count(*) FILTER (WHERE seen_before) AS seen_before,
       count(*) FILTER (WHERE NOT seen_before AND action = 'insert') AS inserted,
       count(*) FILTER (WHERE NOT seen_before AND action = 'update') AS updated,
       count(*) FILTER (WHERE NOT seen_before AND action = 'unchanged') AS unchanged,
       count(*) FILTER (WHERE NOT seen_before AND action = 'stale') AS stale,
       count(*) FILTER (WHERE action = 'update' AND move = 'end') AS ending,
       count(*) FILTER (WHERE action = 'update' AND move = 'end' AND cur_in_effect) AS ending_in_effect,
       count(*) FILTER (WHERE unmapped AND NOT seen_before AND action <> 'stale') AS unmapped_legacy
FROM _sync_plan2
"""

# Entries of the source that a complete snapshot no longer lists (quarantined records still count as listed:
# a bad record must not end a good entry). Already ended or expired entries are left as they read.
_MISSING_WHERE = """
e.source_name = $1 AND e.status <> 'ended' AND (e.expires_on IS NULL OR e.expires_on >= $2::date)
AND NOT EXISTS (SELECT 1 FROM _sync_ids i WHERE i.source_id = e.source_record_id)
"""

_COUNT_MISSING_SQL = f"""
SELECT count(*) AS missing, count(*) FILTER (WHERE e.listed_on <= $2::date) AS missing_in_effect
FROM list_entries e WHERE {_MISSING_WHERE}
"""

_COUNT_IN_EFFECT_SQL = """
SELECT count(*) FROM list_entries e
WHERE e.source_name = $1 AND e.status IN ('active', 'objection_pending') AND e.listed_on <= $2::date
  AND (e.expires_on IS NULL OR e.expires_on >= $2::date)
"""

# New entries and their `published` events in one statement (the events straight from RETURNING, in the
# order the entries went in).
_INSERT_SQL = """
WITH ins AS (
    INSERT INTO list_entries (entry_id, list_type, list_kind, subject_code, subject_kind, subject_org_code,
        subject_name, original_code, original_kind, linked_persons, reason, decision_no, issuing_department,
        listed_on, expires_on, status, end_reason, ended_on, source_name, source_record_id, upstream_updated_at,
        content_hash, created_at, updated_at)
    SELECT p.entry_id, s.list_type, s.list_kind, s.subject_code, s.subject_kind, s.subject_org_code,
        s.subject_name, s.original_code, s.original_kind, s.linked_persons, s.reason, s.decision_no,
        s.issuing_department, s.listed_on, s.expires_on, p.new_status, p.new_end_reason, p.new_ended_on,
        $1::text, s.source_id, s.updated_at, s.content_hash, $2::timestamptz, $2::timestamptz
    FROM _sync_plan2 p JOIN _sync_stage2 s ON s.seq = p.seq
    WHERE p.action = 'insert'
    RETURNING entry_id, status
)
INSERT INTO entry_events (entry_id, event, at, operator, basis, run_id, status_after, data)
SELECT entry_id, 'published', $2::timestamptz, $3::text, $4::text, $5::uuid, status,
       CASE WHEN status = 'ended' THEN '{"upstream_status": "removed"}'::jsonb END
FROM ins
"""

# The new entries, for subscriptions (their events are written with them).
_PUBLISHED_SQL = "SELECT entry_id FROM _sync_plan2 WHERE action = 'insert' ORDER BY seq"

_UPDATE_SQL = """
UPDATE list_entries e SET
    list_type = s.list_type, list_kind = s.list_kind, subject_code = s.subject_code,
    subject_kind = s.subject_kind, subject_org_code = s.subject_org_code, subject_name = s.subject_name,
    original_code = s.original_code, original_kind = s.original_kind, linked_persons = s.linked_persons,
    reason = s.reason, decision_no = s.decision_no, issuing_department = s.issuing_department,
    listed_on = s.listed_on, expires_on = s.expires_on, status = p.new_status, end_reason = p.new_end_reason,
    ended_on = p.new_ended_on, upstream_updated_at = coalesce(s.updated_at, e.upstream_updated_at),
    content_hash = s.content_hash, updated_at = $1::timestamptz
FROM _sync_plan2 p JOIN _sync_stage2 s ON s.seq = p.seq
WHERE p.action = 'update' AND e.entry_id = p.cur_id
"""

_UPDATE_CHANGES_SQL = """
INSERT INTO _sync_changes (entry_id, event, status_after, basis, data)
SELECT cur_id, CASE WHEN move = 'end' THEN 'removed' ELSE 'updated' END, new_status,
       CASE WHEN move = 'end' THEN 'upstream status removed' END,
       jsonb_build_object('before', before)
       || CASE WHEN move IN ('reopen', 'unexpire') THEN '{"reopened": true}'::jsonb ELSE '{}'::jsonb END
FROM _sync_plan2 WHERE action = 'update'
"""

# Newer upstream timestamps on unchanged content are kept, so an older re-delivery is recognised as stale.
_TOUCH_SQL = """
UPDATE list_entries e SET upstream_updated_at = p.updated_at
FROM _sync_plan2 p WHERE p.touch AND e.entry_id = p.cur_id
"""

# entry_persons is the index of linked_persons for person lookups; the history keeps the old list.
_DELETE_PERSONS_SQL = """
DELETE FROM entry_persons ep USING _sync_plan2 p WHERE p.action = 'update' AND ep.entry_id = p.cur_id
"""

_INSERT_PERSONS_SQL = """
INSERT INTO entry_persons (entry_id, person_code, role, person_name)
SELECT p.entry_id, x.person_code, x.role, x.person_name
FROM _sync_persons x JOIN _sync_plan2 p ON p.seq = x.seq
WHERE p.action IN ('insert', 'update')
ON CONFLICT DO NOTHING
"""

_END_MISSING_SQL = f"""
WITH gone AS (
    SELECT e.entry_id, e.status FROM list_entries e WHERE {_MISSING_WHERE} FOR UPDATE OF e
), upd AS (
    UPDATE list_entries e SET status = 'ended', end_reason = 'removed', ended_on = $2::date, updated_at = $3::timestamptz
    FROM gone WHERE e.entry_id = gone.entry_id
)
INSERT INTO _sync_changes (entry_id, event, status_after, basis, data)
SELECT entry_id, 'removed', 'ended', 'missing from a complete snapshot',
       jsonb_build_object('status_before', status, 'missing_from_snapshot', true)
FROM gone
"""

_EVENTS_SQL = """
INSERT INTO entry_events (entry_id, event, at, operator, basis, run_id, status_after, data)
SELECT entry_id, event, $1::timestamptz, $2::text, coalesce(basis, $3::text), $4::uuid, status_after, data
FROM _sync_changes
"""


@dataclass
class BatchPlan:
    """What applying the staged records would do (counts of the contract, for this batch)."""

    staged: int = 0
    duplicates: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    ending: int = 0  # entries an upstream `removed` ends
    missing: int = 0  # entries a complete snapshot no longer lists (they end)
    would_end_in_effect: int = 0
    in_effect: int = 0  # the source's entries in effect now
    unmapped_legacy: int = 0

    @property
    def ended(self) -> int:
        return self.ending + self.missing

    @property
    def end_share(self) -> float:
        return self.would_end_in_effect / self.in_effect if self.in_effect else 0.0


async def copy_text_rows(conn: asyncpg.Connection, table: str, columns: Sequence[str], rows: bytes) -> None:
    """COPY text-format rows (bytes) into `table`. asyncpg takes bytes for a file name: hand it a view."""
    await conn.copy_to_table(table, source=memoryview(rows), columns=list(columns), format="text")


class SyncBatch:
    """Records of one source staged with COPY and applied with a few set-based statements, all inside the
    caller's transaction (`session`): a feed page, or a whole snapshot or file.

        batch = await SyncBatch.open(session, source_name=..., today=...)
        await batch.stage(rows); await batch.stage_persons(person_rows); await batch.stage_ids(id_rows)
        plan = await batch.plan(complete=True)       # counts; nothing changed yet
        await batch.apply(plan, run_id=..., operator=...)
        await batch.close()
    """

    def __init__(
        self, session: AsyncSession, conn: asyncpg.Connection, source_name: str, today: dt.date
    ) -> None:
        self.session = session
        self.conn = conn
        self.source_name = source_name
        self.today = today
        self.complete = False

    @classmethod
    async def open(cls, session: AsyncSession, *, source_name: str, today: dt.date) -> SyncBatch:
        conn = await raw_connection(session)
        await conn.execute(_STAGE_DDL)
        await conn.execute(_EMPTY_DDL)
        # JIT compiles each of these one-off statements anew: about a second apiece, for nothing.
        await conn.execute("SET LOCAL jit = off")
        return cls(session, conn, source_name, today)

    async def stage(self, rows: bytes) -> None:
        """COPY staged records in: text-format rows of STAGE_COLUMNS (services/list_sync/runs.py writes
        them). May be called once per page."""
        await copy_text_rows(self.conn, "_sync_stage2", STAGE_COLUMNS, rows)

    async def stage_persons(self, rows: bytes) -> None:
        """The staged records' linked persons: text-format rows of PERSON_COLUMNS."""
        await copy_text_rows(self.conn, "_sync_persons", PERSON_COLUMNS, rows)

    async def stage_ids(self, rows: bytes) -> None:
        """Every source_id the listing carried, valid or quarantined (for a complete snapshot): one COPY
        text row each."""
        await copy_text_rows(self.conn, "_sync_ids", ("source_id",), rows)

    async def plan(self, *, complete: bool) -> BatchPlan:
        """Classify the staged records against what is stored. `complete`: the staged records are the source's
        whole listing, so entries missing from it end."""
        self.complete = complete
        conn, args = self.conn, (self.source_name, self.today)
        # Temp tables are never auto-analysed; without statistics a million-row join picks a nested loop.
        # The join key's statistics are what the plan needs (all columns would cost ~0.5 s per 100 k rows).
        await conn.execute("ANALYZE _sync_stage2 (source_id)")
        await conn.execute(_PLAN_SQL, *args)
        await conn.execute("ANALYZE _sync_plan2 (seq, action)")
        row = await conn.fetchrow(_COUNT_PLAN_SQL)
        assert row is not None
        plan = BatchPlan(
            staged=row["staged"],
            duplicates=row["staged"] - row["winners"] + row["seen_before"],
            inserted=row["inserted"],
            updated=row["updated"],
            unchanged=row["unchanged"],
            stale=row["stale"],
            ending=row["ending"],
            would_end_in_effect=row["ending_in_effect"],
            unmapped_legacy=row["unmapped_legacy"],
        )
        if complete:
            await conn.execute("ANALYZE _sync_ids")
            missing = await conn.fetchrow(_COUNT_MISSING_SQL, *args)
            assert missing is not None
            plan.missing = missing["missing"]
            plan.would_end_in_effect += missing["missing_in_effect"]
            plan.in_effect = await conn.fetchval(_COUNT_IN_EFFECT_SQL, *args)
        return plan

    async def apply(
        self, *, run_id: uuid.UUID | None, operator: str, basis: str, notify: bool = True
    ) -> list[EntryChange]:
        """Apply the plan: inserts, updates, ends, their events and subscription messages. Does not commit."""
        conn = self.conn
        now = dt.datetime.now(dt.UTC)
        await conn.execute(_INSERT_SQL, self.source_name, now, operator, basis, run_id)
        await conn.execute(_UPDATE_CHANGES_SQL)
        await conn.execute(_UPDATE_SQL, now)
        await conn.execute(_TOUCH_SQL)
        await conn.execute(_DELETE_PERSONS_SQL)
        await conn.execute(_INSERT_PERSONS_SQL)
        if self.complete:
            await conn.execute(_END_MISSING_SQL, self.source_name, self.today, now)
        await conn.execute(_EVENTS_SQL, now, operator, basis, run_id)
        changes: list[EntryChange] = []
        if notify and await any_subscription(self.session):
            published = await conn.fetch(_PUBLISHED_SQL)
            rows = await conn.fetch("SELECT entry_id, event FROM _sync_changes")
            changes = [EntryChange(r["entry_id"], "published", now) for r in published]
            changes += [EntryChange(r["entry_id"], r["event"], now) for r in rows]
            for start in range(0, len(changes), 5000):
                await fan_out(self.session, changes[start : start + 5000])
        return changes

    async def close(self) -> None:
        await self.conn.execute(_EMPTY_DDL)
