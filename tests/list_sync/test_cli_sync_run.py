"""`onecheck sync run NAME` as an operator runs it, in a terminal, against a local feed serving recorded pages
(issue 4, "Done when": a progress bar and the counts)."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from shared.db.engine import Database
from tests.builders import load_catalogue
from tests.http_servers import FeedPages, LocalServer
from tests.list_sync.helpers import add_source, entries_of, fixture_bytes

pytestmark = pytest.mark.committing

ONECHECK = [sys.executable, "-c", "from shared.cli import main; main()"]
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_terminal(args: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run a command with a pseudo-terminal as stdin, stdout and stderr (rich draws its progress bar only on
    a terminal); its exit code and everything it wrote, ANSI escapes removed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the command exited and closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    return code, _ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))


async def test_sync_run_shows_progress_and_prints_the_counts(
    committed_db: Database, database_url: str
) -> None:
    await load_catalogue(committed_db)
    pages = {None: fixture_bytes("feed-page-1.json"), "c2": fixture_bytes("feed-page-2.json")}
    with LocalServer(FeedPages(pages, delay=0.4)) as feed:  # slow enough for a few frames of the bar
        await add_source(committed_db, "court-feed", base_url=feed.url + "/api")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ONECHECK_")}
        env.update(
            ONECHECK_DATABASE_URL=database_url,
            ONECHECK_OUTBOUND_ALLOW_LOOPBACK="true",  # the feed listens on 127.0.0.1
            ONECHECK_LOG_LEVEL="WARNING",
            TERM="xterm-256color",
            COLUMNS="120",
            LINES="40",
        )
        code, output = await asyncio.to_thread(
            run_in_terminal, [*ONECHECK, "sync", "run", "court-feed"], env, 90
        )
    assert code == 0, output
    assert "court-feed: fetching" in output  # the progress bar, drawn while the pages came in
    assert "1 page(s), 3 record(s)" in output
    assert "2 page(s), 5 record(s)" in output
    assert re.search(r"run [0-9a-f-]{36} of court-feed: succeeded", output), output
    counts = dict(re.findall(r"(\w+)\W+(\d+)\s*\W*$", output, re.MULTILINE))
    assert {k: counts.get(k) for k in ("received", "inserted", "updated", "quarantined", "ended")} == {
        "received": "5",
        "inserted": "5",
        "updated": "0",
        "quarantined": "0",
        "ended": "0",
    }, output
    assert [r.query.get("cursor") for r in feed.requests] == [None, "c2"]
    assert sorted(await entries_of(committed_db, "court-feed")) == ["F-1", "F-2", "F-3", "F-4", "F-5"]


async def test_sync_run_of_an_unknown_source_fails_with_a_message(
    committed_db: Database, database_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONECHECK_")}
    env.update(ONECHECK_DATABASE_URL=database_url, ONECHECK_LOG_LEVEL="WARNING", COLUMNS="120")
    code, output = await asyncio.to_thread(run_in_terminal, [*ONECHECK, "sync", "run", "nowhere"], env, 60)
    assert code == 1
    assert "cannot run nowhere: no source named 'nowhere'" in output
