"""The audit log (查询记录): one append-only row for every request that reads or writes personal data."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.api.text import scrub_nul
from shared.codes import SubjectKind, mask_code, pii_hmac

INSERT_AUDIT_SQL = """
INSERT INTO audit_log (client_id, department, operator, action, method, path, status, item_code,
                       subject_masked, subject_hmac, object_id, request_id, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
"""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    client_id: uuid.UUID | None
    department: str | None
    action: str
    operator: str | None = None
    method: str | None = None
    path: str | None = None
    status: int | None = None
    item_code: str | None = None
    subject_masked: str | None = None
    subject_hmac: str | None = None
    object_id: str | None = None
    request_id: str | None = None
    detail: dict[str, Any] | None = None

    def args(self) -> tuple[Any, ...]:
        # A refused request is recorded as it came (the path and id it asked for), but `text` and `jsonb`
        # cannot hold a NUL: each is stored as U+FFFD.
        return (
            self.client_id,
            _scrub(self.department),
            _scrub(self.operator),
            self.action,
            self.method,
            _scrub(self.path),
            self.status,
            _scrub(self.item_code),
            _scrub(self.subject_masked),
            self.subject_hmac,
            _scrub(self.object_id),
            self.request_id,
            json.dumps(_scrub(self.detail), ensure_ascii=False) if self.detail is not None else None,
        )


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_nul(value)
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def subject_fields(code: str, kind: SubjectKind | str, key: bytes) -> tuple[str, str | None]:
    """(masked code, HMAC or None): personal ids are masked and correlated by HMAC; organisations are not."""
    if str(kind) == SubjectKind.CITIZEN_ID:
        return mask_code(code, kind), pii_hmac(code, key)
    return code, None


async def record(conn: asyncpg.Connection, entry: AuditRecord) -> None:
    await conn.execute(INSERT_AUDIT_SQL, *entry.args())


async def record_many(conn: asyncpg.Connection, entries: list[AuditRecord]) -> None:
    if entries:
        await conn.executemany(INSERT_AUDIT_SQL, [e.args() for e in entries])
