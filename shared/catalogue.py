"""Writing the measure catalogue (demo load and `onecheck catalogue import` share this).

The data shape is that of `contract/fixtures/demo-catalogue.json`: list_types, memoranda, measures, items,
mappings. A write whose content equals the current version changes nothing; otherwise the catalogue is
replaced in one transaction and a new `catalogue_versions` row tells running processes to reload.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, TypedDict

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import CatalogueVersion, Item, ItemMapping, ListType, Measure, Memorandum

TARGETS = ("entity", "responsible_person", "natural_person")


class CatalogueData(TypedDict):
    list_types: list[dict[str, Any]]
    memoranda: list[dict[str, Any]]
    measures: list[dict[str, Any]]
    items: list[dict[str, Any]]
    mappings: list[dict[str, Any]]


def checksum(data: CatalogueData) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


async def current_version(session: AsyncSession) -> tuple[int, str | None]:
    row = (
        await session.execute(
            select(CatalogueVersion.version, CatalogueVersion.checksum)
            .order_by(CatalogueVersion.version.desc())
            .limit(1)
        )
    ).first()
    return (row[0], row[1]) if row else (0, None)


async def _upsert(session: AsyncSession, model: Any, rows: list[dict[str, Any]], key: str) -> None:
    if not rows:
        return
    stmt = pg_insert(model).values(rows)
    columns = {c: stmt.excluded[c] for c in rows[0] if c != key}
    await session.execute(stmt.on_conflict_do_update(index_elements=[key], set_=columns))


async def write_catalogue(
    session: AsyncSession, data: CatalogueData, *, source: str, note: str | None = None
) -> int | None:
    """Replace the catalogue with `data`; returns the new version, or None when nothing changed.

    List types are upserted, never deleted (entries reference them). Memoranda, measures and items are
    upserted; the item mapping is replaced whole. Does not commit.
    """
    digest = checksum(data)
    _, current = await current_version(session)
    if current == digest:
        return None
    await _upsert(
        session,
        ListType,
        [
            {
                "code": lt["code"],
                "name": lt["name"],
                "kind": lt["kind"],
                "issuing_authority": lt["issuing_authority"],
                "default_validity_days": lt.get("default_validity_days"),
                "removal_rule": lt.get("removal_rule"),
                "legal_basis": lt.get("legal_basis"),
            }
            for lt in data["list_types"]
        ],
        "code",
    )
    await _upsert(
        session,
        Memorandum,
        [
            {
                "code": m["code"],
                "title": m["title"],
                "doc_no": m.get("doc_no"),
                "kind": m["kind"],
                "list_types": m.get("list_types", []),
            }
            for m in data["memoranda"]
        ],
        "code",
    )
    await _upsert(
        session,
        Measure,
        [
            {
                "code": m["code"],
                "kind": m["kind"],
                "category": m["category"],
                "nature": m.get("nature"),
                "mandatory": bool(m.get("mandatory", True)),
                "content": m["content"],
                "targets": list(m["targets"]),
                "implementing_department": m.get("implementing_department"),
                "legal_basis": m["legal_basis"],
                "basis_level": m.get("basis_level"),
                "memorandum": m.get("memorandum"),
            }
            for m in data["measures"]
        ],
        "code",
    )
    await session.execute(delete(ItemMapping))
    await _upsert(
        session,
        Item,
        [
            {
                "code": i["code"],
                "name": i["name"],
                "type": i["type"],
                "department": i["department"],
                "section": i.get("section"),
                "system": i.get("system"),
            }
            for i in data["items"]
        ],
        "code",
    )
    rows = [
        {
            "item_code": m["item"],
            "list_type": m["list_type"],
            "measure_code": mm["measure"],
            "targets": list(mm["targets"]),
        }
        for m in data["mappings"]
        for mm in m["measures"]
    ]
    if rows:
        await session.execute(pg_insert(ItemMapping).values(rows))
    version = await session.scalar(
        pg_insert(CatalogueVersion)
        .values(source=source, note=note, checksum=digest)
        .returning(CatalogueVersion.version)
    )
    assert version is not None
    return int(version)


async def catalogue_counts(session: AsyncSession) -> dict[str, int]:
    out = {}
    for name, model in (
        ("list_types", ListType),
        ("memoranda", Memorandum),
        ("measures", Measure),
        ("items", Item),
        ("mappings", ItemMapping),
    ):
        out[name] = int(await session.scalar(select(func.count()).select_from(model)) or 0)
    return out
