"""The feedback service: `create_app(settings)`, and `app` for `uvicorn services.feedback.app:app`."""

from __future__ import annotations

from fastapi import FastAPI
from shared.api.app import ServiceSpec, create_service_app
from shared.db.engine import Database
from shared.outbox.relay import relay_hook
from shared.settings import Settings

from services.feedback.router import router

SPEC = ServiceSpec(
    name="feedback",
    title="OneCheck feedback",
    description="Collects what business systems applied (反馈), shows issuing departments the enforcement of their entries (发起-响应-反馈), counts enforcement, and forwards feedback to the upstream platform.",
    routers=[router],
    # The one outbox relay of the process (feedback forwarding and subscription callbacks).
    hooks=[relay_hook],
    openapi_tags=[
        {"name": "feedback", "description": "Feedback on checks, the issuing department's view, statistics."}
    ],
)


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    return create_service_app(SPEC, settings, database=database)


app = create_app()
