"""`/healthz` (process up), `/readyz` (database reachable, schema current), `/metrics` (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.api.openapi import problem_response, success
from shared.api.problems import problem
from shared.db.engine import Database
from shared.db.migrate import schema_state

router = APIRouter(tags=["operations"])

_METRICS_EXAMPLE = """\
# HELP onecheck_http_requests_total HTTP requests
# TYPE onecheck_http_requests_total counter
onecheck_http_requests_total{method="POST",route="/v1/checks",service="check-api",status="200"} 1042.0
# HELP onecheck_outbox_pending Outbox messages waiting for delivery
# TYPE onecheck_outbox_pending gauge
onecheck_outbox_pending{topic="feedback"} 0.0
"""


@router.get(
    "/healthz",
    summary="Liveness: the process is up",
    description="Answers 200 while the process serves; it touches no database. For liveness probes; use "
    "`/readyz` to know whether the service can do its work. No key needed.",
    response_model=dict[str, str],
    responses=success(200, {"ok": ("The process is up", {"status": "ok"})}, description="The process is up."),
)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database answers and its schema is the revision this code expects",
    description="200 when the database answers and its schema is the revision this code expects; else 503 "
    "`unavailable` with `Retry-After` (run `onecheck db upgrade` for a schema that is not current). For "
    "readiness probes and load balancers. No key needed.",
    responses={
        **success(
            200,
            {"ready": ("Ready", {"status": "ready", "schema": ["0005_check_summary_in_insert"]})},
            description="Ready: `schema` is the current revision.",
        ),
        503: problem_response(
            "Database unreachable or schema not current (`unavailable`, Retry-After).",
            (503, "unavailable", "Not ready", "database unreachable (ConnectionRefusedError)"),
            (
                503,
                "unavailable",
                "Not ready",
                "schema revision ['0004_check_match_inputs'] is not ['0005_check_summary_in_insert']: run "
                "`onecheck db upgrade`",
            ),
        ),
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


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Metrics in the Prometheus text format: requests and latency by service, route template and "
    "status, outbox depth, lag and dead letters, sync runs. Route templates only: never a raw path or a code. "
    "No key needed; keep it off the public network.",
    response_class=Response,
    responses=success(
        200,
        {"metrics": ("Some of the metrics", _METRICS_EXAMPLE)},
        media_type="text/plain",
        description="The metrics (text/plain; version=0.0.4).",
    ),
)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
