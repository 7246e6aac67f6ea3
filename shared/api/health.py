"""`/healthz` (process up), `/readyz` (database reachable, schema current), `/metrics` (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.api.problems import problem
from shared.db.engine import Database
from shared.db.migrate import schema_state

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process is up", response_model=dict[str, str])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database answers and its schema is the revision this code expects",
    responses={
        503: {"description": "database unreachable or schema not current (problem+json, Retry-After)"}
    },
)
async def readyz(request: Request) -> Any:
    db: Database = request.app.state.db
    try:
        async with db.connection() as conn:
            state = await schema_state(conn)
    except Exception as exc:  # any failure to reach the database means: not ready
        return problem(
            503,
            "unavailable",
            "Not ready",
            f"database unreachable ({type(exc).__name__})",
            headers={"Retry-After": "2"},
        )
    if not state.is_current:
        return problem(
            503,
            "unavailable",
            "Not ready",
            f"schema revision {sorted(state.current)} is not {sorted(state.heads)}: run `onecheck db upgrade`",
            headers={"Retry-After": "10"},
        )
    return JSONResponse({"status": "ready", "schema": sorted(state.current)})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
