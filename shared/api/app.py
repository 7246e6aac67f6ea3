"""`create_service_app`: what every OneCheck service shares (lifespan, errors, middleware, health, docs).

A service describes itself with a `ServiceSpec` (its routers and start-up hooks); `onecheck serve` combines
the three specs into one app for a single machine.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI

from shared.api.health import router as health_router
from shared.api.middleware import RequestContextMiddleware
from shared.api.openapi import restore_examples, route_scopes
from shared.api.problems import CatchUnexpected, document_problems, install_problem_handlers
from shared.db.embedded import resolve_database_url
from shared.db.engine import Database
from shared.db.maintenance import maintenance_hook
from shared.db.migrate import schema_state
from shared.settings import Settings, get_settings

log = logging.getLogger("onecheck.app")

# A start-up hook: an async context manager factory taking the app; it runs while the app serves.
Hook = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]


class UnknownSchemaError(RuntimeError):
    """The database has a schema revision this code does not know (a newer OneCheck migrated it)."""


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    title: str
    description: str
    routers: Sequence[APIRouter] = ()
    hooks: Sequence[Hook] = ()
    openapi_tags: Sequence[dict[str, Any]] = field(default_factory=tuple)

    @staticmethod
    def combine(specs: Sequence[ServiceSpec]) -> ServiceSpec:
        return ServiceSpec(
            name="onecheck",
            title="OneCheck",
            description="All OneCheck services in one process: " + ", ".join(s.name for s in specs) + ".",
            routers=[r for s in specs for r in s.routers],
            hooks=[h for s in specs for h in s.hooks],
            openapi_tags=[t for s in specs for t in s.openapi_tags],
        )


async def verify_schema(db: Database) -> None:
    """Refuse a schema we do not know; tolerate an unreachable database (readiness reports it)."""
    try:
        async with db.connection() as conn:
            state = await schema_state(conn)
    except Exception as exc:
        log.warning(
            "database not reachable at start-up (%s); /readyz will say when it is", type(exc).__name__
        )
        return
    if state.unknown:
        raise UnknownSchemaError(
            f"database schema revision {sorted(state.unknown)} is unknown to this OneCheck "
            f"(knows up to {sorted(state.heads)}); refusing to start"
        )
    if not state.is_current:
        log.warning("schema is not current (%s); run `onecheck db upgrade`", sorted(state.current))


def create_service_app(
    spec: ServiceSpec, settings: Settings | None = None, *, database: Database | None = None
) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = database or Database(resolve_database_url(settings), settings, application_name=spec.name)
        app.state.db = db
        try:
            if database is None:
                await verify_schema(db)
            async with contextlib.AsyncExitStack() as stack:
                if database is None:
                    await stack.enter_async_context(maintenance_hook(app))
                for hook in spec.hooks:
                    await stack.enter_async_context(hook(app))
                yield
        finally:
            if database is None:
                await db.close()

    app = FastAPI(
        title=spec.title,
        description=spec.description,
        version="1.0.0",
        lifespan=lifespan,
        openapi_tags=[
            *spec.openapi_tags,
            {"name": "operations", "description": "Health, readiness and metrics."},
        ],
    )
    app.state.settings = settings
    app.state.service = spec.name
    if database is not None:
        app.state.db = database
    install_problem_handlers(app)
    for router in spec.routers:
        app.include_router(router)
    app.include_router(health_router)
    openapi = app.openapi

    def openapi_with_problems() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = restore_examples(copy.deepcopy(openapi()), app)
            app.openapi_schema = document_problems(doc, route_scopes(app))
        return app.openapi_schema

    app.openapi = openapi_with_problems  # type: ignore[method-assign]
    # The last added is the outermost: every answer, a caught exception's problem too, passes through the
    # request context (request id, no-store, body limit, access log and metrics).
    app.add_middleware(CatchUnexpected)
    app.add_middleware(
        RequestContextMiddleware,
        service=spec.name,
        max_body_bytes=settings.max_body_bytes,
        access_log=settings.access_log,
    )
    return app
