"""C6 — a service started while its database is unreachable: the lifespan completes (no crash loop), liveness
answers, readiness says 503; once the database appears, readiness turns 200 within 5 s with no restart.

"The database appears" is a TCP forwarder on a port that is closed when the service starts and forwards to the
test PostgreSQL once opened: the service keeps one URL throughout, as in a real deployment where the database
comes up after the pods. The relay and the scheduler are on, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import make_url

from shared.api.app import create_service_app
from shared.api.combined import SPECS, create_app
from shared.settings import Settings
from tests.conftest import api_client
from tests.reliability.world import BAD_KEY

READY_WITHIN_SECONDS = 5.0
# One business route of each app, to show that requests, not only the probe, recover.
BUSINESS_ROUTE = {
    "check-api": "/v1/items",
    "list-sync": "/v1/sources",
    "feedback": "/v1/outbox",
    "all": "/v1/items",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class Forwarder:
    """A TCP forwarder from 127.0.0.1:`port` to the database server, opened on demand."""

    def __init__(self, port: int, target_host: str, target_port: int) -> None:
        self.port, self.target_host, self.target_port = port, target_host, target_port
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
            self.writers.add(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self.tasks.discard(task)

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.close()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)


@contextlib.asynccontextmanager
async def _forwarder(database_url: str) -> AsyncIterator[tuple[Forwarder, str]]:
    url = make_url(database_url)
    if not url.host or url.host.startswith("/"):
        pytest.skip("the test database is not reached over TCP")
    forwarder = Forwarder(_free_port(), url.host, url.port or 5432)
    try:
        yield forwarder, url.set(host="127.0.0.1", port=forwarder.port).render_as_string(hide_password=False)
    finally:
        await forwarder.close()


@pytest.mark.parametrize("service", ["check-api", "list-sync", "feedback", "all"])
async def test_a_service_starts_without_its_database_and_serves_once_it_appears(
    database_url: str, test_settings: Settings, service: str
) -> None:
    async with _forwarder(database_url) as (forwarder, late_url):
        settings = test_settings.model_copy(
            update={"database_url": late_url, "outbox_relay_enabled": True, "sync_scheduler_enabled": True}
        )
        # No `database=`: the lifespan builds its Database from the settings, checks the schema, starts the
        # maintenance loop and the service's hooks, exactly as `onecheck serve` does.
        app = create_app(settings) if service == "all" else create_service_app(SPECS[service], settings)
        async with app.router.lifespan_context(app), api_client(app, key=BAD_KEY) as api:
            assert (await api.get("/healthz")).status_code == 200
            not_ready = await api.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.headers["retry-after"]
            down = await api.get(BUSINESS_ROUTE[service])
            assert down.status_code == 503, down.text

            await forwarder.open()
            opened = time.monotonic()
            while (ready := await api.get("/readyz")).status_code != 200:
                assert time.monotonic() - opened < READY_WITHIN_SECONDS, ready.text
                await asyncio.sleep(0.1)
            # A request that needs the database now gets its real answer: the key is looked up and unknown.
            assert (await api.get(BUSINESS_ROUTE[service])).status_code == 401
            assert (await api.get("/healthz")).status_code == 200
