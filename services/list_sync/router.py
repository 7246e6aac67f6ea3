"""HTTP routes of the list-sync service (thin: validation and auth here, logic in service.py and runs.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from shared.api.auth import ListsReader, ListsWriter, SyncAdmin
from shared.api.deps import DB, AppSettings
from shared.api.idempotency import run_idempotent
from shared.api.openapi import ExampleBook, Responses, problem_response
from shared.api.text import NulFree, has_nul
from shared.errors import NotFound

from services.list_sync import metrics, runs, service
from services.list_sync.schemas import (
    DeliveriesOut,
    EntryEventIn,
    EntryOut,
    PublishEntryIn,
    QuarantineOut,
    RunOut,
    RunsOut,
    SourceIn,
    SourceOut,
    SourcesOut,
    SubscriptionCreatedOut,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionsOut,
)

router = APIRouter()

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Optional. The same key with the same body returns the first answer again (24 hours).",
    ),
]
EntryIdPath = Annotated[str, Path(description="An `entry_id` (opaque), as published or read.")]
SourceNamePath = Annotated[str, Path(description="The source's name, as registered.")]
RunIdPath = Annotated[str, Path(description="A `run_id` (opaque), as a run start or `GET /v1/runs` gave it.")]
SubscriptionIdPath = Annotated[str, Path(description="A `subscription_id` of this client.")]

# docs/examples/list-sync/, from real runs (the package carries them as a bundle: shared/api/openapi.py).
EX = ExampleBook("services.list_sync")
# 401, 403 (scope), 409/422 of the Idempotency-Key, 413, 422, 429 and 503 are added centrally
# (shared/api/problems.py: document_problems); a route documents its own cases only.
_DEPARTMENT: Responses = {
    403: problem_response(
        "The key lacks the scope, or the entry belongs to another issuing department (`forbidden`).",
        (
            403,
            "forbidden",
            "Forbidden",
            "only the issuing department '江门市人民法院' may change this entry; this client is of '财政局'",
        ),
    )
}
_NO_ENTRY: Responses = {
    404: problem_response("No such entry (`not_found`).", (404, "not_found", "Not found", "no such entry"))
}
_NO_RUN: Responses = {
    404: problem_response("No such run (`not_found`).", (404, "not_found", "Not found", "no such run"))
}
_NOT_HELD: Responses = {
    409: problem_response(
        "The run is not `held` (`conflict`, with its status in `detail`).",
        (409, "conflict", "Conflict", "the run is succeeded, not held"),
    )
}
_NO_SUBSCRIPTION: Responses = {
    404: problem_response(
        "No such subscription of this client (`not_found`).",
        (404, "not_found", "Not found", "no such subscription"),
    )
}


def _info(request: Request) -> service.RequestInfo:
    return service.RequestInfo(
        method=request.method, path=request.url.path, request_id=getattr(request.state, "request_id", None)
    )


def _body(model: Any) -> Any:
    return model.model_dump(mode="json", exclude_unset=True)


# --- entries ---------------------------------------------------------------------------------------------


@router.post(
    "/v1/entries",
    tags=["entries"],
    summary="Publish an entry (列入名单)",
    description="Publishes a red-, black- or watch-list entry for the client's own department (认定部门). "
    "Subject codes are validated and normalised (`invalid_subject_code` names the failed `rule`); linked "
    "persons' codes must be citizen IDs. An omitted `expires_on` is `listed_on` plus the list type's default "
    "validity (有效期), an explicit null is open-ended; past and future `listed_on` are accepted. Answers 201 "
    "with the entry and its history (`published`). Subscribers are notified.",
    status_code=201,
    response_model=EntryOut,
    responses={
        **EX.success(
            201, "publish-entry", description="The entry, as `GET /v1/entries/{entry_id}` returns it."
        ),
        **_DEPARTMENT,
        422: problem_response(
            "`validation_error` (unknown list type, `expires_on` before `listed_on`, unknown or missing fields), "
            "`invalid_subject_code`, `ambiguous_subject_code` or `idempotency_key_reused`.",
            (
                422,
                "validation_error",
                "Invalid request",
                "unknown list type 'LT99'",
                {"errors": [{"loc": ["body", "list_type"], "msg": "unknown list type 'LT99'"}]},
            ),
            (
                422,
                "invalid_subject_code",
                "Invalid subject code",
                "a subject code fails the rules of its kind",
                {
                    "errors": [
                        {
                            "loc": ["body", "subject", "code"],
                            "msg": "check character should be 'F', got 'G'",
                            "rule": "uscc.check_char",
                        }
                    ]
                },
            ),
        ),
    },
    openapi_extra=EX.request_body("publish-entry"),
)
async def publish_entry(
    body: PublishEntryIn,
    request: Request,
    client: ListsWriter,
    db: DB,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    async def produce() -> tuple[int, Any]:
        return 201, await service.publish_entry(
            db, settings=settings, client=client, body=body, info=_info(request)
        )

    return await run_idempotent(
        db, client, route=request.url.path, key=idempotency_key, body=_body(body), produce=produce
    )


@router.get(
    "/v1/entries/{entry_id}",
    tags=["entries"],
    summary="An entry with its history",
    description="The entry as it reads today (an entry past `expires_on` reads `ended`/`expired` at once) with "
    "every event of its history, oldest first. Citizen IDs and natural persons' names are masked without "
    "`pii:read`. The read is audited (`entry.read`).",
    response_model=EntryOut,
    responses={**EX.success(200, "get-entry", description="The entry."), **_NO_ENTRY},
)
async def read_entry(
    entry_id: EntryIdPath, request: Request, client: ListsReader, db: DB, settings: AppSettings
) -> Response:
    view = await service.read_entry(
        db, settings=settings, client=client, entry_id=entry_id, info=_info(request)
    )
    return JSONResponse(view)


@router.post(
    "/v1/entries/{entry_id}/events",
    tags=["entries"],
    summary="Record a lifecycle event (objection, objection_upheld, objection_rejected, repair, removal)",
    description="Only the issuing department. `objection` (异议, from `active`) → `objection_pending`: its "
    "measures are suspended (核实期间暂不执行); `objection_rejected` → `active`; `objection_upheld` → `ended`; "
    "`repair` (信用修复) and `removal` (移出), from `active` or `objection_pending` → `ended`. Any other "
    "transition answers 409 with the entry's current status. Every event is kept; subscribers are notified.",
    response_model=EntryOut,
    responses={
        **EX.success(200, "entry-event", description="The entry after the event."),
        **_DEPARTMENT,
        **_NO_ENTRY,
        409: problem_response(
            "Not allowed from the entry's current status (`conflict`, `current_status` in the problem), or the "
            "same Idempotency-Key is still in flight.",
            (
                409,
                "conflict",
                "Conflict",
                "'objection_rejected' is not allowed: the entry's current status is 'active'",
                {"current_status": "active"},
            ),
        ),
    },
    openapi_extra=EX.request_body("entry-event"),
)
async def post_entry_event(
    entry_id: EntryIdPath,
    body: EntryEventIn,
    request: Request,
    client: ListsWriter,
    db: DB,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    async def produce() -> tuple[int, Any]:
        return 200, await service.post_entry_event(
            db, settings=settings, client=client, entry_id=entry_id, body=body, info=_info(request)
        )

    return await run_idempotent(
        db, client, route=request.url.path, key=idempotency_key, body=_body(body), produce=produce
    )


# --- sources, runs, quarantine ---------------------------------------------------------------------------


@router.post(
    "/v1/sources",
    tags=["sync"],
    summary="Register an upstream source (归集来源)",
    description="A `feed` (paged, resumed from its cursor) or `snapshot` (the complete listing each run) of a "
    "credit platform at `base_url`, or a `file` (CSV or XLSX under `ONECHECK_IMPORT_DIR`). `base_url` must be "
    "http(s), without credentials, query or fragment, and not a link-local or metadata address. The token is "
    "stored for the bearer header and never returned. With `interval_seconds`, the scheduler runs it.",
    status_code=201,
    response_model=SourceOut,
    responses={
        **EX.success(201, "create-source", description="The source (`has_token`, never the token)."),
        409: problem_response(
            "The name is taken, or the same Idempotency-Key is still in flight (`conflict`).",
            (409, "conflict", "Conflict", "a source named 'court-feed' exists"),
        ),
    },
    openapi_extra=EX.request_body("create-source"),
)
async def create_source(
    body: SourceIn,
    request: Request,
    client: SyncAdmin,
    db: DB,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    async def produce() -> tuple[int, Any]:
        return 201, await service.create_source(db, settings=settings, body=body)

    return await run_idempotent(
        db, client, route=request.url.path, key=idempotency_key, body=_body(body), produce=produce
    )


@router.get(
    "/v1/sources",
    tags=["sync"],
    summary="All sources",
    description="Every registered source with its kind, where it reads from, its schedule and its cursor "
    "(the last committed page of a feed). Tokens are never returned.",
    response_model=SourcesOut,
    responses=EX.success(200, "list-sources", description="The sources, by name."),
)
async def list_sources(client: SyncAdmin, db: DB) -> Response:
    return JSONResponse(await service.list_sources(db))


@router.post(
    "/v1/sources/{name}/runs",
    tags=["sync"],
    summary="Start a run now (in the background)",
    description="Starts a run of the source (what `onecheck sync run NAME` does in the foreground) and answers "
    "202 at once with the run; follow it with `GET /v1/runs/{run_id}`. One run per source at a time: while "
    "one is running or held, 409.",
    status_code=202,
    response_model=RunOut,
    responses={
        **EX.success(202, "start-run", description="The run, `running`."),
        404: problem_response(
            "No such source (`not_found`).", (404, "not_found", "Not found", "no source named 'court'")
        ),
        409: problem_response(
            "A run of the source is running or held, or the same Idempotency-Key is still in flight (`conflict`).",
            (409, "conflict", "Conflict", "a run of source 'court-feed' is in progress"),
            (409, "conflict", "Conflict", "a held run of source 'tax-snapshot' awaits confirm or discard"),
        ),
    },
)
async def start_run(
    name: SourceNamePath,
    request: Request,
    client: SyncAdmin,
    db: DB,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    registry = runs.registry_of(request.app.state)

    async def produce() -> tuple[int, Any]:
        if has_nul(name):
            # No source can be named with a NUL (SourceIn refuses it; PostgreSQL could not store it): the
            # 404 of any unknown name, before the name reaches the database.
            raise NotFound(f"no source named {name!r}")
        return 202, await runs.start_run(db, settings, name, registry=registry)

    return await run_idempotent(
        db, client, route=request.url.path, key=idempotency_key, body=None, produce=produce
    )


@router.get(
    "/v1/runs",
    tags=["sync"],
    summary="Recent runs",
    description="The most recent runs, newest first, of every source or of one.",
    response_model=RunsOut,
    responses=EX.success(200, "list-runs", description="The runs, newest first."),
)
async def list_runs(
    client: SyncAdmin,
    db: DB,
    source: Annotated[NulFree | None, Query(max_length=64, description="Only this source's runs.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many runs (1 to 500).")] = 50,
) -> Response:
    return JSONResponse(await runs.list_runs(db, source=source, limit=limit))


@router.get(
    "/v1/runs/{run_id}",
    tags=["sync"],
    summary="A run and its counts",
    description="The run's status and counts, where received = inserted + updated + unchanged + duplicates + "
    "stale + quarantined (`ended` and `unmapped_legacy` are not part of the sum). A failed run's `error` is "
    "`<class>: <message>`. A running run whose process died is marked `failed` when read.",
    response_model=RunOut,
    responses={**EX.success(200, "get-run", description="The run."), **_NO_RUN},
)
async def get_run(run_id: RunIdPath, request: Request, client: SyncAdmin, db: DB) -> Response:
    return JSONResponse(await runs.get_run(db, run_id, registry=runs.registry_of(request.app.state)))


@router.post(
    "/v1/runs/{run_id}/confirm",
    tags=["sync"],
    summary="Apply a held snapshot (in the background)",
    description="A snapshot or file run that would end more than `ONECHECK_SNAPSHOT_MAX_END_SHARE` of the "
    "source's entries in effect is `held` and changes nothing. Confirming applies it in the background, like a "
    "started run, and answers 202 with the run: `running` once the apply has taken it (within a few seconds; "
    "until then it stays `held` and the apply waits for the source's lock instead of refusing). The stored "
    "pages are re-applied against the entries as they are then, in one transaction (counts are recomputed: "
    "zero until the apply ends): the run ends `succeeded`, or `failed` having changed nothing (also when the "
    "process dies mid-apply: `failed` when found). Follow it with `GET /v1/runs/{run_id}`.",
    status_code=202,
    response_model=RunOut,
    responses={
        **EX.success(202, "confirm-run", description="The run, `running` (or still `held`, see above)."),
        **_NO_RUN,
        409: problem_response(
            "The run is not `held`, or a confirm of it is under way (`conflict`, with its status in `detail`).",
            (409, "conflict", "Conflict", "the run is succeeded, not held"),
            (409, "conflict", "Conflict", "the run is held, and a confirm of it is under way"),
        ),
    },
)
async def confirm_run(
    run_id: RunIdPath, request: Request, client: SyncAdmin, db: DB, settings: AppSettings
) -> Response:
    # The run's final status is counted in metrics when the background apply ends (runs.execute_confirm).
    view = await runs.confirm_run(db, settings, run_id, registry=runs.registry_of(request.app.state))
    return JSONResponse(view, status_code=202)


@router.post(
    "/v1/runs/{run_id}/discard",
    tags=["sync"],
    summary="Discard a held snapshot",
    description="Drops a `held` run: nothing it would have done happens; the run is `discarded` and the source "
    "can run again.",
    response_model=RunOut,
    responses={**EX.success(200, "discard-run", description="The run, `discarded`."), **_NO_RUN, **_NOT_HELD},
)
async def discard_run(run_id: RunIdPath, client: SyncAdmin, db: DB) -> Response:
    view = await runs.discard_run(db, run_id)
    metrics.record_run(view)
    return JSONResponse(view)


@router.get(
    "/v1/quarantine",
    tags=["sync"],
    summary="Quarantined records of a run",
    description="The records a run refused, by line, each with the raw record, a reason and the failed `rule` "
    "(e.g. `required.subject.code`, `uscc.check_char`, `list_type.unknown`, `date.format`). Id-shaped numbers "
    "and persons' names in raw records are masked without `pii:read`. Page with `after_line`.",
    response_model=QuarantineOut,
    responses={**EX.success(200, "quarantine", description="A page of quarantined records."), **_NO_RUN},
)
async def quarantine(
    client: SyncAdmin,
    db: DB,
    run_id: Annotated[str, Query(max_length=64, description="The run whose records to list.")],
    limit: Annotated[
        int, Query(ge=1, le=10_000, description="At most this many records (1 to 10,000).")
    ] = 1000,
    after_line: Annotated[int, Query(ge=0, description="page on: the last line of the previous page")] = 0,
) -> Response:
    return JSONResponse(
        await service.quarantine(db, client=client, run_id=run_id, limit=limit, after_line=after_line)
    )


# --- subscriptions ---------------------------------------------------------------------------------------


@router.post(
    "/v1/subscriptions",
    tags=["subscriptions"],
    summary="Subscribe a callback to changes of entries",
    description="Every change of a matching entry (`published`, `updated`, each lifecycle event, `removed`, "
    "`expired`) is POSTed to `callback_url` as `{event_id, event, occurred_at, entry}`, signed with "
    "`X-OneCheck-Timestamp` and `X-OneCheck-Signature` (HMAC-SHA256 keyed with `secret`), retried with backoff "
    "until a 2xx and dead-lettered after `ONECHECK_OUTBOX_MAX_ATTEMPTS`. `callback_url` must be https (http "
    "only to a host in `ONECHECK_CALLBACK_HTTP_HOSTS`). The `secret` is shown once, in this answer.",
    status_code=201,
    response_model=SubscriptionCreatedOut,
    responses=EX.success(
        201, "create-subscription", description="The subscription, with its secret (shown once)."
    ),
    openapi_extra=EX.request_body("create-subscription"),
)
async def create_subscription(
    body: SubscriptionIn,
    request: Request,
    client: ListsReader,
    db: DB,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    async def produce() -> tuple[int, Any]:
        return 201, await service.create_subscription(db, settings=settings, client=client, body=body)

    return await run_idempotent(
        db, client, route=request.url.path, key=idempotency_key, body=_body(body), produce=produce
    )


@router.get(
    "/v1/subscriptions",
    tags=["subscriptions"],
    summary="This client's subscriptions",
    description="The subscriptions this client made, active or stopped, without their secrets.",
    response_model=SubscriptionsOut,
    responses=EX.success(200, "list-subscriptions", description="The subscriptions."),
)
async def list_subscriptions(client: ListsReader, db: DB) -> Response:
    return JSONResponse(await service.list_subscriptions(db, client=client))


@router.delete(
    "/v1/subscriptions/{subscription_id}",
    tags=["subscriptions"],
    summary="Stop a subscription (kept, inactive)",
    description="No further callbacks are queued for it; it is kept, `active: false`, with its deliveries.",
    response_model=SubscriptionOut,
    responses={
        **EX.success(200, "cancel-subscription", description="The subscription, inactive."),
        **_NO_SUBSCRIPTION,
    },
)
async def cancel_subscription(subscription_id: SubscriptionIdPath, client: ListsReader, db: DB) -> Response:
    return JSONResponse(await service.cancel_subscription(db, client=client, subscription_id=subscription_id))


@router.get(
    "/v1/subscriptions/{subscription_id}/deliveries",
    tags=["subscriptions"],
    summary="Callbacks of a subscription (state=dead: its dead letters)",
    description="The callbacks queued for the subscription, newest first, with their delivery state, attempts "
    "and last error. `state=dead` lists the ones given up on (re-queued by `onecheck outbox replay`).",
    response_model=DeliveriesOut,
    responses={
        **EX.success(200, "subscription-deliveries", description="The callbacks, newest first."),
        **_NO_SUBSCRIPTION,
    },
)
async def subscription_deliveries(
    subscription_id: SubscriptionIdPath,
    client: ListsReader,
    db: DB,
    state: Annotated[
        Literal["pending", "delivered", "dead"] | None,
        Query(description="Only callbacks in this state: `pending`, `delivered` or `dead` (dead letters)."),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=1000, description="At most this many callbacks (1 to 1,000).")
    ] = 100,
) -> Response:
    return JSONResponse(
        await service.subscription_deliveries(
            db, client=client, subscription_id=subscription_id, state=state, limit=limit
        )
    )
