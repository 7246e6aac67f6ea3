"""Helpers for list-sync tests: recorded upstream pages served with respx, codes, direct DB checks."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from services.list_sync import repository as repo
from services.list_sync.runs import execute_run
from shared.codes import citizen_id_check_char, org_code_check_char, uscc_check_char
from shared.db.engine import Database
from shared.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"
BASE = "https://upstream.test/api"
COUNT_KEYS = ("inserted", "updated", "unchanged", "duplicates", "stale", "quarantined")


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    return json.loads(fixture_bytes(name))


def page(body: bytes | dict[str, Any] | str, status: int = 200, **headers: str) -> httpx.Response:
    """An upstream answer: JSON for dicts and fixture names ending .json, raw bytes otherwise."""
    if isinstance(body, str):
        body = fixture_bytes(body)
    if isinstance(body, dict):
        body = json.dumps(body, ensure_ascii=False).encode()
    named = {k.replace("_", "-"): v for k, v in headers.items()}
    named.setdefault("content-type", "application/json")
    return httpx.Response(status, content=body, headers=named)


def envelope(entries: list[Any], next_cursor: str | None = None, has_more: bool = False) -> dict[str, Any]:
    return {"entries": entries, "next_cursor": next_cursor, "has_more": has_more}


Answer = httpx.Response | Exception | list[httpx.Response | Exception]


def by_cursor(answers: dict[str | None, Answer]) -> Callable[[httpx.Request], httpx.Response]:
    """A respx side effect answering by the `cursor` asked for; a list is used up one answer per call.
    Records every request on `.calls`."""
    queues = {k: (list(v) if isinstance(v, list) else v) for k, v in answers.items()}
    calls: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        cursor = request.url.params.get("cursor")
        if cursor not in queues:
            raise AssertionError(f"unexpected cursor {cursor!r}")
        value = queues[cursor]
        if isinstance(value, list):
            value = value.pop(0) if len(value) > 1 else value[0]
        if isinstance(value, Exception):
            raise value
        return value

    answer.calls = calls  # type: ignore[attr-defined]
    return answer


def uscc(index: int, prefix: str = "91440703") -> str:
    """A valid USCC whose organisation-code body derives from `index` (never all digits: no ambiguity)."""
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    body = "MA"
    n = index
    for _ in range(6):
        body += alphabet[n % 31]
        n //= 31
    org = body + org_code_check_char(body)
    first17 = prefix + org
    return first17 + uscc_check_char(first17)


def citizen_id(index: int) -> str:
    first17 = f"440703{dt.date(1970, 1, 1) + dt.timedelta(days=index % 15000):%Y%m%d}{index % 1000:03d}"
    return first17 + citizen_id_check_char(first17)


def record(
    source_id: str,
    *,
    code: str | None = None,
    name: str | None = None,
    list_type: str = "LT01",
    listed_on: dt.date | str | None = None,
    expires_on: Any = ...,
    status: str = "active",
    updated_at: dt.datetime | str | None = None,
    reason: str = "有履行能力而拒不履行生效法律文书确定义务",
    **extra: Any,
) -> dict[str, Any]:
    """An upstream record; dates default to ones in effect today."""
    today = dt.date.today()
    listed = listed_on or today - dt.timedelta(days=30)
    out: dict[str, Any] = {
        "source_id": source_id,
        "list_type": list_type,
        "subject": {
            "code": code or uscc(abs(hash(source_id)) % 10**8),
            "name": name or f"测试主体{source_id}有限公司",
        },
        "reason": reason,
        "decision_no": f"测试〔2026〕{source_id}号",
        "issuing_department": "江门市人民法院",
        "listed_on": listed if isinstance(listed, str) else listed.isoformat(),
        "status": status,
    }
    if expires_on is not ...:
        out["expires_on"] = expires_on.isoformat() if isinstance(expires_on, dt.date) else expires_on
    if updated_at is not None:
        out["updated_at"] = updated_at if isinstance(updated_at, str) else updated_at.isoformat()
    out.update(extra)
    return out


async def add_source(
    db: Database,
    name: str,
    kind: str = "feed",
    *,
    base_url: str | None = BASE,
    path: str | None = None,
    token: str | None = "upstream-token",
) -> None:
    async with db.connection() as conn:
        row = await repo.insert_source(
            conn,
            name=name,
            kind=kind,
            base_url=None if kind == "file" else base_url,
            path=path,
            token=None if kind == "file" else token,
            interval_seconds=None,
        )
    assert row is not None


async def run(db: Database, settings: Settings, name: str) -> dict[str, Any]:
    view = await execute_run(db, settings, name)
    assert view is not None
    assert_conserved(view["counts"])
    return view


def assert_conserved(counts: dict[str, int]) -> None:
    assert counts["received"] == sum(counts[k] for k in COUNT_KEYS), counts


async def entries_of(db: Database, source: str) -> dict[str, Any]:
    """source_id → the stored entry row."""
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT * FROM list_entries WHERE source_name = $1", source)
    return {r["source_record_id"]: r for r in rows}


async def events_of(db: Database, entry_id: Any) -> list[str]:
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT event FROM entry_events WHERE entry_id = $1 ORDER BY id", entry_id)
    return [r["event"] for r in rows]


async def fetch(db: Database, sql: str, *args: Any) -> list[Any]:
    async with db.connection() as conn:
        rows: list[Any] = await conn.fetch(sql, *args)
    return rows
