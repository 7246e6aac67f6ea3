"""The one exception tree of OneCheck, rendered as RFC 9457 problem+json by `shared.api.problems`.

    OneCheckError                 status  code
    ├── ValidationFailed            422   validation_error        (errors: [{loc, msg, rule?}])
    │   ├── InvalidSubjectCode      422   invalid_subject_code
    │   └── IdempotencyKeyReused    422   idempotency_key_reused
    ├── AmbiguousSubjectCodeError   422   ambiguous_subject_code
    ├── Unauthorized                401   unauthorized
    ├── Forbidden                   403   forbidden
    ├── NotFound                    404   not_found
    │   └── UnknownItem             404   unknown_item
    ├── Conflict                    409   conflict
    ├── PayloadTooLarge             413   payload_too_large
    ├── RateLimited                 429   rate_limited            (Retry-After)
    └── Unavailable                 503   unavailable             (Retry-After)

Domain code raises these; routers never build responses for errors themselves.
"""

from __future__ import annotations

from typing import Any, ClassVar


class OneCheckError(Exception):
    # The base itself answers like `Unavailable` (contract: never a bare 500; 503 comes with Retry-After).
    status: ClassVar[int] = 503
    code: ClassVar[str] = "unavailable"
    title: ClassVar[str] = "Service unavailable"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "2"} if self.status == 503 else {}


class ValidationFailed(OneCheckError):
    status = 422
    code = "validation_error"
    title = "Invalid request"

    def __init__(self, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class InvalidSubjectCode(ValidationFailed):
    code = "invalid_subject_code"
    title = "Invalid subject code"


class IdempotencyKeyReused(ValidationFailed):
    code = "idempotency_key_reused"
    title = "Idempotency key reused with another request"


class AmbiguousSubjectCodeError(OneCheckError):
    status = 422
    code = "ambiguous_subject_code"
    title = "Ambiguous subject code"


class Unauthorized(OneCheckError):
    status = 401
    code = "unauthorized"
    title = "Missing or unknown API key"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(OneCheckError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class NotFound(OneCheckError):
    status = 404
    code = "not_found"
    title = "Not found"


class UnknownItem(NotFound):
    code = "unknown_item"
    title = "Unknown item"


class Conflict(OneCheckError):
    status = 409
    code = "conflict"
    title = "Conflict"


class PayloadTooLarge(OneCheckError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class _RetryAfter(OneCheckError):
    def __init__(self, detail: str, *, retry_after: int = 1, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail, extra=extra)
        self.retry_after = max(1, int(retry_after))

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RateLimited(_RetryAfter):
    status = 429
    code = "rate_limited"
    title = "Too many requests"


class Unavailable(_RetryAfter):
    status = 503
    code = "unavailable"
    title = "Service unavailable"


ERROR_CODES = (
    "invalid_subject_code",
    "ambiguous_subject_code",
    "unknown_item",
    "validation_error",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "idempotency_key_reused",
    "rate_limited",
    "payload_too_large",
    "unavailable",
)
