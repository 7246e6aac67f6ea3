"""Real HTTP servers on 127.0.0.1 for tests that must cross a socket: the relay's and the sync's real clients
(with their connect-time address check), and commands run as subprocesses.

    LocalServer(handler)          a threaded HTTP server (one request per connection); `handler(request) -> Reply`; records requests;
                                  `stop()` then `start()` again on the same port (a receiver that is down,
                                  connection refused, then back)
    FeedPages(pages)              an upstream feed (`GET /entries?cursor=`) serving recorded pages
    SignedReceiver(secret)        a subscription callback receiver that verifies X-OneCheck-Timestamp and
                                  X-OneCheck-Signature as docs/list-sync.md tells business systems to
    Scripted(statuses)            answers the given statuses in turn, then the last one forever

The servers run in a thread of their own, so they answer while the test's event loop awaits the client.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Received:
    method: str
    target: str  # path and query as sent
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.target).query).items()}

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Reply:
        return cls(
            status, json.dumps(value, ensure_ascii=False).encode(), {"Content-Type": "application/json"}
        )


Handler = Callable[[Received], Reply]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class LocalServer:
    """`with LocalServer(handler) as server:` … `server.url`, `server.requests`."""

    def __init__(self, handler: Handler, *, port: int | None = None) -> None:
        self.handler = handler
        self.port = port or free_port()
        self.requests: list[Received] = []
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> LocalServer:
        owner = self

        class Handle(http.server.BaseHTTPRequestHandler):
            # One request per connection: a server that stops refuses the very next request (no kept-alive
            # connection still served by a handler thread).
            protocol_version = "HTTP/1.0"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                owner.requests.append(request)
                try:
                    reply = owner.handler(request)
                except Exception as exc:  # a broken test handler answers 500, visibly
                    reply = Reply(500, f"test handler failed: {exc!r}".encode())
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handle)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Scripted:
    """Answers `statuses` in turn (then the last one) with a small JSON body."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)

    def __call__(self, request: Received) -> Reply:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return Reply.json({"ok": 200 <= status < 300}, status)


class FeedPages:
    """`GET /entries?cursor=C&limit=N`: the recorded page for cursor C (no cursor: the first), each after
    `delay` seconds (so a progress display has time to draw)."""

    def __init__(self, pages: dict[str | None, bytes], *, delay: float = 0.0) -> None:
        self.pages = pages
        self.delay = delay

    def __call__(self, request: Received) -> Reply:
        if request.method != "GET" or request.path.rstrip("/").rsplit("/", 1)[-1] != "entries":
            return Reply(404)
        cursor = request.query.get("cursor")
        if cursor not in self.pages:
            return Reply.json({"error": f"unknown cursor {cursor!r}"}, 400)
        time.sleep(self.delay)
        return Reply(200, self.pages[cursor], {"Content-Type": "application/json"})


@dataclass(frozen=True)
class Delivery:
    event: dict[str, Any]
    timestamp: str
    signature: str
    valid: bool  # the signature verified with the subscription's secret, and the timestamp is fresh
    status: int  # what the receiver answered


class SignedReceiver:
    """A business system's callback endpoint, written as docs/list-sync.md tells them to: verifies the
    timestamp (± `tolerance` s) and `sha256=` HMAC of `timestamp + "." + raw body` with the secret."""

    def __init__(self, secret: str, *statuses: int, tolerance: int = 300) -> None:
        self.secret = secret
        self.answers = Scripted(*(statuses or (204,)))
        self.tolerance = tolerance
        self.deliveries: list[Delivery] = []

    def verify(self, timestamp: str, signature: str, body: bytes) -> bool:
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > self.tolerance:
            return False
        expected = hmac.new(
            self.secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        return hmac.compare_digest(signature, "sha256=" + expected)

    def __call__(self, request: Received) -> Reply:
        timestamp = request.headers.get("x-onecheck-timestamp", "")
        signature = request.headers.get("x-onecheck-signature", "")
        valid = self.verify(timestamp, signature, request.body)
        status = self.answers(request).status if valid else 401
        self.deliveries.append(Delivery(request.json(), timestamp, signature, valid, status))
        return Reply(status)
