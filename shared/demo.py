"""`onecheck demo load`: the demo catalogue and subjects of DOMAIN.md §7 (a copy lives in shared/data/).

Entries are dated relative to the day of the first load. Their ids derive from the subject, list type and
decision number, so a second run finds them and changes no data; it only (re)creates the demo client's key.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from importlib import resources
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.api.auth import hash_key, key_prefix, new_key
from shared.catalogue import CatalogueData, write_catalogue
from shared.codes import SubjectKind, normalise
from shared.entries import LinkedPerson, NewEntry, apply_event, insert_entry
from shared.lifecycle import business_date
from shared.models import ApiClient, ListEntry, SubjectAlias
from shared.models.access import SCOPES

DEMO_CLIENT_NAME = "demo"
DEMO_DEPARTMENT = "江门市政务服务数据管理局"
_NAMESPACE = uuid.UUID("6f1d3c2a-6e3b-4f0e-9a43-0e5b1f0c0d11")


def load_json(name: str) -> Any:
    return json.loads(resources.files("shared.data").joinpath(name).read_text(encoding="utf-8"))


def demo_catalogue() -> CatalogueData:
    data: CatalogueData = load_json("demo-catalogue.json")
    return data


def demo_subjects() -> list[dict[str, Any]]:
    subjects: list[dict[str, Any]] = load_json("demo-subjects.json")["subjects"]
    return subjects


def demo_entry_id(subject_code: str, entry: dict[str, Any]) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{subject_code}|{entry['list_type']}|{entry['decision_no']}")


async def load_subjects(session: AsyncSession, today: dt.date) -> int:
    """Insert the demo subjects' aliases and entries that are not there yet; returns how many entries."""
    made = 0
    for subject in demo_subjects():
        code = normalise(subject["code"], subject["kind"], today=today)
        for alias in subject.get("aliases", []):
            alias_code = normalise(alias["code"], alias["kind"], today=today)
            exists = await session.scalar(
                select(SubjectAlias.alias_code).where(SubjectAlias.alias_code == alias_code.code)
            )
            if exists is None:
                await session.execute(
                    insert(SubjectAlias).values(
                        alias_code=alias_code.code,
                        alias_kind=alias_code.kind.value,
                        uscc=code.code,
                        source="demo",
                    )
                )
        for raw in subject.get("entries", []):
            entry_id = demo_entry_id(code.code, raw)
            if (
                await session.scalar(select(ListEntry.entry_id).where(ListEntry.entry_id == entry_id))
                is not None
            ):
                continue
            expires = raw.get("expires_on_offset_days")
            persons = tuple(
                LinkedPerson(
                    p["role"], normalise(p["code"], SubjectKind.CITIZEN_ID, today=today).code, p["name"]
                )
                for p in raw.get("linked_persons", [])
            )
            await insert_entry(
                session,
                NewEntry(
                    list_type=raw["list_type"],
                    subject=code,
                    subject_name=subject["name"],
                    reason=raw["reason"],
                    decision_no=raw["decision_no"],
                    issuing_department=raw["issuing_department"],
                    listed_on=today + dt.timedelta(days=raw["listed_on_offset_days"]),
                    expires_on=today + dt.timedelta(days=expires) if expires is not None else None,
                    linked_persons=persons,
                    entry_id=entry_id,
                ),
                operator="demo",
                basis="演示数据",
            )
            status = "active"
            for event in raw.get("events", []):
                status = await apply_event(
                    session,
                    entry_id,
                    event["type"],
                    current_status=status,
                    operator="demo",
                    basis=event.get("basis"),
                )
            made += 1
    return made


async def rotate_demo_client(session: AsyncSession) -> str:
    """Create the demo client, or give it a new key; its id stays, so its earlier checks stay its own."""
    key = new_key()
    existing = await session.scalar(select(ApiClient.client_id).where(ApiClient.name == DEMO_CLIENT_NAME))
    if existing is None:
        await session.execute(
            insert(ApiClient).values(
                client_id=uuid.uuid4(),
                name=DEMO_CLIENT_NAME,
                department=DEMO_DEPARTMENT,
                scopes=list(SCOPES),
                any_department=True,
                key_hash=hash_key(key),
                key_prefix=key_prefix(key),
            )
        )
    else:
        await session.execute(
            update(ApiClient)
            .where(ApiClient.client_id == existing)
            .values(
                key_hash=hash_key(key),
                key_prefix=key_prefix(key),
                scopes=list(SCOPES),
                any_department=True,
                revoked_at=None,
            )
        )
    return key


async def load_demo(session: AsyncSession, today: dt.date | None = None) -> tuple[int | None, int, str]:
    """(new catalogue version or None, entries created, demo key). Commits."""
    today = today or business_date()
    version = await write_catalogue(
        session, demo_catalogue(), source="demo", note="DOMAIN.md §7 demo catalogue"
    )
    made = await load_subjects(session, today)
    key = await rotate_demo_client(session)
    await session.commit()
    return version, made, key
