"""All three services in one process (`onecheck serve`): for a single machine and the demo."""

from __future__ import annotations

from fastapi import FastAPI

from services.check_api.app import SPEC as CHECK_API
from services.feedback.app import SPEC as FEEDBACK
from services.list_sync.app import SPEC as LIST_SYNC
from shared.api.app import ServiceSpec, create_service_app
from shared.db.engine import Database
from shared.settings import Settings

SPECS = {"check-api": CHECK_API, "list-sync": LIST_SYNC, "feedback": FEEDBACK}


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    return create_service_app(ServiceSpec.combine(list(SPECS.values())), settings, database=database)


def app_factory() -> FastAPI:
    """For `uvicorn --factory shared.api.combined:app_factory` (each worker builds its own app)."""
    return create_app()
