"""Sync runs: one pull of one source, from start to `succeeded`, `failed` or `held`.

One run per source at a time, whatever the number of replicas: the runner holds a PostgreSQL session-level
advisory lock on the source for the whole run (released by the server if the process dies), and the partial
unique index `uq_sync_runs_source_open` admits one running-or-held run per source. A `running` run whose
source lock is free has lost its process: whoever finds it marks it `failed`.

    feed       page by page: store the raw page, then in one transaction parse, quarantine, apply and move the
               source's cursor. A failed run keeps its committed pages; the next run resumes from the cursor.
    snapshot   always from no cursor: store every raw page (the next one is fetched meanwhile); then, in ONE
               transaction, read the stored pages back one at a time, validate each into COPY text rows
               (records.fast_record for the common record, parse_record for the rest) and COPY them into a
               staging table while the next page is validated, and apply the listing set-based, ending the
               source's entries the listing no longer carries. A failed run changes nothing. If it would end
               more than ONECHECK_SNAPSHOT_MAX_END_SHARE of the source's entries in effect, the run is `held`
               and nothing changes until confirm or discard. Confirm applies it in the background like a
               started run: it waits for the source lock, makes the run `running` again and re-applies the
               stored pages in one transaction; `succeeded` (or `failed`, nothing changed).
    file       a CSV or XLSX under ONECHECK_IMPORT_DIR, applied exactly like a snapshot of its source (the file
               is the source's complete listing; its rows have no `updated_at`, so none is ever stale).

Counts (contract): received = inserted + updated + unchanged + duplicates + stale + quarantined, per run.
`ended` is not part of that sum: it counts entries the run ended (an upstream `removed` for an entry not yet
ended, which is also counted as `updated`, plus entries missing from a complete snapshot, which are not
received records at all). `unmapped_legacy` counts the records counted inserted, updated or unchanged that
are kept under an org code / registration number no alias maps: once per source_id and run, never a stale
record or a duplicate (shared/entries.py `_COUNT_PLAN_SQL`). A repeat of a source_id within a run counts as a duplicate; if it is newer than the
version the run saw first it is still applied, so nothing newer is ever dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import json.encoder
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import asyncpg
import httpx
from shared.db.engine import Database
from shared.entries import (
    LEGACY_KINDS,
    BatchPlan,
    SyncBatch,
    content_digest_iso,
    raw_connection,
    resolve_aliases,
)
from shared.errors import Conflict, NotFound
from shared.ids import parse_uuid
from shared.lifecycle import business_date
from shared.models.sync import RUN_COUNT_KEYS
from shared.settings import Settings

from services.list_sync import metrics
from services.list_sync import repository as repo
from services.list_sync.records import (
    ListTypeInfo,
    Rejected,
    Valid,
    file_row_record,
    read_file_rows,
    storable_json,
    validate,
)
from services.list_sync.service import import_path
from services.list_sync.upstream import Fetched, MalformedPage, PageTooLarge, UpstreamClient, parse_envelope

log = logging.getLogger("onecheck.sync")

PAGE_LIMIT = 1000  # records asked per upstream page (the platform may send fewer)
WORKER = f"{socket.gethostname()}:{os.getpid()}"


class SourceFileError(Exception):
    """A file source's file is missing, unreadable or outside ONECHECK_IMPORT_DIR."""


def advisory_key(source: str) -> int:
    """A stable 64-bit key per source for pg_advisory_lock (hashtext would be 32 bits and collide sooner)."""
    return int.from_bytes(
        hashlib.sha256(b"onecheck.sync:" + source.encode()).digest()[:8], "big", signed=True
    )


@dataclass
class Counts:
    received: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    stale: int = 0
    quarantined: int = 0
    ended: int = 0
    unmapped_legacy: int = 0

    def add(self, plan: BatchPlan, staging: Staging) -> None:
        self.received += staging.received
        self.quarantined += staging.quarantined
        self.duplicates += staging.pre_duplicates + plan.duplicates
        self.inserted += plan.inserted
        self.updated += plan.updated
        self.unchanged += plan.unchanged
        self.stale += plan.stale
        self.ended += plan.ended
        self.unmapped_legacy += plan.unmapped_legacy

    def as_json(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Progress:
    phase: str  # fetch | apply
    pages: int
    records: int


ProgressFn = Callable[[Progress], None]


def run_view(row: Any) -> dict[str, Any]:
    counts = row["counts"] or {}
    return {
        "run_id": str(row["run_id"]),
        "source": row["source"],
        "status": row["status"],
        "started_at": repo.iso(row["started_at"]),
        "finished_at": repo.iso(row["finished_at"]),
        "counts": {key: int(counts.get(key, 0)) for key in RUN_COUNT_KEYS},
        "error": row["error"],
    }


class RunRegistry:
    """The runs this process is executing (so a request can tell its own live run from an abandoned one, and
    tests and shutdown can await them)."""

    def __init__(self) -> None:
        self.tasks: dict[uuid.UUID, asyncio.Task[Any]] = {}
        self.confirms: set[uuid.UUID] = set()  # held runs whose confirm is under way here

    def add(self, run_id: uuid.UUID, task: asyncio.Task[Any], *, confirm: bool = False) -> None:
        self.tasks[run_id] = task
        if confirm:
            self.confirms.add(run_id)

        def done(_: object) -> None:
            if self.tasks.get(run_id) is task:  # a confirm may follow its run's own task
                del self.tasks[run_id]
                self.confirms.discard(run_id)

        task.add_done_callback(done)

    async def wait(self, run_id: uuid.UUID | str) -> None:
        task = self.tasks.get(uuid.UUID(str(run_id)))
        if task is not None:
            await asyncio.wait([task])

    async def wait_all(self) -> None:
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()))

    async def shutdown(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.wait_all()


def registry_of(state: Any) -> RunRegistry:
    """The registry kept on `app.state`, made on first use (tests drive apps without a lifespan)."""
    registry: RunRegistry | None = getattr(state, "sync_runs", None)
    if registry is None:
        registry = RunRegistry()
        state.sync_runs = registry
    return registry


# --- records into staged rows ----------------------------------------------------------------------------

NULL = "\\N"  # COPY text's null
# COPY text escapes (the column separator is a tab); NUL never gets here (such a record is quarantined).
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
# What in a JSON text can make a string hold a NUL or a lone surrogate: a \u0000 or surrogate escape (pairs
# too, to keep it simple), or UTF-8 bytes of U+D800..U+DFFF, which json.loads(bytes) decodes
# ("surrogatepass") into a lone surrogate.
_UNSAFE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_ENCODED_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")


def page_flags(body: bytes) -> tuple[bool, bool]:
    """(safe, plain) for a JSON page. `safe`: no string in it can hold a NUL or a lone surrogate, so its
    records may take the fast path (records.fast_record). `plain`: it has no backslash at all, so no string
    holds a backslash, tab or newline (JSON escapes them all; raw control characters are invalid JSON) and
    COPY text needs no escaping."""
    if json.detect_encoding(body) != "utf-8":
        return False, False
    # bytes.find first: a regular expression over a whole page costs ~10 times more.
    safe = (b"\\u" not in body or _UNSAFE_ESCAPE.search(body) is None) and (
        b"\xed" not in body or _ENCODED_SURROGATE.search(body) is None
    )
    return safe, b"\\" not in body


def file_flags(body: bytes) -> tuple[bool, bool]:
    """(safe, plain) for a file source: a CSV decodes strictly (UTF-8 or GB18030: no lone surrogates), so
    it is safe without a NUL byte; an XLSX is a zip, left to the general path. Cells may hold anything COPY
    escapes, so never plain."""
    return body[:4] != b"PK\x03\x04" and b"\x00" not in body, False


def copy_text(value: str) -> str:
    return value.translate(_COPY_ESCAPES)


def _storable(value: str) -> bool:
    return "\x00" not in value and (value.isascii() or value.encode("utf-8", "replace").decode() == value)


def storable_text(value: str) -> str:
    """`value` as text PostgreSQL stores: a quarantine reason can quote a record's own key."""
    return value if _storable(value) else value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode()


_json_str = json.encoder.encode_basestring  # json.dumps(value, ensure_ascii=False) for a str


def _persons_json(persons: tuple[tuple[str, str, str], ...]) -> str:
    enc = _json_str
    return (
        "["
        + ", ".join([f'{{"role": {enc(r)}, "code": {enc(c)}, "name": {enc(n)}}}' for r, c, n in persons])
        + "]"
    )


def entry_id_base(now_ns: int | None = None) -> int:
    """The fixed bits of a run's entry ids (RFC 9562 UUIDv7): the run's Unix milliseconds, the version, its
    sub-millisecond fraction in `rand_a` (two runs share a base only if they start within ~0.25 µs), and
    the variant. `stage_row` adds the record's number (26 bits) and 36 random bits to the rest of `rand_b`,
    so a run's ids ascend with its records."""
    ns = time.time_ns() if now_ns is None else now_ns
    millis, fraction = divmod(ns // 1000, 1000)
    return (millis & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (fraction * 4096 // 1000) << 64 | 0b10 << 62


def stage_row(v: Valid, uscc: str | None, *, seen_before: bool, plain: bool, entry_id: int) -> str:
    """One COPY text row of shared.entries.STAGE_COLUMNS for a valid record; `uscc`: what an alias maps its
    legacy code to. `plain`: its text needs no escaping (see `page_flags`). `entry_id`: the id it gets if it
    is inserted (128 bits)."""
    code, kind, org = (uscc, "uscc", uscc[8:17]) if uscc is not None else (v.code, v.kind, v.org_code)
    persons = v.persons
    digest = content_digest_iso(
        v.list_type,
        code,
        v.name,
        sorted(persons) if len(persons) > 1 else persons,
        v.reason,
        v.decision_no,
        v.issuing_department,
        v.listed_on,
        v.expires_on,
    )
    people = _persons_json(persons) if persons else "[]"
    if plain:
        source_id, list_type, name, reason, decision_no, department = (
            v.source_id,
            v.list_type,
            v.name,
            v.reason,
            v.decision_no,
            v.issuing_department,
        )
    else:
        source_id, list_type, name, people, reason, decision_no, department = map(
            copy_text,
            (v.source_id, v.list_type, v.name, people, v.reason, v.decision_no, v.issuing_department),
        )
    # Codes are validated (letters and digits only), dates and times are ours: nothing to escape.
    return (
        f"{v.line}\t{source_id}\t{list_type}\t{v.list_kind}\t{code}\t{kind}\t{org or NULL}\t{v.code}\t{v.kind}\t"
        f"{name}\t{people}\t{reason}\t{decision_no}\t{department}\t{v.listed_on}\t{v.expires_on or NULL}\t"
        f"{v.status}\t{v.updated_at.isoformat() if v.updated_at else NULL}\t{digest}\t"
        f"{'t' if kind in LEGACY_KINDS else 'f'}\t{'t' if seen_before else 'f'}\t{entry_id:032x}\n"
    )


def person_rows(v: Valid, plain: bool) -> str:
    """COPY text rows of shared.entries.PERSON_COLUMNS for a valid record's linked persons."""
    if plain:
        return "".join([f"{v.line}\t{c}\t{r}\t{n}\n" for r, c, n in v.persons])
    return "".join([f"{v.line}\t{c}\t{r}\t{copy_text(n)}\n" for r, c, n in v.persons])


def _later(a: dt.datetime | None, b: dt.datetime | None) -> bool:
    return a is not None and (b is None or a > b)


AliasLookup = Callable[[list[str]], Awaitable[dict[str, str]]]


@dataclass(frozen=True, slots=True)
class PageRows:
    """One page's records as COPY text rows: staged records (shared.entries.STAGE_COLUMNS), their linked
    persons (PERSON_COLUMNS), every source_id named (valid or not: a quarantined record still counts as
    listed), and quarantine rows (run_id, line, raw, reason, rule)."""

    staged: bytes
    persons: bytes
    ids: bytes
    quarantine: bytes


class Staging:
    """Validates a run's records page by page into COPY text rows (`add`), and counts them. Nothing of a page
    outlives its rows: a million-record snapshot is never in memory as Python objects.

    `seen` (feeds only): the newest `updated_at` per source_id of the run's earlier pages; a repeat that is
    not newer is a duplicate and not staged (a snapshot stages all and lets SQL pick the newest)."""

    def __init__(
        self,
        run_id: uuid.UUID,
        *,
        list_types: dict[str, ListTypeInfo],
        today: dt.date,
        seen: dict[str, dt.datetime | None] | None = None,
        quarantine: bool = True,
    ) -> None:
        self.run_id = str(run_id)
        self.list_types = list_types
        self.today = today
        self.seen = seen
        self.keep_quarantine = quarantine
        self.id_base = entry_id_base()
        self.received = self.staged = self.quarantined = self.pre_duplicates = 0
        self.newest: dict[str, dt.datetime | None] = {}

    async def add(
        self, items: Iterable[tuple[int, Any, Any]], *, flags: tuple[bool, bool], aliases: AliasLookup
    ) -> PageRows:
        """Validate (line, record, raw) items of one page; map legacy codes through `aliases` (one lookup).
        `flags`: the page's (safe, plain), see `page_flags`."""
        safe, plain = flags
        valid: list[Valid] = []
        ids: list[str] = []
        rejected: list[str] = []
        types, today = self.list_types, self.today
        received = 0
        for line, record, raw in items:
            received += 1
            result = validate(record, line=line, raw=raw, list_types=types, today=today, safe=safe)
            if type(result) is Valid:
                valid.append(result)
                ids.append(result.source_id)
                continue
            assert isinstance(result, Rejected)
            self.quarantined += 1
            # A source_id PostgreSQL cannot store (NUL, lone surrogate) names no stored entry either.
            if result.source_id is not None and (safe or _storable(result.source_id)):
                ids.append(result.source_id)
            if self.keep_quarantine:
                rejected.append(
                    f"{self.run_id}\t{result.line}\t{copy_text(storable_json(result.raw))}\t"
                    f"{copy_text(storable_text(result.reason))}\t{copy_text(result.rule)}\n"
                )
        self.received += received
        legacy = [v.code for v in valid if v.kind in LEGACY_KINDS]
        mapped = await aliases(legacy) if legacy else {}
        rows: list[str] = []
        persons: list[str] = []
        seen, newest = self.seen, self.newest
        base, noise = self.id_base, os.urandom(5 * len(valid))
        for i, v in enumerate(valid):
            seen_before = False
            if seen is not None:
                if v.source_id in seen:
                    if not _later(v.updated_at, seen[v.source_id]):
                        self.pre_duplicates += 1
                        continue
                    seen_before = True
                if v.source_id not in newest or _later(v.updated_at, newest[v.source_id]):
                    newest[v.source_id] = v.updated_at
            uscc = mapped.get(v.code) if v.kind in LEGACY_KINDS else None
            entry_id = base | (v.line & 0x3FF_FFFF) << 36 | int.from_bytes(noise[5 * i : 5 * i + 5]) >> 4
            rows.append(stage_row(v, uscc, seen_before=seen_before, plain=plain, entry_id=entry_id))
            if v.persons:
                persons.append(person_rows(v, plain))
        self.staged += len(rows)
        return PageRows(
            staged="".join(rows).encode(),
            persons="".join(persons).encode(),
            ids=("\n".join(ids if plain else map(copy_text, ids)) + "\n").encode() if ids else b"",
            quarantine="".join(rejected).encode(),
        )


async def stage_page(conn: asyncpg.Connection, batch: SyncBatch, rows: PageRows) -> None:
    """COPY one page's rows in (inside the batch's transaction)."""
    if rows.staged:
        await batch.stage(rows.staged)
    if rows.persons:
        await batch.stage_persons(rows.persons)
    if rows.ids:
        await batch.stage_ids(rows.ids)
    if rows.quarantine:
        await repo.copy_quarantine(conn, rows.quarantine)


def page_items(kind: str, body: bytes, first_line: int) -> list[tuple[int, Any, Any]]:
    """(line, record, raw) of a stored page: a feed envelope's entries numbered on from `first_line`, or a
    file's rows numbered by their line in the file (quarantine keeps the row with its Chinese headers)."""
    if kind == "file":
        return [(line, file_row_record(row), row) for line, row in read_file_rows(body)]
    # Its content type was checked when it was fetched.
    envelope = parse_envelope(body, "application/json")
    return [(first_line + i, record, record) for i, record in enumerate(envelope.entries, start=1)]


def numbered(entries: list[Any], first_line: int) -> Iterator[tuple[int, Any, Any]]:
    return ((first_line + i, record, record) for i, record in enumerate(entries, start=1))


# --- one run ---------------------------------------------------------------------------------------------


@dataclass
class RunContext:
    db: Database
    settings: Settings
    source: Any  # the sync_sources row
    run_id: uuid.UUID
    today: dt.date
    deadline: float  # time.monotonic()
    list_types: dict[str, ListTypeInfo]
    progress: ProgressFn | None = None
    transport: httpx.AsyncBaseTransport | None = None

    @property
    def name(self) -> str:
        name: str = self.source["name"]
        return name

    @property
    def operator(self) -> str:
        return f"sync:{self.name}"

    @property
    def basis(self) -> str:
        return f"sync run {self.run_id}"

    def report(self, phase: str, pages: int, records: int) -> None:
        if self.progress is not None:
            self.progress(Progress(phase, pages, records))


async def _store(ctx: RunContext, seq: int, cursor: str | None, body: bytes) -> None:
    async with ctx.db.connection() as conn:
        await repo.store_page(conn, ctx.run_id, seq, cursor, body)


async def _fetched(ctx: RunContext, fetch: Awaitable[Fetched], cursor: str | None, seq: int) -> Fetched:
    try:
        return await fetch
    except PageTooLarge as exc:
        if exc.prefix:
            await _store(ctx, seq, cursor, exc.prefix)
        raise


def _upstream(ctx: RunContext) -> UpstreamClient:
    return UpstreamClient(
        ctx.source["base_url"],
        ctx.source["token"],
        ctx.settings,
        deadline=ctx.deadline,
        transport=ctx.transport,
    )


def _session_alias_lookup(session: Any) -> AliasLookup:
    async def lookup(codes: list[str]) -> dict[str, str]:
        return await resolve_aliases(session, codes)

    return lookup


async def _run_feed(ctx: RunContext) -> None:
    cursor: str | None = ctx.source["cursor"]
    counts = Counts()
    seen: dict[str, dt.datetime | None] = {}
    line = pages = 0
    async with _upstream(ctx) as upstream:
        while True:
            fetched = await _fetched(ctx, upstream.fetch(cursor, PAGE_LIMIT), cursor, pages + 1)
            pages += 1
            await _store(ctx, pages, cursor, fetched.body)
            envelope = parse_envelope(fetched.body, fetched.content_type)
            next_cursor = envelope.next_cursor if envelope.next_cursor is not None else cursor
            items = numbered(envelope.entries, line)
            line += len(envelope.entries)
            staging = Staging(ctx.run_id, list_types=ctx.list_types, today=ctx.today, seen=seen)
            async with ctx.db.session() as session:
                conn = await raw_connection(session)
                rows = await staging.add(
                    items, flags=page_flags(fetched.body), aliases=_session_alias_lookup(session)
                )
                batch = await SyncBatch.open(session, source_name=ctx.name, today=ctx.today)
                await stage_page(conn, batch, replace(rows, ids=b""))  # a feed page ends nothing
                plan = await batch.plan(complete=False)
                await batch.apply(run_id=ctx.run_id, operator=ctx.operator, basis=ctx.basis)
                await batch.close()
                counts.add(plan, staging)
                # The page, its effects and the cursor past it commit together: a crash resumes here.
                await repo.set_source_cursor(conn, ctx.name, next_cursor)
                await repo.save_progress(conn, ctx.run_id, counts.as_json(), next_cursor)
                await session.commit()
            for source_id, updated_at in staging.newest.items():
                if source_id not in seen or _later(updated_at, seen[source_id]):
                    seen[source_id] = updated_at
            ctx.report("fetch", pages, line)
            if not envelope.has_more:
                break
            if envelope.next_cursor is None:
                raise MalformedPage("has_more is true but next_cursor is missing")
            if envelope.next_cursor == cursor:
                raise MalformedPage("next_cursor did not advance")
            cursor = envelope.next_cursor
    async with ctx.db.connection() as conn:
        await repo.finish_run(conn, ctx.run_id, status="succeeded", from_status="running")


async def _run_snapshot(ctx: RunContext) -> None:
    """Store every page (the next one is on its way while this one is stored and read), then apply."""
    cursor: str | None = None
    pages = records = 0
    async with _upstream(ctx) as upstream:
        pending: asyncio.Future[Fetched] = asyncio.ensure_future(upstream.fetch(cursor, PAGE_LIMIT))
        try:
            while True:
                fetched = await _fetched(ctx, pending, cursor, pages + 1)
                pages += 1
                await _store(ctx, pages, cursor, fetched.body)
                envelope = parse_envelope(fetched.body, fetched.content_type)
                records += len(envelope.entries)
                ctx.report("fetch", pages, records)
                if not envelope.has_more:
                    break
                if envelope.next_cursor is None or envelope.next_cursor == cursor:
                    raise MalformedPage("has_more is true but next_cursor is missing or did not advance")
                cursor = envelope.next_cursor
                pending = asyncio.ensure_future(upstream.fetch(cursor, PAGE_LIMIT))
        finally:
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
    await apply_listing(ctx, force=False, from_status="running")


async def _run_file(ctx: RunContext) -> None:
    try:
        path = import_path(ctx.settings.import_dir, ctx.source["path"])
    except ValueError as exc:
        raise SourceFileError(str(exc)) from None
    if not path.is_file():
        raise SourceFileError(f"no file {ctx.source['path']!r} in ONECHECK_IMPORT_DIR")
    cap = ctx.settings.sync_max_page_bytes
    if path.stat().st_size > cap:
        raise PageTooLarge(f"file of {path.stat().st_size:,} bytes is over the cap of {cap:,} bytes")
    body = await asyncio.to_thread(path.read_bytes)
    await _store(ctx, 1, ctx.source["path"], body)
    ctx.report("fetch", 1, 0)
    await apply_listing(ctx, force=False, from_status="running")


HANDLERS = {"feed": _run_feed, "snapshot": _run_snapshot, "file": _run_file}


async def apply_listing(
    ctx: RunContext, *, force: bool, from_status: str, record_quarantine: bool = True
) -> str:
    """Apply a complete listing (snapshot or file) from the run's stored pages, in one transaction with the
    run's new status: each page is validated into COPY rows and staged, then the whole listing is classified
    and (unless held) applied set-based. Returns `held` or `succeeded`.

    One statement at a time runs on the transaction's connection, but a page's COPY is not waited for
    until the next page is validated: the database takes in one page while Python reads the next."""
    kind = ctx.source["kind"]
    staging = Staging(ctx.run_id, list_types=ctx.list_types, today=ctx.today, quarantine=record_quarantine)
    async with ctx.db.session() as session:
        conn = await raw_connection(session)
        if await repo.lock_run(conn, ctx.run_id) is None:
            raise NotFound("no such run")
        await repo.set_bulk_limits(conn, max(int((ctx.deadline - time.monotonic()) * 1000), 1000))
        batch = await SyncBatch.open(session, source_name=ctx.name, today=ctx.today)
        page_ids = await repo.page_ids(conn, ctx.run_id)
        copying: asyncio.Future[None] | None = None

        async def settle() -> None:
            nonlocal copying
            if copying is not None:
                task, copying = copying, None
                await task

        async def aliases(codes: list[str]) -> dict[str, str]:
            await settle()  # the connection runs one statement at a time
            return await resolve_aliases(session, codes)

        try:
            body = await repo.page_body(conn, page_ids[0]) if page_ids else b""
            for number in range(1, len(page_ids) + 1):
                flags = file_flags(body) if kind == "file" else page_flags(body)
                rows = await staging.add(
                    page_items(kind, body, staging.received), flags=flags, aliases=aliases
                )
                await settle()
                # One page at a time: a million-entry snapshot is never all in memory.
                body = await repo.page_body(conn, page_ids[number]) if number < len(page_ids) else b""
                copying = asyncio.ensure_future(stage_page(conn, batch, rows))
                ctx.report("apply", number, staging.received)
            await settle()
        finally:
            if copying is not None and not copying.done():
                copying.cancel()
                with contextlib.suppress(BaseException):
                    await copying
        plan = await batch.plan(complete=True)
        counts = Counts()
        counts.add(plan, staging)
        held = not force and plan.end_share > ctx.settings.snapshot_max_end_share
        if not held:
            await batch.apply(run_id=ctx.run_id, operator=ctx.operator, basis=ctx.basis)
        await batch.close()
        status = "held" if held else "succeeded"
        if not await repo.finish_run(
            conn, ctx.run_id, status=status, from_status=from_status, counts=counts.as_json()
        ):
            raise Conflict(f"the run is no longer {from_status}")
        await session.commit()
    if held:
        log.warning(
            "sync run %s of %s held: it would end %.1f%% of the source's entries in effect",
            ctx.run_id,
            ctx.name,
            plan.end_share * 100,
        )
    return status


LOCK_POLL_SECONDS = 0.1  # how often a confirm waiting for its source's lock tries again


@contextlib.asynccontextmanager
async def source_lock(
    db: Database, source: str, *, wait: Callable[[asyncpg.Connection], Awaitable[None]] | None = None
) -> AsyncIterator[None]:
    """Hold the source's session-level advisory lock. Without `wait`: Conflict if another session holds it.
    With it: wait for the lock, calling `wait(conn)` between attempts (it raises to stop waiting). Pooled
    connections are not reset on release, so if the unlock itself fails (a second cancellation, a broken link)
    the session is terminated: the server then drops the lock with it."""
    key = advisory_key(source)
    async with db.connection() as conn:
        while not await repo.try_lock(conn, key):
            if wait is None:
                raise Conflict(f"a run of source {source!r} is in progress")
            await wait(conn)
            await asyncio.sleep(LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            try:
                await repo.unlock(conn, key)
            except BaseException:
                conn.terminate()
                raise


async def _fail_running(conn: asyncpg.Connection, source: str) -> None:
    """We hold the source's lock: a run of it still marked running has lost its process."""
    for row in await repo.running_runs(conn, source):
        await repo.finish_run(
            conn,
            row["run_id"],
            status="failed",
            from_status="running",
            error=f"RunAbandoned: the process running it ({row['worker']}) stopped",
        )


async def fail_abandoned_runs(db: Database, source: str | None = None) -> int:
    """Mark `failed` the running runs whose source lock nobody holds (their process died). Returns how many."""
    failed = 0
    async with db.connection() as conn:
        for row in await repo.running_runs(conn, source):
            key = advisory_key(row["source"])
            if not await repo.try_lock(conn, key):
                continue  # alive somewhere
            try:
                if await repo.finish_run(
                    conn,
                    row["run_id"],
                    status="failed",
                    from_status="running",
                    error=f"RunAbandoned: the process running it ({row['worker']}) stopped",
                ):
                    failed += 1
            finally:
                try:
                    await repo.unlock(conn, key)
                except BaseException:
                    conn.terminate()  # never hand a locked session back to the pool
                    raise
    return failed


async def _fail(db: Database, run_id: uuid.UUID, error: str) -> None:
    async with db.connection() as conn:
        await repo.finish_run(conn, run_id, status="failed", from_status="running", error=error[:2000])


async def _read_view(db: Database, run_id: uuid.UUID) -> dict[str, Any]:
    async with db.connection() as conn:
        row = await repo.get_run(conn, run_id)
    assert row is not None
    return run_view(row)


async def execute_run(
    db: Database,
    settings: Settings,
    name: str,
    *,
    started: asyncio.Future[dict[str, Any]] | None = None,
    progress: ProgressFn | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any] | None:
    """Run one sync of source `name` to its end and return the run. Before the run exists it raises NotFound
    (no such source) or Conflict (a run is running or held) — or, given `started`, sets them on it and returns
    None; `started` receives the new run as soon as it exists."""
    try:
        return await _execute(db, settings, name, started, progress, transport)
    except Exception as exc:
        if started is None or started.done():
            raise
        started.set_exception(exc)
        return None
    finally:
        if started is not None and not started.done():
            started.cancel()


async def _execute(
    db: Database,
    settings: Settings,
    name: str,
    started: asyncio.Future[dict[str, Any]] | None,
    progress: ProgressFn | None,
    transport: httpx.AsyncBaseTransport | None,
) -> dict[str, Any]:
    async with source_lock(db, name):
        async with db.connection() as conn:
            source = await repo.get_source(conn, name)
            if source is None:
                raise NotFound(f"no source named {name!r}")
            await _fail_running(conn, name)
            row = await repo.create_run(
                conn,
                run_id=uuid.uuid4(),
                source=name,
                cursor_start=source["cursor"] if source["kind"] == "feed" else None,
                worker=WORKER,
            )
            if row is None:
                raise Conflict(f"a held run of source {name!r} awaits confirm or discard")
            types = await repo.list_types(conn)
        run_id: uuid.UUID = row["run_id"]
        if started is not None:
            started.set_result(run_view(row))
        log.info("sync run %s of %s (%s) started", run_id, name, source["kind"])
        ctx = RunContext(
            db=db,
            settings=settings,
            source=source,
            run_id=run_id,
            today=business_date(),
            deadline=time.monotonic() + settings.sync_run_deadline_seconds,
            list_types=types,
            progress=progress,
            transport=transport,
        )
        await _guarded(ctx)
        view = await _read_view(db, run_id)
        metrics.record_run(view)
        log.info("sync run %s of %s %s: %s", run_id, name, view["status"], view["counts"])
        return view


async def _guarded(ctx: RunContext, work: Callable[[], Awaitable[object]] | None = None) -> None:
    """Run the source's handler (or `work`) under the run deadline; any failure becomes the run's `failed`
    status (so it never escapes: in tests an escaping error would also roll back what the run committed)."""
    deadline = asyncio.timeout(ctx.settings.sync_run_deadline_seconds)
    try:
        async with deadline:
            await (work() if work is not None else HANDLERS[ctx.source["kind"]](ctx))
    except asyncio.CancelledError:
        await asyncio.shield(_fail(ctx.db, ctx.run_id, "RunCancelled: the process stopped the run"))
        raise
    except Exception as exc:
        if deadline.expired():
            error = (
                "RunDeadlineExceeded: the run took longer than ONECHECK_SYNC_RUN_DEADLINE_SECONDS "
                f"({ctx.settings.sync_run_deadline_seconds:g} s)"
            )
        else:
            error = f"{type(exc).__name__}: {exc}"
        log.warning("sync run %s of %s failed: %s", ctx.run_id, ctx.name, error)
        await _fail(ctx.db, ctx.run_id, error)


# --- API operations --------------------------------------------------------------------------------------


async def start_run(
    db: Database,
    settings: Settings,
    name: str,
    *,
    registry: RunRegistry,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """Start a run in the background; the new run (or NotFound / Conflict) as soon as it exists."""
    started: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        execute_run(db, settings, name, started=started, transport=transport), name=f"sync-run:{name}"
    )
    view = await started
    registry.add(uuid.UUID(view["run_id"]), task)
    return view


async def get_run(db: Database, run_id: str, *, registry: RunRegistry | None = None) -> dict[str, Any]:
    parsed = parse_uuid(run_id)
    if parsed is None:
        raise NotFound("no such run")
    async with db.connection() as conn:
        row = await repo.get_run(conn, parsed)
    if row is None:
        raise NotFound("no such run")
    local = registry is not None and parsed in registry.tasks
    if row["status"] == "running" and not local and await fail_abandoned_runs(db, row["source"]):
        return await _read_view(db, parsed)
    return run_view(row)


async def list_runs(db: Database, *, source: str | None, limit: int) -> dict[str, Any]:
    async with db.connection() as conn:
        rows = await repo.list_runs(conn, source, limit)
    return {"runs": [run_view(r) for r in rows]}


# How long POST /v1/runs/{run_id}/confirm waits for the apply to take the run (it waits for the source's lock,
# which other sessions hold only briefly while a run is held) before answering with the run still `held`.
CONFIRM_ANSWER_SECONDS = 2.0


async def confirm_run(
    db: Database,
    settings: Settings,
    run_id: str,
    *,
    registry: RunRegistry,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Confirm a held run: it is applied in the background, like a started run (`execute_confirm`). Returns the
    run as soon as the apply has taken it (`running`), or after CONFIRM_ANSWER_SECONDS if the source's lock is
    still busy (then still `held`: it is taken when the lock is free). NotFound; Conflict if it is not held or
    a confirm of it is already under way here."""
    parsed = parse_uuid(run_id)
    if parsed is None:
        raise NotFound("no such run")
    async with db.connection() as conn:
        row = await repo.get_run(conn, parsed)
    if row is None:
        raise NotFound("no such run")
    if row["status"] != "held":
        raise Conflict(f"the run is {row['status']}, not held")
    if parsed in registry.confirms:
        raise Conflict("the run is held, and a confirm of it is under way")
    taken: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        execute_confirm(db, settings, parsed, taken=taken, progress=progress),
        name=f"sync-confirm:{row['source']}",
    )
    registry.add(parsed, task, confirm=True)
    try:
        return await asyncio.wait_for(asyncio.shield(taken), CONFIRM_ANSWER_SECONDS)
    except TimeoutError:
        return run_view(row)
    finally:
        if not taken.done():
            taken.cancel()  # nobody waits any more: the task logs how it ends


async def execute_confirm(
    db: Database,
    settings: Settings,
    run_id: uuid.UUID,
    *,
    taken: asyncio.Future[dict[str, Any]] | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any] | None:
    """Apply held run `run_id` (its stored pages, against the entries as they are now) and return the run,
    `succeeded` (or `failed`, having changed nothing). Waits for the source's lock instead of refusing; under
    it the run becomes `running` in this process, so if the process dies mid-apply (one transaction: nothing
    changes) the run is `failed` when found, like any run. Before the run is taken it raises NotFound or
    Conflict (no longer held) — or, given `taken`, sets them on it (if still awaited; else logs) and returns
    None; `taken` receives the run as soon as it is `running`."""
    try:
        return await _confirm(db, settings, run_id, taken, progress)
    except Exception as exc:
        if taken is None:
            raise
        if not taken.done():
            taken.set_exception(exc)
        else:  # nobody awaits it any more (or the run was taken and failed after)
            log.warning("confirm of sync run %s: %s: %s", run_id, type(exc).__name__, exc)
        return None
    finally:
        if taken is not None and not taken.done():
            taken.cancel()


async def _confirm(
    db: Database,
    settings: Settings,
    run_id: uuid.UUID,
    taken: asyncio.Future[dict[str, Any]] | None,
    progress: ProgressFn | None,
) -> dict[str, Any]:
    async with db.connection() as conn:
        row = await repo.get_run(conn, run_id)
        if row is None:
            raise NotFound("no such run")
        source = await repo.get_source(conn, row["source"])
        types = await repo.list_types(conn)
    assert source is not None  # runs reference their source
    name: str = source["name"]
    give_up = time.monotonic() + settings.sync_run_deadline_seconds

    async def still_held(conn: asyncpg.Connection) -> None:
        current = await repo.get_run(conn, run_id)
        if current is None or current["status"] != "held":
            raise Conflict(f"the run is {current['status'] if current else 'gone'}, not held")
        if time.monotonic() > give_up:
            raise Conflict(f"the lock of source {name!r} stayed busy: the run is still held")

    async with source_lock(db, name, wait=still_held):
        async with db.connection() as conn:
            row = await repo.take_held_run(conn, run_id, WORKER)
            if row is None:  # discarded, or confirmed elsewhere, since it was read
                current = await repo.get_run(conn, run_id)
                raise Conflict(f"the run is {current['status'] if current else 'gone'}, not held")
        if taken is not None and not taken.done():
            taken.set_result(run_view(row))
        log.info("held sync run %s of %s confirmed: applying it", run_id, name)
        ctx = RunContext(
            db=db,
            settings=settings,
            source=source,
            run_id=run_id,
            today=business_date(),
            deadline=time.monotonic() + settings.sync_run_deadline_seconds,
            list_types=types,
            progress=progress,
        )
        # The quarantine was recorded when the run was held.
        await _guarded(
            ctx, lambda: apply_listing(ctx, force=True, from_status="running", record_quarantine=False)
        )
        view = await _read_view(db, run_id)
    metrics.record_run(view)
    log.info("sync run %s of %s %s: %s", run_id, name, view["status"], view["counts"])
    return view


async def discard_run(db: Database, run_id: str) -> dict[str, Any]:
    parsed = parse_uuid(run_id)
    if parsed is None:
        raise NotFound("no such run")
    async with db.connection() as conn:
        if not await repo.finish_run(conn, parsed, status="discarded", from_status="held"):
            row = await repo.get_run(conn, parsed)
            if row is None:
                raise NotFound("no such run")
            raise Conflict(f"the run is {row['status']}, not held")
    return await _read_view(db, parsed)
