"""Pulling pages from an upstream platform: `GET {base_url}/entries?cursor=C&limit=N` (contract: list-sync →
Upstream feed).

Every call has explicit connect and read timeouts; the body is streamed and abandoned at the byte cap; a 3xx
is never followed (a redirect elsewhere fails the run); connect errors, timeouts, 5xx and 429 are retried a
bounded number of times with jittered exponential backoff (stamina), honouring `Retry-After`, never past the
run's deadline. Failures surface as the classes below; a failed run records `<class>: <message>`.

    UpstreamError
    ├── UpstreamStatusError    a non-2xx answer (after retries for 5xx / 429)
    ├── UpstreamRedirect       a 3xx answer
    ├── UpstreamTimeout        connect / read timeouts on every attempt
    ├── UpstreamUnreachable    connection errors on every attempt
    ├── PageTooLarge           the body passed ONECHECK_SYNC_MAX_PAGE_BYTES
    ├── MalformedPage          not JSON, not the envelope, wrong content type, a cursor that does not advance
    └── RefusedURL             the source's URL is not one OneCheck may call, or its host resolves to an
                               address OneCheck must not connect to (shared/outbound.py; never retried)
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import stamina
from shared.outbound import GuardedTransport, RefusedAddress, check_outbound_url, normalise_host
from shared.settings import Settings

MAX_RETRY_AFTER_SECONDS = 120.0
USER_AGENT = "OneCheck-list-sync/1.0"


class UpstreamError(Exception):
    pass


class UpstreamStatusError(UpstreamError):
    def __init__(
        self, status: int, *, retryable: bool, retry_after: float | None = None, attempts: int | None = None
    ) -> None:
        tried = f" on all {attempts} attempt(s)" if attempts else ""
        super().__init__(f"upstream answered HTTP {status}{tried}")
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class UpstreamRedirect(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    pass


class UpstreamUnreachable(UpstreamError):
    pass


class PageTooLarge(UpstreamError):
    def __init__(self, message: str, prefix: bytes = b"") -> None:
        super().__init__(message)
        self.prefix = prefix  # what was read before the cap: kept as evidence


class MalformedPage(UpstreamError):
    pass


class RefusedURL(UpstreamError):
    pass


def check_source_url(url: str, settings: Settings) -> str:
    """The base URL without a trailing slash, or RefusedURL: http(s) only, no credentials, query or
    fragment, no link-local / metadata address, and a host in ONECHECK_SYNC_ALLOWED_HOSTS when that is set."""
    try:
        check_outbound_url(url, allow_loopback=settings.outbound_allow_loopback)
    except ValueError as exc:
        raise RefusedURL(str(exc)) from None
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise RefusedURL("a base URL must not carry credentials; give the token instead")
    if parts.query or parts.fragment:
        raise RefusedURL("a base URL must not have a query or fragment")
    allowed = {normalise_host(h) for h in settings.sync_allowed_hosts}
    if allowed and normalise_host(parts.hostname or "") not in allowed:
        raise RefusedURL(f"host {parts.hostname!r} is not in ONECHECK_SYNC_ALLOWED_HOSTS")
    return url.rstrip("/")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    seconds: float | None
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    return max(0.0, min(seconds, MAX_RETRY_AFTER_SECONDS))


def retry_hook(exc: Exception) -> bool | float:
    """stamina's `on`: retry transport trouble, 5xx and 429; a float is the wait `Retry-After` asks for."""
    if isinstance(exc, UpstreamStatusError):
        if not exc.retryable:
            return False
        return exc.retry_after if exc.retry_after is not None else True
    if isinstance(exc, RefusedAddress):
        return False
    return isinstance(exc, httpx.TimeoutException | httpx.TransportError)


@dataclass(frozen=True, slots=True)
class Envelope:
    entries: list[Any]
    next_cursor: str | None
    has_more: bool


# Every ASCII digit to "0", all else kept: a run of 19 zeros in the result is a run of 19 digits in the text.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19


def loads(body: bytes) -> Any:
    """`json.loads(body)`, through orjson (~3 times faster) wherever the two give the same result: orjson
    refuses what json accepts (a BOM, UTF-16, NaN, lone surrogates, ...) and makes a float of an integer
    past 64 bits, so any failure and any 19-digit run go to json, which answers as it always did."""
    if _LONG_NUMBER not in body.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return json.loads(body)


def parse_envelope(body: bytes, content_type: str) -> Envelope:
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise MalformedPage(f"content type {media or 'none'!r} is not JSON")
    if not body.strip():
        raise MalformedPage("empty body")
    try:
        data = loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MalformedPage(f"the body is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise MalformedPage('the body is not {"entries": [...], "next_cursor": ..., "has_more": ...}')
    has_more = data.get("has_more")
    if not isinstance(has_more, bool):
        raise MalformedPage("has_more is missing or not a boolean")
    cursor = data.get("next_cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise MalformedPage("next_cursor is not a string")
    return Envelope(entries=data["entries"], next_cursor=cursor, has_more=has_more)


@dataclass(frozen=True, slots=True)
class Fetched:
    body: bytes
    content_type: str
    attempts: int


class UpstreamClient:
    """One run's HTTP client for one source."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        settings: Settings,
        *,
        deadline: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = check_source_url(base_url, settings)
        self.settings = settings
        self.deadline = deadline  # time.monotonic() value the run must finish by
        timeout = settings.sync_http_timeout_seconds
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=False,  # httpx's default, stated: a redirect could lead anywhere
            headers=headers,
            # Tests and the benchmark pass their own; otherwise every connect checks the resolved address.
            transport=transport or GuardedTransport(allow_loopback=settings.outbound_allow_loopback),
            trust_env=False,  # no proxy or netrc from the environment changes where we connect
        )

    async def __aenter__(self) -> UpstreamClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.client.aclose()

    async def fetch(self, cursor: str | None, limit: int) -> Fetched:
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        attempts = 0
        remaining = max(self.deadline - time.monotonic(), 0.001)
        try:
            async for attempt in stamina.retry_context(
                on=retry_hook,
                attempts=self.settings.sync_max_retries + 1,
                timeout=remaining,
                wait_initial=0.5,
                wait_max=30.0,
                wait_jitter=1.0,
            ):
                with attempt:
                    attempts += 1
                    body, content_type = await self._get(params)
                    return Fetched(body, content_type, attempts)
        except RefusedAddress as exc:
            raise RefusedURL(str(exc)) from None
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"{type(exc).__name__} on all {attempts} attempt(s)") from None
        except httpx.TransportError as exc:
            raise UpstreamUnreachable(f"{type(exc).__name__} on all {attempts} attempt(s)") from None
        except UpstreamStatusError as exc:
            if exc.retryable:
                raise UpstreamStatusError(exc.status, retryable=True, attempts=attempts) from None
            raise
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover

    async def _get(self, params: dict[str, str | int]) -> tuple[bytes, str]:
        cap = self.settings.sync_max_page_bytes
        async with self.client.stream("GET", self.base_url + "/entries", params=params) as response:
            status = response.status_code
            if 300 <= status < 400:
                raise UpstreamRedirect(f"upstream answered HTTP {status}; redirects are not followed")
            if status == 429 or status >= 500:
                raise UpstreamStatusError(
                    status, retryable=True, retry_after=parse_retry_after(response.headers.get("retry-after"))
                )
            if status != 200:
                raise UpstreamStatusError(status, retryable=False)
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > cap:
                raise PageTooLarge(f"page of {int(declared):,} bytes is over the cap of {cap:,} bytes")
            body = bytearray()
            # Decoded bytes are what we hold in memory, so the cap counts them (a gzip bomb stops here too).
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > cap:
                    raise PageTooLarge(f"page is over the cap of {cap:,} bytes", bytes(body[:cap]))
            return bytes(body), response.headers.get("content-type", "")
