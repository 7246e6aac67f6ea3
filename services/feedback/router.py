"""HTTP routes of the feedback service (thin: validation and auth here, logic in service.py)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from shared.api.auth import Client, FeedbackClient, FeedbackReader, ListsReader, StatsReader, SyncAdmin
from shared.api.deps import DB
from shared.api.idempotency import run_idempotent
from shared.api.openapi import ExampleBook, problem_response
from shared.api.text import NulFree
from shared.errors import NotFound, OneCheckError, ValidationFailed
from shared.ids import parse_uuid
from shared.outbox.relay import outbox_status, refresh_metrics, replay_dead_letters_conn

from services.feedback import service
from services.feedback.repository import StatsFilter
from services.feedback.schemas import (
    EnforcementStats,
    EntryEnforcement,
    FeedbackIn,
    FeedbackStatus,
    OutboxStatus,
    ReplayResult,
)

router = APIRouter()

# 401, 403 (scope), 409/422 of the Idempotency-Key, 413, 422, 429 and 503 are added centrally
# (shared/api/problems.py: document_problems); a route documents its own cases only.
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: problem_response(
        "No such id, or not yours (the same answer: `not_found`)",
        (404, "not_found", "Not found", "no such check"),
    ),
}

CheckIdPath = Annotated[str, Path(description="The `check_id` of one of your checks")]

# docs/examples/feedback/, from real runs (the package carries them as a bundle: shared/api/openapi.py).
EX = ExampleBook("services.feedback")


def _request_info(request: Request) -> service.RequestInfo:
    return service.RequestInfo(
        method=request.method,
        path=request.url.path,
        request_id=getattr(request.state, "request_id", None),
    )


async def _audited_refusal(
    db: DB,
    client: Client,
    request: Request,
    exc: OneCheckError,
    *,
    action: str,
    object_id: str,
    operator: str | None = None,
) -> None:
    async with db.connection() as conn:
        await service.audit_refusal(
            conn,
            client=client,
            action=action,
            status=exc.status,
            object_id=object_id,
            request=_request_info(request),
            operator=operator,
        )


@router.post(
    "/v1/checks/{check_id}/feedback",
    tags=["feedback"],
    summary="Report what was decided and applied for a check (反馈)",
    description="Only the client that made the check. Feedback may come in parts; a new status or note for a "
    "measure is a new version, and every version is kept. Answers the feedback status, as GET does. "
    "Send an `Idempotency-Key` to retry safely.",
    response_model=FeedbackStatus,
    responses=EX.success(200, "post-feedback", description="The feedback status after this report.")
    | _ERRORS
    | {
        409: {"description": "The same Idempotency-Key is still in flight (`conflict`)"},
        422: problem_response(
            "Invalid body (a `not_applied` or `not_applicable` status without a note, a measure twice), a code "
            "that is not one of the check's measures, or Idempotency-Key reused",
            (
                422,
                "validation_error",
                "Invalid request",
                "measure codes not among this check's measures or suspended measures: M99",
                {
                    "errors": [
                        {"loc": ["body", "measures", 0, "code"], "msg": "M99 is not a measure of this check"}
                    ]
                },
            ),
        ),
    },
    openapi_extra=EX.request_body("post-feedback"),
)
async def post_feedback(
    check_id: CheckIdPath,
    body: FeedbackIn,
    request: Request,
    client: FeedbackClient,
    db: DB,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="Retries with the same key and body answer once"),
    ] = None,
) -> Response:
    parsed = parse_uuid(check_id)
    info = _request_info(request)

    async def produce() -> tuple[int, Any]:
        try:
            async with db.connection() as conn:
                status = await service.submit_feedback(
                    conn, client=client, check_id=parsed, body=body, request=info
                )
        except OneCheckError as exc:
            await _audited_refusal(
                db, client, request, exc, action="feedback.submit", object_id=check_id, operator=body.operator
            )
            raise
        return 200, status.model_dump(mode="json")

    # The key is scoped to this check: the same key on another check is another request.
    route = f"POST /v1/checks/{parsed or check_id}/feedback"
    return await run_idempotent(
        db, client, route=route, key=idempotency_key, body=body.model_dump(mode="json"), produce=produce
    )


@router.get(
    "/v1/checks/{check_id}/feedback",
    tags=["feedback"],
    summary="The feedback status of a check",
    description="Every required measure (`awaiting` until reported) and the suspended measures reported on, "
    "each with its full history, oldest first. `complete`: every required measure has a status; `overdue`: "
    "not complete after `feedback_due_on`.",
    response_model=FeedbackStatus,
    responses=EX.success(200, "get-feedback", description="The feedback status.") | _ERRORS,
)
async def get_feedback(check_id: CheckIdPath, client: FeedbackReader, db: DB) -> JSONResponse:
    async with db.connection() as conn:
        status = await service.feedback_status(conn, client=client, check_id=parse_uuid(check_id))
    return JSONResponse(status.model_dump(mode="json"))


@router.get(
    "/v1/entries/{entry_id}/enforcement",
    tags=["feedback"],
    summary="How an entry was enforced (发起-响应-反馈): its checks and the feedback on what it triggered",
    description="Only the issuing department. Citizen ids and natural persons' names are masked unless the key "
    "has `pii:read`. Pages of `limit` checks, oldest first; pass `next_cursor` as `cursor`.",
    response_model=EntryEnforcement,
    responses=EX.success(200, "entry-enforcement", description="A page of the entry's checks.") | _ERRORS,
)
async def get_entry_enforcement(
    entry_id: Annotated[str, Path(description="An entry your department issued")],
    request: Request,
    client: ListsReader,
    db: DB,
    limit: Annotated[int, Query(ge=1, le=1000, description="Checks per page")] = 200,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> JSONResponse:
    after = None
    if cursor is not None:
        after = parse_uuid(cursor)
        if after is None:
            raise ValidationFailed(
                "cursor is not one this API gave",
                errors=[{"loc": ["query", "cursor"], "msg": "unknown cursor"}],
            )
    try:
        async with db.connection() as conn:
            view = await service.entry_enforcement(
                conn,
                client=client,
                entry_id=parse_uuid(entry_id),
                cursor=after,
                limit=limit,
                request=_request_info(request),
            )
    except NotFound as exc:
        await _audited_refusal(db, client, request, exc, action="entry.enforcement.read", object_id=entry_id)
        raise
    return JSONResponse(view.model_dump(mode="json"))


@router.get(
    "/v1/stats/enforcement",
    tags=["feedback"],
    summary="Enforcement statistics: checks, awaiting and overdue feedback, measures applied or not",
    description="`checks`, `checks_with_matches`, `awaiting_feedback` and `overdue` count checks (`overdue` ⊂ "
    "`awaiting_feedback`); `required_measures`, `applied`, `not_applied` and `not_applicable` count required "
    "measures (with `list_type`: those that list type triggered). Dates are check dates (Asia/Shanghai), "
    "inclusive; without them, all time.",
    response_model=EnforcementStats,
    responses=EX.success(200, "stats", description="The figures: totals, by department and by item."),
)
async def get_enforcement_stats(
    client: StatsReader,
    db: DB,
    date_from: Annotated[
        dt.date | None, Query(alias="from", description="First check date, YYYY-MM-DD")
    ] = None,
    date_to: Annotated[dt.date | None, Query(alias="to", description="Last check date, YYYY-MM-DD")] = None,
    department: Annotated[NulFree | None, Query(description="The checking client's department")] = None,
    item_code: Annotated[NulFree | None, Query(description="An item code")] = None,
    list_type: Annotated[
        NulFree | None, Query(description="Checks that matched an entry of this list type")
    ] = None,
) -> EnforcementStats:
    f = StatsFilter(
        date_from=date_from, date_to=date_to, department=department, item_code=item_code, list_type=list_type
    )
    async with db.connection() as conn:
        return await service.enforcement_stats(conn, f=f)


@router.get(
    "/v1/outbox",
    tags=["operations"],
    summary="The outbox: messages by topic and state, the oldest pending age, and the dead letters",
    description="What the relay has to deliver: feedback forwarded to the upstream credit platform "
    "(`feedback`) and subscription callbacks (`subscription`), counted by state, the age of the oldest "
    "pending message, and the most recent dead letters (given up on after `ONECHECK_OUTBOX_MAX_ATTEMPTS`).",
    response_model=OutboxStatus,
    responses=EX.success(200, "outbox", description="The outbox status."),
)
async def get_outbox(
    client: SyncAdmin,
    db: DB,
    dead_limit: Annotated[int, Query(ge=0, le=1000, description="Most recent dead letters listed")] = 100,
) -> OutboxStatus:
    async with db.connection() as conn:
        status = await outbox_status(conn, dead_limit=dead_limit)
    await refresh_metrics(db)
    return OutboxStatus.model_validate(status)


@router.post(
    "/v1/outbox/replay",
    tags=["operations"],
    summary="Re-queue every dead letter (what `onecheck outbox replay` does)",
    description="Every dead message is pending again with its attempts reset; the relay delivers it on its "
    "next pass.",
    response_model=ReplayResult,
    responses=EX.success(200, "outbox-replay", description="How many messages were re-queued."),
)
async def post_outbox_replay(client: SyncAdmin, db: DB) -> ReplayResult:
    async with db.connection() as conn:
        requeued = await replay_dead_letters_conn(conn)
    return ReplayResult(requeued=requeued)
