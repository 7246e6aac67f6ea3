"""`onecheck demo load`, `onecheck clients create` and the embedded database, run as a user would run them."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.api.auth import hash_key
from shared.catalogue import catalogue_counts
from shared.db.engine import Database
from shared.demo import demo_catalogue, demo_subjects, load_demo
from tests.builders import auth
from tests.conftest import AppFactory, api_client

ONECHECK = [sys.executable, "-c", "from shared.cli import main; main()"]


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ONECHECK, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONECHECK_")}
    env.update(extra)
    return env


def test_demo_fixtures_are_the_contract_copies() -> None:
    contract = Path(__file__).resolve().parents[3] / "shared" / "contract" / "fixtures"
    if not contract.is_dir():
        pytest.skip("../shared/contract is not beside this checkout")
    ours = Path(__file__).resolve().parents[2] / "shared" / "data"
    for name in ("demo-catalogue.json", "demo-subjects.json", "entries-template.csv"):
        assert (ours / name).read_bytes() == (contract / name).read_bytes(), name


def test_demo_data_has_the_documented_shape() -> None:
    catalogue = demo_catalogue()
    assert len(catalogue["list_types"]) == 9
    assert len(catalogue["memoranda"]) == 2
    assert len(catalogue["measures"]) == 33
    assert len(catalogue["items"]) == 12
    assert len(catalogue["mappings"]) == 37
    assert len(demo_subjects()) == 7


async def test_demo_load_twice_changes_no_data_and_rotates_the_key(
    db: Database, app_factory: AppFactory
) -> None:
    today = dt.date(2026, 11, 23)
    async with db.session() as session:
        version, made, first_key = await load_demo(session, today)
    assert version is not None
    # Seven subjects: one with two entries, one red and black (two), the negative control with none.
    assert made == 8

    async def snapshot() -> tuple[object, ...]:
        async with db.connection() as conn:
            entries = await conn.fetch(
                "SELECT entry_id, content_hash, status FROM list_entries ORDER BY entry_id"
            )
            events = await conn.fetchval("SELECT count(*) FROM entry_events")
            aliases = await conn.fetch("SELECT alias_code, uscc FROM subject_aliases ORDER BY 1")
            versions = await conn.fetchval("SELECT count(*) FROM catalogue_versions")
            client = await conn.fetchrow(
                "SELECT client_id, scopes, any_department FROM api_clients WHERE name = 'demo'"
            )
        return tuple(map(tuple, entries)), events, tuple(map(tuple, aliases)), versions, tuple(client)

    before = await snapshot()
    async with db.session() as session:
        version2, made2, second_key = await load_demo(session, today + dt.timedelta(days=3))
        counts = await catalogue_counts(session)
    assert (version2, made2) == (None, 0)
    assert await snapshot() == before
    assert second_key != first_key
    assert counts["items"] == 12
    assert counts["measures"] == 33
    async with db.connection() as conn:
        statuses = dict(
            await conn.fetch(
                "SELECT subject_name, status FROM list_entries WHERE list_type = 'LT03'",
            )
        )
        assert statuses == {"深圳某民办培训中心": "objection_pending"}
        assert await conn.fetchval("SELECT key_hash FROM api_clients WHERE name = 'demo'") == hash_key(
            second_key
        )

    async with api_client(app_factory(db)) as api:
        assert (await api.get("/healthz", headers=auth(first_key))).status_code == 200
        assert (await api.get("/readyz")).status_code == 200


@pytest.mark.committing
def test_cli_clients_create_prints_the_key_alone_on_the_last_line(
    database_url: str, committed_db: Database
) -> None:
    env = _env(ONECHECK_DATABASE_URL=database_url)
    made = _run(
        [
            "clients",
            "create",
            "--name",
            "采购系统",
            "--department",
            "江门市财政局",
            "--scopes",
            "check,feedback",
        ],
        env,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("oc_")
    assert " " not in key
    again = _run(["clients", "create", "--name", "采购系统", "--department", "x", "--scopes", "check"], env)
    assert again.returncode == 2
    assert "exists already" in again.stderr
    bad_scope = _run(["clients", "create", "--name", "y", "--department", "x", "--scopes", "check,root"], env)
    assert bad_scope.returncode == 2
    assert "unknown scope" in bad_scope.stderr


@pytest.mark.committing
def test_cli_demo_load_prints_the_key_alone_on_the_last_line(
    database_url: str, committed_db: Database
) -> None:
    env = _env(ONECHECK_DATABASE_URL=database_url)
    first = _run(["demo", "load"], env)
    second = _run(["demo", "load"], env)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    key1, key2 = (r.stdout.strip().splitlines()[-1] for r in (first, second))
    assert key1.startswith("oc_")
    assert key2.startswith("oc_")
    assert key1 != key2
    assert "unchanged" in second.stdout


@pytest.mark.slow
def test_embedded_database_starts_migrates_and_is_reused(tmp_path: Path) -> None:
    """No ONECHECK_DATABASE_URL: a real PostgreSQL from the pip wheel, under ONECHECK_HOME, reused next time."""
    env = _env(ONECHECK_HOME=str(tmp_path / "home"))
    upgraded = _run(["db", "upgrade"], env, timeout=180)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"embedded PostgreSQL: data in {tmp_path / 'home' / 'pgdata'}" in upgraded.stderr + upgraded.stdout
    current = _run(["db", "current"], env, timeout=180)
    assert current.returncode == 0, current.stderr
    assert "current" in current.stdout
    assert "NOT" not in current.stdout
    assert (tmp_path / "home" / "pgdata" / "PG_VERSION").exists()


@pytest.mark.slow
def test_embedded_database_stops_when_the_server_is_terminated(tmp_path: Path) -> None:
    """`onecheck serve` on the embedded database, stopped by SIGTERM (kill, timeout, a service manager):
    the PostgreSQL it started stops with it instead of running on."""
    import signal
    import socket
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = _env(ONECHECK_HOME=str(tmp_path / "home"))
    assert _run(["db", "upgrade"], env, timeout=180).returncode == 0
    pid_file = tmp_path / "home" / "pgdata" / "postmaster.pid"
    proc = subprocess.Popen(
        [*ONECHECK, "serve", "check-api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and not ready:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.3)
        assert ready, "the service never became ready"
        assert pid_file.exists()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not pid_file.exists(), "the embedded PostgreSQL is still running after OneCheck exited"
