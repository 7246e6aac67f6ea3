"""The check-api service: `create_app(settings)`, and `app` for `uvicorn services.check_api.app:app`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from shared.api.app import ServiceSpec, create_service_app
from shared.db.engine import Database
from shared.settings import Settings

from services.check_api.catalogue_cache import catalogue_cache
from services.check_api.router import router

log = logging.getLogger("onecheck.check_api")


@contextlib.asynccontextmanager
async def warm_catalogue(app: FastAPI) -> AsyncIterator[None]:
    """Load the catalogue at start-up so the first check does not pay for it (checks load it lazily anyway)."""
    try:
        db: Database = app.state.db
        async with db.connection() as conn:
            await catalogue_cache(app).get(conn)
    except Exception as exc:  # the database may not be there yet: /readyz says so, the first check loads it
        log.warning("catalogue not loaded at start-up (%s); it loads on first use", type(exc).__name__)
    yield


SPEC = ServiceSpec(
    name="check-api",
    title="OneCheck check API",
    description="The one-click check (信用奖惩、一键搞定): an approval item and a subject code in; the subject's red / black / watch-list entries and the exact measures the item must apply, each with its legal basis, out. Every check is recorded.",
    routers=[router],
    hooks=[warm_catalogue],
    openapi_tags=[
        {"name": "checks", "description": "Checks (信用核查): ask, read back, print the report."},
        {
            "name": "catalogue",
            "description": "The measure catalogue (措施清单) and item mapping (应用事项清单).",
        },
    ],
)


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    return create_service_app(SPEC, settings, database=database)


app = create_app()
