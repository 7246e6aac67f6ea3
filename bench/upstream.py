"""A local upstream platform for the snapshot-ingest benchmark: serves a data set's pre-rendered pages.

`GET /entries?cursor=C&limit=L` answers `{"entries": [...], "next_cursor": "...", "has_more": bool}` as the
contract's upstream feed does. The cursor is a record offset. Pages are rendered at generation time
(bench/generate.py, PAGE_SIZE records each), so an aligned request with `limit >= PAGE_SIZE` costs a file read
and no JSON work and the server stays far faster than any ingest; other requests are sliced (the contract lets
the platform return fewer than `limit`). Plain asyncio HTTP/1.1 with keep-alive, 127.0.0.1 only.

    .venv/bin/python -m bench.upstream --data bench/results/data/<set> --port 18090
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from bench.generate import PAGE_SIZE, page_path


class Pages:
    def __init__(self, pages_dir: Path, total: int) -> None:
        self.pages_dir = pages_dir
        self.total = total
        self.requests = 0

    def body(self, cursor: int, limit: int) -> bytes:
        self.requests += 1
        limit = max(1, min(limit, PAGE_SIZE))
        cursor = max(0, min(cursor, self.total))
        if cursor >= self.total:
            entries = b"[]"
            nxt = self.total
        elif cursor % PAGE_SIZE == 0 and limit == PAGE_SIZE:
            entries = page_path(self.pages_dir, cursor // PAGE_SIZE).read_bytes()
            nxt = min(cursor + PAGE_SIZE, self.total)
        else:
            page = json.loads(page_path(self.pages_dir, cursor // PAGE_SIZE).read_bytes())
            offset = cursor % PAGE_SIZE
            part = page[offset : offset + limit]
            entries = json.dumps(part, ensure_ascii=False, separators=(",", ":")).encode()
            nxt = cursor + len(part)
        more = b"true" if nxt < self.total else b"false"
        return (
            b'{"entries":'
            + entries
            + b',"next_cursor":"'
            + str(nxt).encode()
            + b'","has_more":'
            + more
            + b"}"
        )


def _response(status: int, body: bytes, content_type: bytes = b"application/json") -> bytes:
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"Error")
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
        % (status, reason, content_type, len(body))
        + body
    )


def handle_target(pages: Pages, target: str) -> bytes:
    parts = urlsplit(target)
    if parts.path.rstrip("/").split("/")[-1] != "entries":
        return _response(404, b'{"detail":"not found"}')
    query = parse_qs(parts.query)
    try:
        cursor = int(query.get("cursor", ["0"])[0] or 0)
        limit = int(query.get("limit", [str(PAGE_SIZE)])[0] or PAGE_SIZE)
    except ValueError:
        return _response(400, b'{"detail":"cursor and limit are integers"}')
    return _response(200, pages.body(cursor, limit))


async def _serve_connection(pages: Pages, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        for _ in range(1_000_000):  # requests per connection, bounded
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = [*lines[0].split(" "), "", ""][:3]
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
            length = int(headers.get("content-length", "0") or 0)
            if length:
                await reader.readexactly(length)
            if method != "GET":
                writer.write(_response(404, b'{"detail":"GET only"}'))
            else:
                writer.write(handle_target(pages, target))
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def start(pages: Pages, host: str, port: int) -> asyncio.Server:
    return await asyncio.start_server(lambda r, w: _serve_connection(pages, r, w), host, port)


async def _main(data: Path, host: str, port: int) -> None:
    manifest = json.loads((data / "manifest.json").read_text())
    pages = Pages(data / "pages", int(manifest["n"]))
    server = await start(pages, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a benchmark data set as an upstream feed.")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18090)
    args = parser.parse_args(argv)
    asyncio.run(_main(args.data, args.host, args.port))


if __name__ == "__main__":
    main()
