"""HTTP routes of the check-api service (thin: validation and auth here, logic in service.py)."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from shared.api.auth import AnyClient, CatalogueWriter, CheckClient, Client
from shared.api.deps import DB
from shared.api.idempotency import (
    IDEMPOTENCY_KEY_DOC,
    RenderedJSON,
    StoredAnswer,
    idempotency_key,
    run_idempotent,
)
from shared.db.engine import Database
from shared.errors import OneCheckError, ValidationFailed
from shared.settings import Settings

from services.check_api import service
from services.check_api.catalogue_cache import catalogue_cache
from services.check_api.catalogue_import import CatalogueImportError, import_catalogue_file
from services.check_api.schemas import (
    BatchIn,
    BatchOut,
    CatalogueUploadIn,
    CheckIn,
    CheckOut,
    ImportOut,
    ItemDetail,
    ItemsOut,
    ListTypesOut,
    MeasuresOut,
    MemorandaOut,
)

router = APIRouter()

CheckIdPath = Annotated[str, Path(description="A `check_id` this client received.")]


def _problem(description: str, code: str, status: int) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/problem+json": {
                "example": {
                    "type": f"/problems/{code}",
                    "title": description,
                    "status": status,
                    "detail": description,
                    "code": code,
                }
            }
        },
    }


_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _problem("Missing or unknown API key", "unauthorized", 401),
    403: _problem("The key lacks the scope, or the item belongs to another department", "forbidden", 403),
}
_INVALID_CODE_EXAMPLE = {
    "type": "/problems/invalid_subject_code",
    "title": "Invalid subject code",
    "status": 422,
    "detail": "a subject code fails the rules of its kind",
    "code": "invalid_subject_code",
    "errors": [
        {
            "loc": ["body", "subject", "code"],
            "msg": "check character should be 'F', got 'G'",
            "rule": "uscc.check_char",
        }
    ],
}
_CHECK_ERRORS: dict[int | str, dict[str, Any]] = {
    **_AUTH_ERRORS,
    404: _problem("The catalogue has no such item", "unknown_item", 404),
    409: _problem("A request with this Idempotency-Key is still in flight", "conflict", 409),
    422: {
        "description": "`invalid_subject_code` (with the failed `rule`), `ambiguous_subject_code`, "
        "`validation_error` (unknown or missing fields, malformed JSON) or `idempotency_key_reused`",
        "content": {"application/problem+json": {"example": _INVALID_CODE_EXAMPLE}},
    },
}
_READ_ERRORS: dict[int | str, dict[str, Any]] = {
    **_AUTH_ERRORS,
    404: _problem("No check with this id for this client", "not_found", 404),
}


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _context(
    request: Request, client: Client, settings: Settings, body: CheckIn | BatchIn, path: str
) -> service.CheckContext:
    return service.CheckContext(
        client=client,
        item_code=body.item_code,
        operator=body.operator,
        business_ref=body.business_ref,
        path=path,
        request_id=_request_id(request),
        settings=settings,
    )


@router.post(
    "/v1/checks",
    tags=["checks"],
    summary="Check a subject for an item (信用核查)",
    description="Matches the subject (and its related persons) against every list entry in effect on the check "
    "date and answers the measures the item must apply, those suspended by an objection and the incentives "
    "withheld by a black-list entry. The check is stored with its audit row before the answer is sent.",
    response_model=CheckOut,
    responses=_CHECK_ERRORS,
    openapi_extra=IDEMPOTENCY_KEY_DOC,
)
async def post_check(body: CheckIn, request: Request, client: CheckClient) -> Response:
    # The hot routes take the database and settings from app state (what `DB` and `AppSettings` read):
    # FastAPI resolves every dependency node anew per request, at a cost a check can feel.
    db: Database = request.app.state.db
    ctx = _context(request, client, request.app.state.settings, body, "/v1/checks")
    cache = catalogue_cache(request.app)

    async def produce() -> tuple[int, Any]:
        try:
            answer = await service.create_check(
                db, cache, ctx, subject=body.subject, related_persons=body.related_persons
            )
        except OneCheckError as exc:
            await service.audit_refused_check(db, ctx, exc, subject=body.subject)
            raise
        return 200, RenderedJSON(answer.text)

    async def replay(stored: StoredAnswer) -> str:
        return await service.replay_checks(db, ctx, stored, batch=False)

    return await run_idempotent(
        db,
        client,
        route="POST /v1/checks",
        key=idempotency_key(request),
        body=body,
        produce=produce,
        on_replay=replay,
    )


@router.post(
    "/v1/checks/batch",
    tags=["checks"],
    summary="Check up to 1,000 subjects for one item",
    description="Each subject is answered in request order with a check body (stored like a single check) or a "
    "problem object (e.g. `invalid_subject_code`). An unknown item or another department's item fails the "
    "whole batch.",
    response_model=BatchOut,
    responses=_CHECK_ERRORS,
    openapi_extra=IDEMPOTENCY_KEY_DOC,
)
async def post_batch(body: BatchIn, request: Request, client: CheckClient) -> Response:
    # The hot routes take the database and settings from app state (what `DB` and `AppSettings` read):
    # FastAPI resolves every dependency node anew per request, at a cost a check can feel.
    db: Database = request.app.state.db
    ctx = _context(request, client, request.app.state.settings, body, "/v1/checks/batch")
    cache = catalogue_cache(request.app)

    async def produce() -> tuple[int, Any]:
        try:
            answer = await service.create_batch(db, cache, ctx, subjects=body.subjects)
        except OneCheckError as exc:
            await service.audit_refused_check(db, ctx, exc, subjects=len(body.subjects))
            raise
        return 200, RenderedJSON(answer.text)

    async def replay(stored: StoredAnswer) -> str:
        return await service.replay_checks(db, ctx, stored, batch=True)

    return await run_idempotent(
        db,
        client,
        route="POST /v1/checks/batch",
        key=idempotency_key(request),
        body=body,
        produce=produce,
        on_replay=replay,
    )


@router.get(
    "/v1/checks/{check_id}",
    tags=["checks"],
    summary="A stored check, exactly as answered",
    response_model=CheckOut,
    responses=_READ_ERRORS,
)
async def get_check(check_id: CheckIdPath, request: Request, client: CheckClient, db: DB) -> Response:
    stored = await service.read_check(
        db,
        client,
        check_id,
        action="check.read",
        path="/v1/checks/{check_id}",
        request_id=_request_id(request),
    )
    return Response(stored.response, media_type="application/json")


@router.get(
    "/v1/checks/{check_id}/report",
    tags=["checks"],
    summary="The printable check report (信用核查报告, HTML, A4)",
    description="Citizen IDs and natural persons' names are always masked in the report, even for a client "
    "with `pii:read` (which unmasks JSON answers only).",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}, "description": "The report"}, **_READ_ERRORS},
)
async def get_report(check_id: CheckIdPath, request: Request, client: CheckClient, db: DB) -> HTMLResponse:
    report = await service.check_report(
        db, client, check_id, path="/v1/checks/{check_id}/report", request_id=_request_id(request)
    )
    return HTMLResponse(report)


# --- catalogue -------------------------------------------------------------------------------------------


@router.get(
    "/v1/items",
    tags=["catalogue"],
    summary="The items (权责事项) of the catalogue",
    response_model=ItemsOut,
    responses={401: _AUTH_ERRORS[401]},
)
async def get_items(request: Request, client: AnyClient, db: DB) -> dict[str, Any]:
    return await service.catalogue_items(db, catalogue_cache(request.app))


@router.get(
    "/v1/items/{code}",
    tags=["catalogue"],
    summary="One item with its mapping: per list type, the measures and the targets they apply to",
    response_model=ItemDetail,
    responses={401: _AUTH_ERRORS[401], 404: _problem("The catalogue has no such item", "unknown_item", 404)},
)
async def get_item(
    code: Annotated[str, Path(description="Item code, e.g. `I07`.")],
    request: Request,
    client: AnyClient,
    db: DB,
) -> dict[str, Any]:
    return await service.catalogue_item(db, catalogue_cache(request.app), code)


@router.get(
    "/v1/list-types",
    tags=["catalogue"],
    summary="The list types (名单类型): red, black and watch lists",
    response_model=ListTypesOut,
    responses={401: _AUTH_ERRORS[401]},
)
async def get_list_types(request: Request, client: AnyClient, db: DB) -> dict[str, Any]:
    return await service.catalogue_list_types(db, catalogue_cache(request.app))


@router.get(
    "/v1/measures",
    tags=["catalogue"],
    summary="The measures (奖惩措施) with their legal basis and possible targets",
    response_model=MeasuresOut,
    responses={401: _AUTH_ERRORS[401]},
)
async def get_measures(request: Request, client: AnyClient, db: DB) -> dict[str, Any]:
    return await service.catalogue_measures(db, catalogue_cache(request.app))


@router.get(
    "/v1/memoranda",
    tags=["catalogue"],
    summary="The cooperation memoranda (合作备忘录)",
    response_model=MemorandaOut,
    responses={401: _AUTH_ERRORS[401]},
)
async def get_memoranda(request: Request, client: AnyClient, db: DB) -> dict[str, Any]:
    return await service.catalogue_memoranda(db, catalogue_cache(request.app))


@router.post(
    "/v1/catalogue/import",
    tags=["catalogue"],
    summary="Import the measure catalogue and item mapping (CSV or XLSX, Chinese headers)",
    description="Does what `onecheck catalogue import FILE` does: every row is validated; any bad row refuses "
    "the whole import (nothing is written) and is listed with its line. See docs/catalogue-import.md.",
    response_model=ImportOut,
    responses={
        **_AUTH_ERRORS,
        422: {
            "description": 'Bad rows: `validation_error` with `errors: [{loc: ["file", line], msg}]`',
            "content": {
                "application/problem+json": {
                    "example": {
                        "type": "/problems/validation_error",
                        "title": "Invalid request",
                        "status": 422,
                        "detail": "the catalogue file has 1 bad row; nothing was imported",
                        "code": "validation_error",
                        "errors": [{"loc": ["file", 3], "msg": "名单类型编码: unknown list type 'LT99'"}],
                    }
                }
            },
        },
    },
    openapi_extra=IDEMPOTENCY_KEY_DOC,
)
async def post_catalogue_import(
    upload: Annotated[CatalogueUploadIn, Form()],
    client: CatalogueWriter,
    db: DB,
    request: Request,
) -> Response:
    data = await upload.file.read()
    filename = upload.file.filename or "catalogue.csv"

    async def produce() -> tuple[int, Any]:
        try:
            async with db.session() as session:
                result = await import_catalogue_file(session, filename, data)
        except CatalogueImportError as exc:
            raise ValidationFailed(
                str(exc), errors=[{"loc": ["file", p["line"]], "msg": p["msg"]} for p in exc.problems]
            ) from None
        return 200, result.as_dict()

    return await run_idempotent(
        db,
        client,
        route="POST /v1/catalogue/import",
        key=idempotency_key(request),
        body={"filename": filename, "sha256": hashlib.sha256(data).hexdigest()},
        produce=produce,
    )
