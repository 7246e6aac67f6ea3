"""Schema revisions: `onecheck db upgrade`, and the check every service makes before it serves."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s")
    if database_url:
        config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "heads") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def code_heads() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return {rev.revision for rev in script.walk_revisions()}


class SchemaState:
    """What a service knows of the database's schema revision."""

    def __init__(self, current: set[str]) -> None:
        self.current = current
        self.heads = code_heads()
        self.known = known_revisions()

    @property
    def is_current(self) -> bool:
        return self.current == self.heads

    @property
    def unknown(self) -> set[str]:
        return self.current - self.known


async def schema_state(conn: asyncpg.Connection) -> SchemaState:
    exists = await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
    current: set[str] = set()
    if exists:
        current = {row[0] for row in await conn.fetch("SELECT version_num FROM alembic_version")}
    return SchemaState(current)
