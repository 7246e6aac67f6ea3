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
from shared.api.openapi import ExampleBook, openapi_extra
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
ItemCodePath = Annotated[str, Path(description="Item code (权责事项编码), e.g. `I07`.")]

# docs/examples/, from real runs (the package carries them as a bundle: shared/api/openapi.py).
EX = ExampleBook("services.check_api")
_CHECKS = (
    "check-penalty",
    "check-clear",
    "check-incentive",
    "check-mixed",
    "check-withheld-incentives",
    "check-objection",
    "check-related-person",
    "check-responsible-person",
    "check-natural-person",
    "check-legacy-code",
)
_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: EX.problem("Missing, unknown or revoked API key (`unauthorized`).", "error-unauthorized"),
    403: EX.problem(
        "The key lacks the scope `check`, or the item belongs to another department (`forbidden`).",
        "error-forbidden-department",
    ),
    429: EX.problem(
        "Over `ONECHECK_RATE_LIMIT_PER_MINUTE` (`rate_limited`): retry after `Retry-After` seconds.",
        "error-rate-limited",
    ),
}
_CHECK_ERRORS: dict[int | str, dict[str, Any]] = {
    **_AUTH_ERRORS,
    404: EX.problem("The catalogue has no such item (`unknown_item`).", "error-unknown-item"),
    409: EX.problem("A request with this Idempotency-Key is still in flight (`conflict`).", "error-conflict"),
    413: EX.problem(
        "The body is over `ONECHECK_MAX_BODY_BYTES` (`payload_too_large`).", "error-payload-too-large"
    ),
    422: EX.problem(
        "`invalid_subject_code` (with the failed `rule`), `ambiguous_subject_code`, "
        "`validation_error` (unknown or missing fields, malformed JSON) or `idempotency_key_reused`",
        "error-invalid-subject-code",
        "error-ambiguous-subject-code",
        "error-validation",
        "error-idempotency-key-reused",
    ),
}
_BATCH_ERRORS: dict[int | str, dict[str, Any]] = {
    **_CHECK_ERRORS,
    422: EX.problem(
        "`validation_error` (more than 1,000 subjects, unknown or missing fields, malformed JSON) or "
        "`idempotency_key_reused`; a bad subject code is answered in that subject's place instead.",
        "error-batch-too-large",
        "error-idempotency-key-reused",
    ),
}
_READ_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _AUTH_ERRORS[401],
    429: _AUTH_ERRORS[429],
    404: EX.problem(
        "No check with this id for this client (`not_found`): another client's check answers the same.",
        "error-not-found",
    ),
}
_CATALOGUE_ERRORS: dict[int | str, dict[str, Any]] = {401: _AUTH_ERRORS[401], 429: _AUTH_ERRORS[429]}


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
    responses={
        **EX.success(200, *_CHECKS, description="The check, stored with its audit row before it was sent."),
        **_CHECK_ERRORS,
    },
    openapi_extra=openapi_extra(IDEMPOTENCY_KEY_DOC, EX.request_body(*_CHECKS)),
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
    responses={
        **EX.success(200, "batch", description="One result per subject, in request order."),
        **_BATCH_ERRORS,
    },
    openapi_extra=openapi_extra(IDEMPOTENCY_KEY_DOC, EX.request_body("batch")),
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
    description="Returns the stored answer of `POST /v1/checks` (or of one subject of a batch) byte for byte, "
    "masked as it was when answered. Only the client that made the check sees it; any other id answers "
    "404 `not_found` exactly as a missing one. The read is audited (`check.read`).",
    response_model=CheckOut,
    responses={**EX.success(200, "get-check", description="The stored check."), **_READ_ERRORS},
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
    description="The check report (信用核查报告) to print and keep with the approval file: item, department, "
    "subject, every match with its list, reason, decision number and dates, every measure with its content "
    "and legal basis, suspended measures, withheld incentives, check id, time, operator and data versions. "
    "HTML in Chinese with an A4 print layout. The read is audited (`check.report`). Citizen IDs and natural "
    "persons' names are always masked in the report, even for a client with `pii:read` (which unmasks JSON "
    "answers only).",
    response_class=HTMLResponse,
    responses={**EX.success(200, "report", description="The report (HTML)"), **_READ_ERRORS},
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
    description="Every approval or public-service item a business system may check for, with the department "
    "that decides it (its clients check it), its responsible section (关联科室) and its business system.",
    response_model=ItemsOut,
    responses={**EX.success(200, "items"), **_CATALOGUE_ERRORS},
)
async def get_items(request: Request, client: AnyClient, db: DB) -> dict[str, Any]:
    return await service.catalogue_items(db, catalogue_cache(request.app))


@router.get(
    "/v1/items/{code}",
    tags=["catalogue"],
    summary="One item with its mapping: per list type, the measures and the targets they apply to",
    description="The item and its item-measure mapping (应用事项清单): for each list type, the measures a check "
    "of this item applies when an entry of that type matches, each with the targets (entity, natural person, "
    "responsible person) it applies to.",
    response_model=ItemDetail,
    responses={
        **EX.success(200, "item"),
        **_CATALOGUE_ERRORS,
        404: EX.problem("The catalogue has no such item (`unknown_item`).", "error-unknown-item"),
    },
)
async def get_item(
    code: ItemCodePath,
    request: Request,
    client: AnyClient,
    db: DB,
) -> dict[str, Any]:
    return await service.catalogue_item(db, catalogue_cache(request.app), code)


@router.get(
    "/v1/list-types",
    tags=["catalogue"],
    summary="The list types (名单类型): red, black and watch lists",
    description="Every list type entries are published under: its kind (红名单 red, 黑名单 black, 重点关注名单 "
    "watch), the authority that lists subjects on it (认定部门) and the default validity of an entry.",
    response_model=ListTypesOut,
    responses={**EX.success(200, "list-types"), **_CATALOGUE_ERRORS},
)
async def get_list_types(request: Request, client: AnyClient, db: DB) -> dict[str, Any]:
    return await service.catalogue_list_types(db, catalogue_cache(request.app))


@router.get(
    "/v1/measures",
    tags=["catalogue"],
    summary="The measures (奖惩措施) with their legal basis and possible targets",
    description="The measure catalogue (措施清单): every incentive and penalty with its category, content, "
    "whether it is mandatory (依法必须) or advisory (参考), its legal basis (相关依据), its memorandum and the "
    "targets it can reach.",
    response_model=MeasuresOut,
    responses={**EX.success(200, "measures"), **_CATALOGUE_ERRORS},
)
async def get_measures(request: Request, client: AnyClient, db: DB) -> dict[str, Any]:
    return await service.catalogue_measures(db, catalogue_cache(request.app))


@router.get(
    "/v1/memoranda",
    tags=["catalogue"],
    summary="The cooperation memoranda (合作备忘录)",
    description="The national cooperation memoranda that define measures, with their document numbers and the "
    "list types whose measures they define.",
    response_model=MemorandaOut,
    responses={**EX.success(200, "memoranda"), **_CATALOGUE_ERRORS},
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
        **EX.success(200, "catalogue-import", description="The import's result (or: nothing changed)."),
        401: _AUTH_ERRORS[401],
        429: _AUTH_ERRORS[429],
        413: _CHECK_ERRORS[413],
        422: EX.problem(
            'Bad rows: `validation_error` with `errors: [{loc: ["file", line], msg}]`; also a form field other '
            "than `file`, or `idempotency_key_reused`.",
            "error-catalogue-import",
        ),
    },
    openapi_extra=openapi_extra(
        # The media type FastAPI documents for a form model (the service reads multipart uploads).
        IDEMPOTENCY_KEY_DOC,
        EX.request_body("catalogue-import", media_type="application/x-www-form-urlencoded"),
    ),
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
