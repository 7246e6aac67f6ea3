"""Small async builders for test data (no factories): each makes exactly what a test names."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from shared.api.auth import hash_key, key_prefix, new_key
from shared.catalogue import write_catalogue
from shared.codes import SubjectKind, normalise
from shared.db.engine import Database
from shared.demo import demo_catalogue, load_subjects
from shared.entries import LinkedPerson, NewEntry, apply_event, insert_entry
from shared.lifecycle import business_date
from shared.models.access import SCOPES

ALL_SCOPES = ",".join(SCOPES)


async def make_client(
    db: Database,
    *,
    scopes: str | list[str] = ALL_SCOPES,
    department: str = "江门市政务服务数据管理局",
    any_department: bool = False,
    name: str | None = None,
) -> tuple[uuid.UUID, str]:
    """An API client; returns (client_id, key)."""
    scope_list = scopes.split(",") if isinstance(scopes, str) else scopes
    key = new_key()
    client_id = uuid.uuid4()
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO api_clients (client_id, name, department, scopes, any_department, key_hash, key_prefix) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            client_id,
            name or f"test-{client_id.hex[:8]}",
            department,
            [s for s in scope_list if s],
            any_department,
            hash_key(key),
            key_prefix(key),
        )
    return client_id, key


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def load_catalogue(db: Database) -> int | None:
    """The demo catalogue (DOMAIN.md §7): 9 list types, 33 measures, 12 items, 37 mappings."""
    async with db.session() as session:
        version = await write_catalogue(session, demo_catalogue(), source="demo")
        await session.commit()
    return version


async def load_demo_subjects(db: Database, today: dt.date | None = None) -> int:
    async with db.session() as session:
        made = await load_subjects(session, today or business_date())
        await session.commit()
    return made


async def make_entry(
    db: Database,
    *,
    list_type: str = "LT01",
    code: str = "91110105MA01ABCD5F",
    kind: str | None = None,
    name: str = "测试主体有限公司",
    listed_on: dt.date | None = None,
    expires_on: dt.date | None = None,
    issuing_department: str = "江门市人民法院",
    linked_persons: list[dict[str, str]] | None = None,
    events: list[str] | None = None,
    reason: str = "测试事由",
    decision_no: str = "测试〔2026〕1号",
    today: dt.date | None = None,
) -> uuid.UUID:
    """An entry (published through the shared write path), optionally taken through lifecycle events."""
    today = today or business_date()
    subject = normalise(code, kind, today=today)
    persons = tuple(
        LinkedPerson(p["role"], normalise(p["code"], SubjectKind.CITIZEN_ID, today=today).code, p["name"])
        for p in (linked_persons or [])
    )
    listed = listed_on or today - dt.timedelta(days=10)
    async with db.session() as session:
        entry_id = await insert_entry(
            session,
            NewEntry(
                list_type=list_type,
                subject=subject,
                subject_name=name,
                reason=reason,
                decision_no=decision_no,
                issuing_department=issuing_department,
                listed_on=listed,
                expires_on=expires_on,
                linked_persons=persons,
            ),
            operator="test",
        )
        status = "active"
        for event in events or []:
            status = await apply_event(
                session, entry_id, event, current_status=status, operator="test", basis="测试"
            )
        await session.commit()
    return entry_id


def json_of(response: Any) -> Any:
    return response.json()
