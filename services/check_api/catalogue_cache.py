"""The measure catalogue in memory, one copy per process (per app), loaded lazily and reloaded on a new version.

Every check query also returns the current catalogue version; when it differs from the cached one, the cache
reloads (one statement) before the answer is built. So an import is picked up by every running process on its
next check, without a restart and without a poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import asyncpg
from fastapi import FastAPI

from services.check_api import repository


@dataclass(frozen=True, slots=True)
class Item:
    code: str
    name: str
    type: str
    department: str
    section: str | None
    system: str | None

    def summary(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "department": self.department,
            "section": self.section,
            "type": self.type,
            "system": self.system,
        }


@dataclass(frozen=True, slots=True)
class MappedMeasure:
    measure: str
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Catalogue:
    version: int
    items: Mapping[str, Item]
    list_types: Mapping[str, dict[str, Any]]
    measures: Mapping[str, dict[str, Any]]
    memoranda: Mapping[str, dict[str, Any]]
    # item code → list type code → measures with the targets they apply to for that item
    mappings: Mapping[str, Mapping[str, tuple[MappedMeasure, ...]]]
    # measure code → the fields every answer shows for it (built once per version)
    measure_views: Mapping[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any]) -> Catalogue:
        memoranda = {m["code"]: m for m in snapshot["memoranda"]}
        measures = {m["code"]: m for m in snapshot["measures"]}
        mappings: dict[str, dict[str, list[MappedMeasure]]] = {}
        for row in snapshot["mappings"]:
            per_item = mappings.setdefault(row["item_code"], {})
            per_item.setdefault(row["list_type"], []).append(
                MappedMeasure(row["measure_code"], tuple(row["targets"]))
            )
        views = {code: _measure_view(m, memoranda) for code, m in measures.items()}
        return cls(
            version=int(snapshot["version"]),
            items=MappingProxyType({i["code"]: Item(**i) for i in snapshot["items"]}),
            list_types=MappingProxyType({lt["code"]: lt for lt in snapshot["list_types"]}),
            measures=MappingProxyType(measures),
            memoranda=MappingProxyType(memoranda),
            mappings=MappingProxyType(
                {
                    item: MappingProxyType({lt: tuple(ms) for lt, ms in per.items()})
                    for item, per in mappings.items()
                }
            ),
            measure_views=MappingProxyType(views),
        )

    def measure_view(self, code: str) -> dict[str, Any]:
        """A fresh copy of the answer fields of a measure (callers add target, triggered_by …)."""
        return dict(self.measure_views[code])

    def measure_with_targets(self, code: str, targets: tuple[str, ...] | list[str]) -> dict[str, Any]:
        return {**self.measure_view(code), "targets": list(targets)}

    def item_detail(self, item: Item) -> dict[str, Any]:
        mappings = self.mappings.get(item.code, {})
        return {
            **item.summary(),
            "mappings": [
                {
                    "list_type": list_type,
                    "measures": [
                        self.measure_with_targets(m.measure, m.targets) for m in mappings[list_type]
                    ],
                }
                for list_type in sorted(mappings)
            ],
        }


def _measure_view(measure: Mapping[str, Any], memoranda: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    memo_code = measure.get("memorandum")
    memo = memoranda.get(memo_code) if memo_code else None
    return {
        "code": measure["code"],
        "kind": measure["kind"],
        "category": measure["category"],
        "content": measure["content"],
        "mandatory": bool(measure["mandatory"]),
        "legal_basis": measure["legal_basis"],
        # The memorandum's title is what a clerk reads; its code is alongside for machines.
        "memorandum": memo["title"] if memo else None,
        "memorandum_code": memo_code,
        "nature": measure.get("nature"),
        "implementing_department": measure.get("implementing_department"),
        "basis_level": measure.get("basis_level"),
    }


class CatalogueCache:
    def __init__(self) -> None:
        self._catalogue: Catalogue | None = None
        self._lock = asyncio.Lock()

    @property
    def current(self) -> Catalogue | None:
        return self._catalogue

    async def get(self, conn: asyncpg.Connection) -> Catalogue:
        """The cached catalogue, loaded on first use (no query once loaded)."""
        return self._catalogue if self._catalogue is not None else await self._load(conn, None)

    async def at_version(self, conn: asyncpg.Connection, version: int) -> Catalogue:
        """A catalogue at least as new as `version` (the one a check query just saw): the cached one if it is,
        else the current one, reloaded, which may be newer still. Callers report the `version` of what they
        get, never the one they asked for."""
        cached = self._catalogue
        if cached is not None and cached.version >= version:
            return cached
        return await self._load(conn, version)

    async def fresh(self, conn: asyncpg.Connection) -> Catalogue:
        """Checks the version first (one small query): for reads that are not on the hot path."""
        return await self.at_version(conn, await repository.catalogue_version(conn))

    async def _load(self, conn: asyncpg.Connection, wanted: int | None) -> Catalogue:
        async with self._lock:
            cached = self._catalogue
            # Another request may have loaded it (or a newer one) while this one waited.
            if cached is not None and (wanted is None or cached.version >= wanted):
                return cached
            catalogue = Catalogue.from_snapshot(await repository.load_catalogue(conn))
            self._catalogue = catalogue
            return catalogue


def catalogue_cache(app: FastAPI) -> CatalogueCache:
    """The app's cache, created on first use (tests drive apps without a lifespan)."""
    cache: CatalogueCache | None = getattr(app.state, "catalogue_cache", None)
    if cache is None:
        cache = CatalogueCache()
        app.state.catalogue_cache = cache
    return cache
