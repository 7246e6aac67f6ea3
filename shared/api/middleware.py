"""Pure ASGI middleware: request id, body-size limit, no-store caching, access log and Prometheus metrics."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import structlog
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("onecheck.access")

REQUESTS = Counter("onecheck_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
LATENCY = Histogram(
    "onecheck_http_request_duration_seconds",
    "HTTP request duration",
    ["service", "method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class _BodyTooLarge(Exception):
    pass


def _problem_bytes(status: int, code: str, title: str, detail: str) -> bytes:
    body = {"type": "/problems/" + code, "title": title, "status": status, "detail": detail, "code": code}
    return json.dumps(body).encode()


class RequestContextMiddleware:
    """Outermost layer: everything inside sees a request id, and a body over the limit never reaches a handler."""

    def __init__(self, app: ASGIApp, *, service: str, max_body_bytes: int, access_log: bool = True) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        self._metrics: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Only the two headers this layer reads (ASGI servers send header names lowercased).
        given = ""
        declared: str | None = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value.decode("latin-1")
            elif name == b"content-length":
                declared = value.decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status_holder = {"status": 500}
        path: str = scope["path"]

        too_large = False
        replaced = False

        async def send_wrapper(message: Message) -> None:
            nonlocal replaced
            if too_large:
                # The framework turned our receive error into its own 400; the client must see the 413.
                if not replaced:
                    replaced = True
                    await self._too_large(send_raw)
                return
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                raw = list(message.get("headers", []))
                raw.append((b"x-request-id", request_id.encode()))
                if path.startswith("/v1/") and not any(k.lower() == b"cache-control" for k, _ in raw):
                    # Check and feedback answers are per client and may carry personal data.
                    raw.append((b"cache-control", b"no-store"))
                message["headers"] = raw
            await send(message)

        async def send_raw(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(send_raw)
            self._observe(scope, status_holder["status"], start)
            return

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except _BodyTooLarge:
            if not replaced:
                replaced = True
                await self._too_large(send_raw)
        finally:
            self._observe(scope, status_holder["status"], start)
            structlog.contextvars.unbind_contextvars("request_id")

    async def _too_large(self, send: Send) -> None:
        body = _problem_bytes(
            413,
            "payload_too_large",
            "Payload too large",
            f"the request body exceeds {self.max_body_bytes} bytes",
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _observe(self, scope: Scope, status: int, start: float) -> None:
        elapsed = time.perf_counter() - start
        route: Any = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        # The labelled children, looked up once per (method, route, status): `.labels()` costs more than
        # the increment. Routes are templates, so the dict stays small.
        key = (method, template, status)
        children = self._metrics.get(key)
        if children is None:
            children = (
                REQUESTS.labels(self.service, method, template, str(status)),
                LATENCY.labels(self.service, method, template),
            )
            self._metrics[key] = children
        children[0].inc()
        children[1].observe(elapsed)
        # The path template, never the raw path or query: those can carry subject codes.
        if self.access_log:
            log.info("request", method=method, route=template, status=status, ms=round(elapsed * 1000, 2))
