"""HTTP routes of the list-sync service (thin: validation and auth here, logic in service.py and runs.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from shared.api.auth import ListsReader, ListsWriter, SyncAdmin
from shared.api.deps import DB, AppSettings
from shared.api.idempotency import run_idempotent
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
    Header(alias="Idempotency-Key", description="optional; the same key and body replay the first answer"),
]
PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or unknown API key"},
    403: {"description": "wrong scope or department"},
    422: {"description": "invalid request"},
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
    summary="Publish an entry",
    status_code=201,
    response_model=EntryOut,
    responses=PROBLEMS,
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
    response_model=EntryOut,
    responses={**PROBLEMS, 404: {"description": "no such entry"}},
)
async def read_entry(
    entry_id: str, request: Request, client: ListsReader, db: DB, settings: AppSettings
) -> Response:
    view = await service.read_entry(
        db, settings=settings, client=client, entry_id=entry_id, info=_info(request)
    )
    return JSONResponse(view)


@router.post(
    "/v1/entries/{entry_id}/events",
    tags=["entries"],
    summary="Record a lifecycle event (objection, objection_upheld, objection_rejected, repair, removal)",
    response_model=EntryOut,
    responses={
        **PROBLEMS,
        404: {"description": "no such entry"},
        409: {"description": "not allowed from the entry's current status"},
    },
)
async def post_entry_event(
    entry_id: str,
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
    summary="Register an upstream source",
    status_code=201,
    response_model=SourceOut,
    responses={**PROBLEMS, 409: {"description": "the name is taken"}},
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
    "/v1/sources", tags=["sync"], summary="All sources", response_model=SourcesOut, responses=PROBLEMS
)
async def list_sources(client: SyncAdmin, db: DB) -> Response:
    return JSONResponse(await service.list_sources(db))


@router.post(
    "/v1/sources/{name}/runs",
    tags=["sync"],
    summary="Start a run now (in the background)",
    status_code=202,
    response_model=RunOut,
    responses={
        **PROBLEMS,
        404: {"description": "no such source"},
        409: {"description": "a run of the source is running or held"},
    },
)
async def start_run(
    name: str,
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


@router.get("/v1/runs", tags=["sync"], summary="Recent runs", response_model=RunsOut, responses=PROBLEMS)
async def list_runs(
    client: SyncAdmin,
    db: DB,
    source: Annotated[NulFree | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    return JSONResponse(await runs.list_runs(db, source=source, limit=limit))


@router.get(
    "/v1/runs/{run_id}",
    tags=["sync"],
    summary="A run and its counts",
    response_model=RunOut,
    responses={**PROBLEMS, 404: {"description": "no such run"}},
)
async def get_run(run_id: str, request: Request, client: SyncAdmin, db: DB) -> Response:
    return JSONResponse(await runs.get_run(db, run_id, registry=runs.registry_of(request.app.state)))


@router.post(
    "/v1/runs/{run_id}/confirm",
    tags=["sync"],
    summary="Apply a held snapshot",
    response_model=RunOut,
    responses={**PROBLEMS, 404: {"description": "no such run"}, 409: {"description": "the run is not held"}},
)
async def confirm_run(run_id: str, client: SyncAdmin, db: DB, settings: AppSettings) -> Response:
    view = await runs.confirm_run(db, settings, run_id)
    metrics.record_run(view)  # runs ending in runs.execute_run count there
    return JSONResponse(view)


@router.post(
    "/v1/runs/{run_id}/discard",
    tags=["sync"],
    summary="Discard a held snapshot",
    response_model=RunOut,
    responses={**PROBLEMS, 404: {"description": "no such run"}, 409: {"description": "the run is not held"}},
)
async def discard_run(run_id: str, client: SyncAdmin, db: DB) -> Response:
    view = await runs.discard_run(db, run_id)
    metrics.record_run(view)
    return JSONResponse(view)


@router.get(
    "/v1/quarantine",
    tags=["sync"],
    summary="Quarantined records of a run",
    response_model=QuarantineOut,
    responses={**PROBLEMS, 404: {"description": "no such run"}},
)
async def quarantine(
    client: SyncAdmin,
    db: DB,
    run_id: Annotated[str, Query(max_length=64)],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
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
    status_code=201,
    response_model=SubscriptionCreatedOut,
    responses=PROBLEMS,
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
    response_model=SubscriptionsOut,
    responses=PROBLEMS,
)
async def list_subscriptions(client: ListsReader, db: DB) -> Response:
    return JSONResponse(await service.list_subscriptions(db, client=client))


@router.delete(
    "/v1/subscriptions/{subscription_id}",
    tags=["subscriptions"],
    summary="Stop a subscription (kept, inactive)",
    response_model=SubscriptionOut,
    responses={**PROBLEMS, 404: {"description": "no such subscription of this client"}},
)
async def cancel_subscription(subscription_id: str, client: ListsReader, db: DB) -> Response:
    return JSONResponse(await service.cancel_subscription(db, client=client, subscription_id=subscription_id))


@router.get(
    "/v1/subscriptions/{subscription_id}/deliveries",
    tags=["subscriptions"],
    summary="Callbacks of a subscription (state=dead: its dead letters)",
    response_model=DeliveriesOut,
    responses={**PROBLEMS, 404: {"description": "no such subscription of this client"}},
)
async def subscription_deliveries(
    subscription_id: str,
    client: ListsReader,
    db: DB,
    state: Literal["pending", "delivered", "dead"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    return JSONResponse(
        await service.subscription_deliveries(
            db, client=client, subscription_id=subscription_id, state=state, limit=limit
        )
    )
