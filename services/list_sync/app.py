"""The list-sync service: `create_app(settings)`, and `app` for `uvicorn services.list_sync.app:app`."""

from __future__ import annotations

from fastapi import FastAPI
from shared.api.app import ServiceSpec, create_service_app
from shared.db.engine import Database
from shared.outbox.relay import relay_hook
from shared.settings import Settings

from services.list_sync.router import router
from services.list_sync.scheduler import scheduler

SPEC = ServiceSpec(
    name="list-sync",
    title="OneCheck list sync",
    description="Publishes list entries and their lifecycle (objection, repair, removal), pulls lists from upstream credit platforms and files, quarantines bad records, and notifies subscribers.",
    routers=[router],
    # The one outbox relay also runs here, so subscription callbacks go out when list-sync runs alone.
    hooks=[scheduler, relay_hook],
    openapi_tags=[
        {"name": "entries", "description": "List entries (名单条目) and their lifecycle."},
        {
            "name": "sync",
            "description": "Upstream sources, their runs and quarantined records (scope sync:admin).",
        },
        {
            "name": "subscriptions",
            "description": "Signed callbacks on changes to entries (scope lists:read).",
        },
    ],
)


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    return create_service_app(SPEC, settings, database=database)


app = create_app()
