"""API clients: creation (`onecheck clients create`) and listing."""

from __future__ import annotations

import uuid

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.api.auth import hash_key, key_prefix, new_key
from shared.models import ApiClient
from shared.models.access import SCOPES


class ClientError(ValueError):
    pass


def parse_scopes(raw: str) -> list[str]:
    scopes = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ClientError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    if not scopes:
        raise ClientError("give at least one scope")
    return scopes


async def create_client(
    session: AsyncSession, *, name: str, department: str, scopes: list[str], any_department: bool = False
) -> tuple[uuid.UUID, str]:
    """Create a client; returns (client_id, key). The key is shown once and stored only as a hash."""
    if not name.strip() or not department.strip():
        raise ClientError("name and department must not be empty")
    if await session.scalar(select(ApiClient.client_id).where(ApiClient.name == name)) is not None:
        raise ClientError(f"a client named {name!r} exists already")
    key = new_key()
    client_id = uuid.uuid4()
    await session.execute(
        insert(ApiClient).values(
            client_id=client_id,
            name=name,
            department=department,
            scopes=scopes,
            any_department=any_department,
            key_hash=hash_key(key),
            key_prefix=key_prefix(key),
        )
    )
    await session.commit()
    return client_id, key
