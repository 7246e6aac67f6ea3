"""The OneCheck benchmark: one command, targets as ratios of figures measured in the same run (issue 6).

    .venv/bin/python -m bench.run --quick     # 100 k and 1 M entries, ~15 min
    .venv/bin/python -m bench.run --full      # 100 k, 1 M and 10 M entries, ~1.5 h, ~30 GB of disk

Per size: generate the data set (cached under bench/results/data), bare COPY into unindexed copies of the
tables, snapshot ingest through list-sync (served by a local upstream), then the check service and the floor
app (bench/floor_app.py) under wrk with 1 and 2 workers, a half-rate open-loop latency run, 1,000-subject
batches and the workers' peak RSS. Then 1 M synthetic checks for the feedback write path and the enforcement
statistics. Writes bench/results/<stamp>-<mode>.json and appends a section to docs/benchmarks.md.
Pieces whose service is not there yet are reported as "skipped: <reason>"; runs with non-2xx answers are
reported as errors, never as speed figures. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench import generate, loadgen, report
from bench.floor_app import ensure_floor_table
from bench.procs import Server, ServerError, cpu_seconds, free_port, pg_backend_pids, running, workers_rss
from shared.db.engine import asyncpg_dsn, sqlalchemy_url
from shared.lifecycle import business_date

REPO = Path(__file__).resolve().parent.parent
# Without a database in the URL (or without the option), each run makes its own `onecheck_bench_<stamp>`, so
# no other session's tools can touch it by name; it is dropped at the end unless --keep-db.
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/"
DEPARTMENT = "江门市政务服务数据管理局"
SCOPES = "check,feedback,stats:read,sync:admin,lists:read,lists:write"
# Tables kept between sizes (schema, catalogue, the bench client); everything else is truncated.
KEEP_TABLES = {
    "alembic_version",
    "api_clients",
    "list_types",
    "memoranda",
    "measures",
    "items",
    "item_mappings",
    "catalogue_versions",
}
T = TypeVar("T")


class BenchError(RuntimeError):
    pass


@dataclass
class Config:
    mode: str
    sizes: list[int]
    workers: list[int]
    duration_s: float
    rounds: int
    warmup_s: float
    half_duration_s: float
    threads: int = 2
    connections: int = 64
    open_loop_connections: int = 32
    batch_size: int = 1000
    batch_connections: int = 4
    seed: int = 1
    probes: int = 50_000
    stats_checks: int = 1_000_000
    database_url: str = DEFAULT_URL
    data_dir: Path = REPO / "bench" / "results" / "data"
    results_dir: Path = REPO / "bench" / "results"
    docs: Path | None = REPO / "docs" / "benchmarks.md"
    keep_db: bool = False
    install_wrk: bool = True
    ingest_timeout_s: float | None = None
    skip: set[str] = field(default_factory=set)
    processes: int = max(1, min(2, os.cpu_count() or 1))


def log(message: str) -> None:
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def arun(coro: Any) -> Any:
    return asyncio.run(coro)


# --- database ----------------------------------------------------------------------------------------------


def bench_dsn(cfg: Config) -> str:
    return asyncpg_dsn(sqlalchemy_url(cfg.database_url))


def db_name(cfg: Config) -> str:
    name = make_url(sqlalchemy_url(cfg.database_url)).database or ""
    if "bench" not in name or name.startswith("onecheck_test"):
        raise BenchError(f"refusing to (re)create database {name!r}: its name must contain 'bench'")
    return name


async def recreate_database(cfg: Config) -> None:
    name = db_name(cfg)
    admin = make_url(sqlalchemy_url(cfg.database_url)).set(database="postgres")
    conn = await asyncpg.connect(asyncpg_dsn(admin.render_as_string(hide_password=False)))
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(cfg: Config) -> None:
    name = db_name(cfg)
    admin = make_url(sqlalchemy_url(cfg.database_url)).set(database="postgres")
    conn = await asyncpg.connect(asyncpg_dsn(admin.render_as_string(hide_password=False)))
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await conn.close()


async def pg_facts(cfg: Config) -> dict[str, str]:
    conn = await asyncpg.connect(bench_dsn(cfg))
    try:
        out = {}
        for name in (
            "server_version",
            "shared_buffers",
            "synchronous_commit",
            "fsync",
            "max_wal_size",
            "work_mem",
        ):
            out[name] = str(await conn.fetchval(f"SHOW {name}"))
        return out
    finally:
        await conn.close()


async def load_catalogue(cfg: Config) -> None:
    from shared.catalogue import write_catalogue
    from shared.db.engine import Database
    from shared.demo import demo_catalogue
    from shared.settings import Settings

    url = sqlalchemy_url(cfg.database_url)
    db = Database(url, Settings(database_url=url), application_name="bench")
    try:
        async with db.session() as session:
            await write_catalogue(session, demo_catalogue(), source="demo", note="bench")
            await session.commit()
    finally:
        await db.close()


async def reset_tables(cfg: Config, keep: set[str] | None = None) -> None:
    conn = await asyncpg.connect(bench_dsn(cfg))
    try:
        await ensure_floor_table(conn)
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            if r["tablename"] not in KEEP_TABLES | (keep or set())
            and not r["tablename"].startswith("checks_")
            and not r["tablename"].startswith("bench_copy_")
        ]
        if tables:
            await conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
    finally:
        await conn.close()


async def bare_copy(cfg: Config, ds: generate.Dataset) -> dict[str, Any]:
    """COPY the data set into unindexed copies (CREATE TABLE … (LIKE …)) of list_entries and entry_persons."""
    conn = await asyncpg.connect(bench_dsn(cfg))
    try:
        await conn.execute("DROP TABLE IF EXISTS bench_copy_entries, bench_copy_persons")
        await conn.execute("CREATE TABLE bench_copy_entries (LIKE list_entries)")
        await conn.execute("CREATE TABLE bench_copy_persons (LIKE entry_persons)")
        await conn.execute("CHECKPOINT")
        t0 = time.perf_counter()
        for path in ds.entry_files:
            await conn.copy_to_table(
                "bench_copy_entries", source=path, columns=list(generate.ENTRY_COLUMNS), format="text"
            )
        t1 = time.perf_counter()
        for path in ds.person_files:
            await conn.copy_to_table(
                "bench_copy_persons", source=path, columns=list(generate.PERSON_COLUMNS), format="text"
            )
        t2 = time.perf_counter()
        rows = await conn.fetchval("SELECT count(*) FROM bench_copy_entries")
        if rows != ds.entries:
            raise BenchError(f"bare COPY loaded {rows} rows, expected {ds.entries}")
        return {
            "entries": ds.entries,
            "persons": ds.persons,
            "entries_s": round(t1 - t0, 3),
            "persons_s": round(t2 - t1, 3),
            "seconds": round(t2 - t0, 3),
            "rows_per_s": round(ds.entries / (t2 - t0), 1),
            "entries_only_rows_per_s": round(ds.entries / (t1 - t0), 1),
        }
    finally:
        await conn.execute("DROP TABLE IF EXISTS bench_copy_entries, bench_copy_persons")
        await conn.close()


async def load_entries(cfg: Config, ds: generate.Dataset) -> dict[str, Any]:
    """Fill list_entries + entry_persons for the check runs: COPY with secondary indexes dropped and rebuilt."""
    conn = await asyncpg.connect(bench_dsn(cfg))
    t0 = time.perf_counter()
    try:
        await conn.execute("TRUNCATE list_entries, entry_persons, entry_events CASCADE")
        indexes = await conn.fetch(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public' "
            "AND i.tablename IN ('list_entries', 'entry_persons') "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        )
        for row in indexes:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        try:
            for path in ds.entry_files:
                await conn.copy_to_table(
                    "list_entries", source=path, columns=list(generate.ENTRY_COLUMNS), format="text"
                )
            for path in ds.person_files:
                await conn.copy_to_table(
                    "entry_persons", source=path, columns=list(generate.PERSON_COLUMNS), format="text"
                )
        finally:
            for row in indexes:
                await conn.execute(row["indexdef"])
        await conn.execute("VACUUM (FREEZE, ANALYZE) list_entries")
        await conn.execute("VACUUM (FREEZE, ANALYZE) entry_persons")
        entries = await conn.fetchval("SELECT count(*) FROM list_entries")
        persons = await conn.fetchval("SELECT count(*) FROM entry_persons")
    finally:
        await conn.close()
    if entries != ds.entries or persons != ds.persons:
        raise BenchError(
            f"loaded {entries} entries / {persons} persons, expected {ds.entries} / {ds.persons}"
        )
    return {"seconds": round(time.perf_counter() - t0, 1), "entries": entries, "persons": persons}


# --- services ----------------------------------------------------------------------------------------------


def onecheck_cmd() -> str:
    sibling = Path(sys.executable).with_name("onecheck")
    if sibling.exists():
        return str(sibling)
    found = shutil.which("onecheck")
    if not found:
        raise BenchError("the `onecheck` command is not installed (pip install -e .)")
    return found


def service_env(cfg: Config, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONECHECK_")}
    env.update(
        {
            "ONECHECK_DATABASE_URL": sqlalchemy_url(cfg.database_url),
            "ONECHECK_ENVIRONMENT": "development",
            "ONECHECK_HOME": str(home),
            "ONECHECK_IMPORT_DIR": str(home / "imports"),
            "ONECHECK_LOG_LEVEL": "WARNING",
            "ONECHECK_ACCESS_LOG": "false",
            "ONECHECK_OUTBOUND_ALLOW_LOOPBACK": "true",  # the benchmark's upstream listens on 127.0.0.1
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [onecheck_cmd(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )
    if done.returncode != 0:
        raise BenchError(f"onecheck {' '.join(args[:3])} failed: {(done.stderr or done.stdout)[-1500:]}")
    return done.stdout


SNAPSHOT_PACKAGES = ("shared", "services", "bench")


def snapshot_code(dest: Path) -> dict[str, Any]:
    """Copy the packages every process of the run imports, so one run measures one version of the code even
    while others edit the tree (PYTHONPATH and the working directory point the processes at the copy).
    Returns the commit, the uncommitted files and a digest of the copy."""
    digest = hashlib.sha256()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ruff_cache", ".mypy_cache", "results")
    for package in SNAPSHOT_PACKAGES:
        shutil.copytree(REPO / package, dest / package, ignore=ignore)
    for path in sorted(dest.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(dest)).encode() + b"\0" + path.read_bytes())

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], capture_output=True, text=True, timeout=20, check=False, cwd=REPO
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip()

    changed = [
        ln[3:] for ln in git("status", "--porcelain", "--", *SNAPSHOT_PACKAGES).splitlines() if ln.strip()
    ]
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_files": changed,
        "snapshot_sha256": digest.hexdigest()[:16],
    }


def _norm_path(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def openapi_routes(base_url: str) -> set[tuple[str, str]]:
    """(METHOD, path with {} for parameters) the service documents; empty when it has no OpenAPI."""
    try:
        r = httpx.get(base_url + "/openapi.json", timeout=10)
    except httpx.HTTPError:
        return set()
    if r.status_code != 200:
        return set()
    routes = set()
    for path, ops in r.json().get("paths", {}).items():
        for method in ops:
            routes.add((method.upper(), _norm_path(path)))
    return routes


def expect_status(r: httpx.Response, *ok: int) -> Any:
    if r.status_code not in ok:
        raise BenchError(f"{r.request.method} {r.request.url.path} answered {r.status_code}: {r.text[:400]}")
    return r.json() if r.content else None


TRANSIENT_PG = (
    asyncpg.exceptions.OutOfMemoryError,  # "out of shared memory": the server-wide lock table is full
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.DeadlockDetectedError,
)


def arun_retry(make: Callable[[], Any], what: str, notes: list[str], attempts: int = 4) -> Any:
    """Run a database step, again after a pause when the shared server is out of locks or connections
    (other sessions on the same server cause these; the step starts over from scratch)."""
    for k in range(attempts):
        try:
            return arun(make())
        except TRANSIENT_PG as exc:
            if k == attempts - 1:
                raise
            notes.append(f"{what}: {type(exc).__name__} ({str(exc).splitlines()[0]}), retried")
            log(f"  {what}: {type(exc).__name__}, retrying in 15 s")
            time.sleep(15)
    raise AssertionError("unreachable")


def retry(fn: Callable[[], T], attempts: int = 3) -> T:
    for k in range(attempts):
        try:
            return fn()
        except loadgen.LoadError:
            if k == attempts - 1:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")


# --- phases ------------------------------------------------------------------------------------------------


@dataclass
class Context:
    cfg: Config
    env: dict[str, str]
    key: str
    client_id: uuid.UUID
    wrk: str
    log_dir: Path
    code: Path  # the snapshot of the code every process of the run imports (see snapshot_code)
    notes: list[str] = field(default_factory=list)


def phase_ingest(ctx: Context, ds: generate.Dataset, copy: dict[str, Any]) -> dict[str, Any]:
    """Snapshot ingest through list-sync's API: a source on the local upstream, one run, polled to its end."""
    cfg = ctx.cfg
    timeout = cfg.ingest_timeout_s or 120 + ds.entries / 2500
    port_u, port_s = free_port(), free_port()
    upstream = Server(
        f"upstream-n{ds.n}",
        [sys.executable, "-m", "bench.upstream", "--data", str(ds.root), "--port", str(port_u)],
        env=ctx.env,
        log_dir=ctx.log_dir,
        cwd=ctx.code,
        port=port_u,
    )
    sync = Server(
        f"list-sync-n{ds.n}",
        [onecheck_cmd(), "serve", "list-sync", "--port", str(port_s), "--workers", "1"],
        env=ctx.env,
        log_dir=ctx.log_dir,
        cwd=ctx.code,
        port=port_s,
    )
    with running(upstream, sync):
        upstream.wait_http(f"/entries?limit={generate.PAGE_SIZE}")
        try:
            sync.wait_http()
        except ServerError as exc:
            return {"status": "skipped", "reason": f"list-sync did not start: {str(exc)[-300:]}"}
        routes = openapi_routes(sync.url)
        wanted = {("POST", "/v1/sources"), ("POST", "/v1/sources/{}/runs"), ("GET", "/v1/runs/{}")}
        if not wanted <= routes:
            missing = ", ".join(f"{m} {p}" for m, p in sorted(wanted - routes))
            return {"status": "skipped", "reason": f"list-sync has no {missing} yet"}
        headers = {"Authorization": f"Bearer {ctx.key}"}
        with httpx.Client(base_url=sync.url, headers=headers, timeout=60) as http:
            source = {"name": generate.SOURCE_NAME, "kind": "snapshot", "base_url": upstream.url}
            expect_status(http.post("/v1/sources", json=source), 201)
            t0 = time.monotonic()
            run = expect_status(http.post(f"/v1/sources/{generate.SOURCE_NAME}/runs"), 202)
            run_id = run["run_id"]
            status = run.get("status", "running")
            polls = 0
            progress: list[tuple[float, str, int]] = []  # (seconds, status, received) about every second
            while status == "running" and time.monotonic() - t0 < timeout and sync.alive():
                time.sleep(0.25 if polls < 240 else 1)
                polls += 1
                run = expect_status(http.get(f"/v1/runs/{run_id}"), 200)
                status = run["status"]
                elapsed = round(time.monotonic() - t0, 2)
                if not progress or elapsed - progress[-1][0] >= 1 or status != "running":
                    progress.append((elapsed, status, int((run.get("counts") or {}).get("received") or 0)))
            wall = time.monotonic() - t0
    counts = run.get("counts") or {}
    received = int(counts.get("received") or 0)
    result: dict[str, Any] = {"via": "API", "run_id": run_id, "status_of_run": status, "counts": counts}
    result["progress"] = progress[:: max(1, len(progress) // 60)] + progress[-1:]
    result["wall_s"] = round(wall, 2)
    if status == "running":
        # Not done in `wall` seconds: the rate was at most N / wall.
        result.update(
            status="timeout",
            rows_per_s_at_most=round(ds.entries / wall, 1),
            reason=f"run not finished after {wall:.0f} s (so at most {ds.entries / wall:,.0f} rows/s)",
        )
        return result
    if status != "succeeded":
        result.update(status="failed", reason=f"run ended {status}: {run.get('error')}")
        return result
    try:
        started = dt.datetime.fromisoformat(run["started_at"])
        finished = dt.datetime.fromisoformat(run["finished_at"])
        # Informational only: a `finished_at` stamped with now() inside the applying transaction is that
        # transaction's start, so it can leave out the apply itself. The figure is the wall time.
        result["run_timestamps_s"] = round((finished - started).total_seconds(), 2)
    except (KeyError, TypeError, ValueError):
        pass
    if received != ds.entries:
        ctx.notes.append(f"snapshot run at {ds.n:,} received {received:,} of {ds.entries:,} records")
    result.update(status="ok", seconds=round(wall, 2), rows_per_s=round(ds.entries / wall, 1))
    return result


def _agreement(http: httpx.Client, ds: generate.Dataset, sample: int = 200) -> dict[str, Any]:
    """POST `sample` probes one by one and compare outcome with what the generator expects."""
    bodies = ds.probes_file.read_text(encoding="utf-8").splitlines()[:sample]
    expects = ds.root.joinpath("probes-expect.jsonl").read_text().splitlines()[:sample]
    agree = 0
    wrong: list[dict[str, Any]] = []
    for body, exp in zip(bodies, expects, strict=True):
        r = http.post("/v1/checks", content=body, headers={"Content-Type": "application/json"})
        answer = expect_status(r, 200)
        expected = json.loads(exp)
        matched = answer.get("outcome", "clear") != "clear" or bool(answer.get("matches"))
        if matched == (expected["expect"] == "match"):
            agree += 1
        elif len(wrong) < 3:
            wrong.append({"expected": expected, "outcome": answer.get("outcome"), "body": json.loads(body)})
    return {"checked": len(bodies), "agree": agree, "examples": wrong}


def _saturate(ctx: Context, server: Server, mode: str, file: Path, **kw: Any) -> loadgen.LoadResult:
    return retry(lambda: loadgen.run_wrk(server.url, mode, file, ctx.key, wrk=ctx.wrk, **kw))


async def _xact_commits(cfg: Config) -> int:
    conn = await asyncpg.connect(bench_dsn(cfg))
    try:
        value = await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    return int(value or 0)


def _metered(ctx: Context, server: Server, run: Callable[[], loadgen.LoadResult]) -> dict[str, Any]:
    """A load run with what it cost per request: app worker CPU, PostgreSQL backend CPU, transactions.

    PostgreSQL publishes its transaction counters about once a second, hence the pauses (outside the run).
    """
    database = db_name(ctx.cfg)
    time.sleep(1.2)
    workers = server.worker_pids()
    backends = pg_backend_pids(database)
    app0, pg0, x0 = cpu_seconds(workers), cpu_seconds(backends), arun(_xact_commits(ctx.cfg))
    load_before = os.getloadavg()[0]
    result = run()
    load_after = os.getloadavg()[0]
    backends = sorted(set(backends) | set(pg_backend_pids(database)))
    app1, pg1 = cpu_seconds(workers), cpu_seconds(backends)
    time.sleep(1.2)
    x1 = arun(_xact_commits(ctx.cfg)) - 1  # our own counting transaction
    out = result.as_dict()
    out["loadavg_1m"] = [round(load_before, 2), round(load_after, 2)]
    if result.requests:
        out["app_cpu_us_per_req"] = round((app1 - app0) / result.requests * 1e6, 1)
        out["pg_cpu_us_per_req"] = round((pg1 - pg0) / result.requests * 1e6, 1)
        out["db_xacts_per_req"] = round((x1 - x0) / result.requests, 2)
    return out


def phase_checks(ctx: Context, ds: generate.Dataset, w: int) -> dict[str, Any]:
    """Service and floor app with `w` workers each, under the same load, one at a time."""
    cfg = ctx.cfg
    port_s, port_f = free_port(), free_port()
    svc = Server(
        f"check-api-w{w}-n{ds.n}",
        [onecheck_cmd(), "serve", "check-api", "--port", str(port_s), "--workers", str(w)],
        env=ctx.env,
        log_dir=ctx.log_dir,
        cwd=ctx.code,
        port=port_s,
    )
    floor = Server(
        f"floor-w{w}-n{ds.n}",
        [sys.executable, "-m", "bench.floor_app", "--port", str(port_f), "--workers", str(w)],
        env=ctx.env,
        log_dir=ctx.log_dir,
        cwd=ctx.code,
        port=port_f,
    )
    apps: dict[str, dict[str, Any]] = {"service": {"status": "ok"}, "floor": {"status": "ok"}}
    with running(svc, floor):
        floor.wait_http()
        try:
            svc.wait_http()
        except ServerError as exc:
            apps["service"] = {"status": "skipped", "reason": f"check-api did not start: {str(exc)[-300:]}"}
        servers = {"service": svc, "floor": floor}
        headers = {"Authorization": f"Bearer {ctx.key}"}
        routes = openapi_routes(svc.url) if apps["service"]["status"] == "ok" else set()
        if apps["service"]["status"] == "ok" and ("POST", "/v1/checks") not in routes:
            apps["service"] = {"status": "skipped", "reason": "check-api has no POST /v1/checks yet"}
        for name, server in servers.items():
            if apps[name]["status"] != "ok":
                continue
            with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
                try:
                    apps[name]["agreement"] = _agreement(http, ds, 200 if name == "service" else 20)
                except (BenchError, httpx.HTTPError) as exc:
                    apps[name] = {"status": "skipped", "reason": f"smoke check failed: {exc}"}
        live = [n for n in ("service", "floor") if apps[n]["status"] == "ok"]
        for name in live:
            warm = _saturate(ctx, servers[name], "single", ds.probes_file, duration_s=cfg.warmup_s)
            apps[name]["warmup"] = warm.as_dict()
        for r in range(cfg.rounds):
            for name in live if r % 2 == 0 else list(reversed(live)):
                log(f"  {ds.n:,} entries, {w} worker(s): {name} saturating round {r + 1}/{cfg.rounds}")
                server = servers[name]
                load = functools.partial(
                    _saturate,
                    ctx,
                    server,
                    "single",
                    ds.probes_file,
                    threads=cfg.threads,
                    connections=cfg.connections,
                    duration_s=cfg.duration_s,
                )
                res = _metered(ctx, server, load)
                apps[name].setdefault("saturating", []).append(res)
        for name in live:
            app = apps[name]
            runs = app["saturating"]
            app["errors"] = sum(x["errors"] for x in runs)
            app["rps"] = report.median([x["rps"] for x in runs])
            app["median_run"] = sorted(runs, key=lambda x: x["rps"])[len(runs) // 2]
        if "latency" not in cfg.skip:
            lines = ds.probes_file.read_text(encoding="utf-8").splitlines()
            for name in live:
                app = apps[name]
                if app["errors"]:
                    app["half_reason"] = "saturating runs had errors"
                    continue
                port = servers[name].port or 0
                bodies = [
                    loadgen.raw_post("127.0.0.1", port, "/v1/checks", x.encode(), ctx.key) for x in lines
                ]
                rate = app["rps"] / 2
                log(f"  {ds.n:,} entries, {w} worker(s): {name} open loop at {rate:,.0f}/s")
                half = functools.partial(
                    loadgen.run_open_loop,
                    "127.0.0.1",
                    port,
                    bodies,
                    rate=rate,
                    duration_s=cfg.half_duration_s,
                    connections=cfg.open_loop_connections,
                )
                app["half"] = _metered(ctx, servers[name], half)
        if "batch" not in cfg.skip and "service" in live:
            apps["service"].update(phase_batch(ctx, svc, ds, routes))
        for name in live:
            apps[name]["rss"] = workers_rss(servers[name])
    return apps


def phase_batch(
    ctx: Context, svc: Server, ds: generate.Dataset, routes: set[tuple[str, str]]
) -> dict[str, Any]:
    cfg = ctx.cfg
    if ("POST", "/v1/checks/batch") not in routes:
        return {"batch_reason": "check-api has no POST /v1/checks/batch yet"}
    subjects = ds.probe_subjects_file.read_text(encoding="utf-8").splitlines()[: cfg.batch_size]
    body = {
        "item_code": generate.ITEM_CODE,
        "business_ref": "BENCH-BATCH-SMOKE",
        "operator": generate.OPERATOR,
        "subjects": [json.loads(s) for s in subjects],
    }
    with httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {ctx.key}"}, timeout=120) as http:
        try:
            answer = expect_status(http.post("/v1/checks/batch", json=body), 200)
        except (BenchError, httpx.HTTPError) as exc:
            return {"batch_reason": f"smoke batch failed: {exc}"}
    results = answer.get("results", []) if isinstance(answer, dict) else []
    problems = sum(1 for x in results if "check_id" not in x)
    if len(results) != len(subjects) or problems:
        return {
            "batch_reason": f"smoke batch: {len(results)} results, {problems} problems for {len(subjects)}"
        }
    log(f"  {ds.n:,} entries: batches of {cfg.batch_size}")
    res = _saturate(
        ctx,
        svc,
        "batch",
        ds.probe_subjects_file,
        threads=2,
        connections=cfg.batch_connections,
        duration_s=cfg.duration_s,
        batch=cfg.batch_size,
        timeout_s=120,
    )
    out = res.as_dict()
    out["subjects_per_s"] = round(res.rps * cfg.batch_size, 1)
    return {"batch": out}


async def _copy_checks(cfg: Config, client_id: uuid.UUID, count: int) -> dict[str, Any]:
    from shared.demo import demo_catalogue

    conn = await asyncpg.connect(bench_dsn(cfg))
    today = business_date()
    t0 = time.perf_counter()
    with_measures = 0
    try:
        await conn.execute("SELECT onecheck_ensure_check_partitions($1, 6)", today - dt.timedelta(days=120))
        tables = (
            ("check_matches", generate.MATCH_COLUMNS, "matches"),
            ("check_measures", generate.MEASURE_COLUMNS, "measures"),
            ("checks", generate.CHECK_COLUMNS, "checks"),
        )
        catalogue: Any = demo_catalogue()
        for rows in generate.synthetic_checks(
            cfg.seed, count, client_id=client_id, department=DEPARTMENT, catalogue=catalogue, today=today
        ):
            with_measures += sum(1 for c in rows.checks if c[17])
            for table, columns, attr in tables:
                records = getattr(rows, attr)
                if records:
                    await conn.copy_records_to_table(table, records=records, columns=list(columns))
            await generate.write_summaries(conn, rows.checks)
        for row in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND "
            "(tablename LIKE 'check%' OR tablename LIKE 'feedback%')"
        ):
            await conn.execute(f'VACUUM (ANALYZE) "{row["tablename"]}"')
        total = await conn.fetchval("SELECT count(*) FROM checks")
    finally:
        await conn.close()
    return {
        "checks_loaded": int(total),
        "with_measures": with_measures,
        "load_s": round(time.perf_counter() - t0, 1),
    }


async def _feedback_lines(cfg: Config, client_id: uuid.UUID, path: Path, limit: int = 20_000) -> int:
    conn = await asyncpg.connect(bench_dsn(cfg))
    try:
        rows = await conn.fetch(
            "SELECT check_id, measure_codes FROM checks WHERE client_id = $1 AND cardinality(measure_codes) > 0 "
            "LIMIT $2",
            client_id,
            limit,
        )
    finally:
        await conn.close()
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            body = {
                "decision": "approved",
                "measures": [{"code": c, "status": "applied"} for c in row["measure_codes"]],
                "operator": generate.OPERATOR,
            }
            f.write(f"/v1/checks/{row['check_id']}/feedback\t{json.dumps(body, separators=(',', ':'))}\n")
    return len(rows)


def _time_stats(http: httpx.Client, params: dict[str, str], reps: int = 5) -> tuple[list[float], int]:
    times: list[float] = []
    errors = 0
    expect_status(http.get("/v1/stats/enforcement", params=params), 200)  # warm-up
    for _ in range(reps):
        t0 = time.perf_counter()
        r = http.get("/v1/stats/enforcement", params=params)
        times.append(time.perf_counter() - t0)
        if r.status_code != 200:
            errors += 1
    return times, errors


def _feedback_writes(
    ctx: Context, svc: Server, http: httpx.Client, routes: set[tuple[str, str]], lines: Path, n_lines: int
) -> dict[str, Any]:
    cfg = ctx.cfg
    if ("POST", "/v1/checks/{}/feedback") not in routes:
        return {"status": "skipped", "reason": "feedback has no POST /v1/checks/{id}/feedback yet"}
    if not n_lines:
        return {"status": "skipped", "reason": "no checks with measures"}
    path, _, body = lines.read_text(encoding="utf-8").splitlines()[0].partition("\t")
    r = http.post(path, content=body, headers={"Content-Type": "application/json"})
    if r.status_code != 200:
        return {"status": "failed", "reason": f"smoke feedback answered {r.status_code}: {r.text[:300]}"}
    log(f"feedback writes, {len(svc.worker_pids())} worker(s)")
    load = functools.partial(
        _saturate,
        ctx,
        svc,
        "lines",
        lines,
        threads=cfg.threads,
        connections=cfg.connections,
        duration_s=cfg.duration_s,
    )
    write = _metered(ctx, svc, load)
    write["status"] = "ok" if write["ok"] else "errors"
    write["reason"] = "" if write["ok"] else f"{write['errors']} non-2xx answers or socket errors"
    write["rss"] = workers_rss(svc)
    return write


def _stats(http: httpx.Client, routes: set[tuple[str, str]], checks: int) -> dict[str, Any]:
    if ("GET", "/v1/stats/enforcement") not in routes:
        return {"status": "skipped", "reason": "feedback has no GET /v1/stats/enforcement yet"}
    log("enforcement statistics")
    try:
        times, errors = _time_stats(http, {})
        since = (business_date() - dt.timedelta(days=30)).isoformat()
        window, werrors = _time_stats(http, {"from": since})
        totals = expect_status(http.get("/v1/stats/enforcement"), 200).get("totals")
    except (BenchError, httpx.HTTPError) as exc:
        return {"status": "failed", "reason": str(exc)}
    return {
        "status": "ok",
        "checks": checks,
        "totals": totals,
        "times_s": [round(t, 4) for t in times],
        "median_s": round(report.median(times), 4),
        "max_s": round(max(times), 4),
        "window_median_s": round(report.median(window), 4),
        "errors": errors + werrors,
    }


def phase_feedback(ctx: Context) -> dict[str, Any]:
    cfg = ctx.cfg
    keep = {"list_entries", "entry_persons", "entry_events"}
    arun_retry(lambda: reset_tables(cfg, keep=keep), "reset", ctx.notes)
    log(f"feedback: loading {cfg.stats_checks:,} synthetic checks")
    out: dict[str, Any] = arun_retry(
        lambda: _copy_checks(cfg, ctx.client_id, cfg.stats_checks), "loading checks", ctx.notes
    )
    lines = ctx.log_dir / "feedback-lines.tsv"
    n_lines = arun(_feedback_lines(cfg, ctx.client_id, lines))
    out["write"] = {}
    out["stats"] = {"status": "skipped", "reason": "not run"}
    headers = {"Authorization": f"Bearer {ctx.key}"}
    for w in cfg.workers:
        port = free_port()
        svc = Server(
            f"feedback-w{w}",
            [onecheck_cmd(), "serve", "feedback", "--port", str(port), "--workers", str(w)],
            env=ctx.env,
            log_dir=ctx.log_dir,
            cwd=ctx.code,
            port=port,
        )
        with running(svc):
            try:
                svc.wait_http()
            except ServerError as exc:
                reason = f"feedback service did not start: {str(exc)[-300:]}"
                out["stats"] = {"status": "skipped", "reason": reason}
                out["write"][str(w)] = {"status": "skipped", "reason": reason}
                continue
            routes = openapi_routes(svc.url)
            with httpx.Client(base_url=svc.url, headers=headers, timeout=120) as http:
                out["write"][str(w)] = _feedback_writes(ctx, svc, http, routes, lines, n_lines)
                if w == cfg.workers[-1]:
                    out["stats"] = _stats(http, routes, out["checks_loaded"])
    return out


def run_size(ctx: Context, n: int) -> dict[str, Any]:
    cfg = ctx.cfg
    out: dict[str, Any] = {"n": n}
    log(f"{n:,} entries: data set")
    t0 = time.perf_counter()
    cached = generate.load_dataset(generate.dataset_dir(cfg.data_dir, cfg.seed, n, business_date()))
    ds = generate.write_dataset(
        cfg.data_dir, cfg.seed, n, business_date(), probes=cfg.probes, processes=cfg.processes
    )
    out["generate"] = {
        "cached": cached is not None and cached.probes == cfg.probes,
        "seconds": round(time.perf_counter() - t0, 1),
        "root": str(ds.root),
        "persons": ds.persons,
        "in_effect": ds.in_effect,
    }
    arun_retry(lambda: reset_tables(cfg), "reset", ctx.notes)
    log(f"{n:,} entries: bare COPY")
    out["copy"] = arun_retry(lambda: bare_copy(cfg, ds), f"bare COPY at {n:,}", ctx.notes)
    log(f"  {out['copy']['rows_per_s']:,.0f} rows/s")
    if "ingest" in cfg.skip:
        out["ingest"] = {"status": "skipped", "reason": "--skip ingest"}
    else:
        log(f"{n:,} entries: snapshot ingest through list-sync")
        try:
            out["ingest"] = phase_ingest(ctx, ds, out["copy"])
        except (BenchError, ServerError, httpx.HTTPError) as exc:
            out["ingest"] = {"status": "failed", "reason": str(exc)[-500:]}
        log(f"  ingest: {out['ingest'].get('status')} {out['ingest'].get('reason', '')}")
    if "checks" in cfg.skip:
        return out
    arun_retry(lambda: reset_tables(cfg), "reset", ctx.notes)
    log(f"{n:,} entries: loading list_entries")
    out["load"] = arun_retry(lambda: load_entries(cfg, ds), f"loading list_entries at {n:,}", ctx.notes)
    out["workers"] = {}
    for w in cfg.workers:
        log(f"{n:,} entries: service and floor app, {w} worker(s)")
        try:
            out["workers"][str(w)] = phase_checks(ctx, ds, w)
        except (BenchError, ServerError, loadgen.LoadError, httpx.HTTPError, OSError) as exc:
            reason = f"{type(exc).__name__}: {str(exc)[-400:]}"
            out["workers"][str(w)] = {
                "service": {"status": "failed", "reason": reason},
                "floor": {"status": "failed", "reason": reason},
            }
            log(f"  failed: {reason}")
    return out


# --- main --------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Config:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="100 k and 1 M entries, short runs (default)")
    mode.add_argument("--full", action="store_true", help="100 k, 1 M and 10 M entries, longer runs")
    p.add_argument("--sizes", help="comma-separated entry counts, e.g. 100000,1000000")
    p.add_argument("--workers", default="1,2", help="worker counts (default 1,2)")
    p.add_argument("--duration", type=float, help="seconds per saturating run")
    p.add_argument("--rounds", type=int, help="saturating rounds per app (median)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--probes", type=int, default=50_000)
    p.add_argument("--stats-checks", type=int, default=1_000_000)
    p.add_argument("--skip", default="", help="comma-separated: ingest, checks, latency, batch, feedback")
    p.add_argument("--database-url", default=os.environ.get("ONECHECK_BENCH_DATABASE_URL", DEFAULT_URL))
    p.add_argument("--data-dir", type=Path, default=Config.data_dir)
    p.add_argument("--no-docs", action="store_true", help="do not append to docs/benchmarks.md")
    p.add_argument("--keep-db", action="store_true", help="keep the benchmark database afterwards")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install wrk when absent")
    p.add_argument("--ingest-timeout", type=float, help="seconds to wait for a snapshot run")
    a = p.parse_args(argv)
    url = make_url(sqlalchemy_url(a.database_url))
    if not url.database:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d_%H%M%S")
        url = url.set(database=f"onecheck_bench_{stamp}")
    database_url = url.render_as_string(hide_password=False)
    full = bool(a.full)
    sizes = [int(s) for s in a.sizes.split(",")] if a.sizes else (
        [100_000, 1_000_000, 10_000_000] if full else [100_000, 1_000_000]
    )  # fmt: skip
    duration = a.duration or (20.0 if full else 10.0)
    return Config(
        mode="full" if full else "quick" if not a.sizes else "custom",
        sizes=sizes,
        workers=[int(w) for w in a.workers.split(",")],
        duration_s=duration,
        rounds=a.rounds or (3 if full else 2),
        warmup_s=5.0 if full else 3.0,
        half_duration_s=duration,
        seed=a.seed,
        probes=a.probes,
        stats_checks=a.stats_checks,
        database_url=database_url,
        data_dir=a.data_dir,
        docs=None if a.no_docs else Config.docs,
        keep_db=a.keep_db,
        install_wrk=not a.no_install,
        ingest_timeout_s=a.ingest_timeout,
        skip={s.strip() for s in a.skip.split(",") if s.strip()},
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    cfg = parse_args(args)
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    cfg.results_dir.mkdir(parents=True, exist_ok=True)
    log_dir = cfg.results_dir / "logs" / stamp
    log_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "mode": cfg.mode,
        "command": ".venv/bin/python -m bench.run " + " ".join(shlex.quote(x) for x in args),
        "settings": {
            "sizes": cfg.sizes,
            "workers": cfg.workers,
            "duration_s": cfg.duration_s,
            "rounds": cfg.rounds,
            "warmup_s": cfg.warmup_s,
            "half_duration_s": cfg.half_duration_s,
            "threads": cfg.threads,
            "connections": cfg.connections,
            "open_loop_connections": cfg.open_loop_connections,
            "batch_size": cfg.batch_size,
            "batch_connections": cfg.batch_connections,
            "seed": cfg.seed,
            "probes": cfg.probes,
            "stats_checks": cfg.stats_checks,
            "database": db_name(cfg),
        },
        "sizes": {},
        "notes": [],
    }
    json_path = cfg.results_dir / f"{stamp}-{cfg.mode}.json"
    home = Path(tempfile.mkdtemp(prefix="onecheck-bench-home-"))
    code = home / "code"
    results["code"] = snapshot_code(code)
    env = service_env(cfg, home)
    env["PYTHONPATH"] = str(code)
    exit_code = 0
    try:
        wrk = loadgen.ensure_wrk(cfg.install_wrk)
        log(f"database {db_name(cfg)}: recreate, upgrade, catalogue, client")
        arun(recreate_database(cfg))
        results["machine"] = report.machine_info(arun(pg_facts(cfg)), wrk)
        cli(env, "db", "upgrade")
        arun(load_catalogue(cfg))
        name = f"bench-{stamp}"
        out = cli(env, "clients", "create", "--name", name, "--department", DEPARTMENT, "--scopes", SCOPES,
                  "--any-department")  # fmt: skip
        key = out.strip().splitlines()[-1].strip()
        client_id = arun(_client_id(cfg, name))
        ctx = Context(cfg=cfg, env=env, key=key, client_id=client_id, wrk=wrk, log_dir=log_dir, code=code)
        results["notes"] = ctx.notes
        for n in cfg.sizes:
            try:
                results["sizes"][str(n)] = run_size(ctx, n)
            except (
                BenchError,
                ServerError,
                loadgen.LoadError,
                httpx.HTTPError,
                OSError,
                asyncpg.PostgresError,
            ) as exc:
                traceback.print_exc()
                ctx.notes.append(f"{n:,} entries failed: {type(exc).__name__}: {str(exc)[-300:]}")
                results["sizes"][str(n)] = {"n": n, "error": f"{type(exc).__name__}: {str(exc)[-300:]}"}
            json_path.write_text(json.dumps(results, indent=1, default=str))
        if "feedback" not in cfg.skip:
            try:
                results["feedback"] = phase_feedback(ctx)
            except (
                BenchError,
                ServerError,
                loadgen.LoadError,
                httpx.HTTPError,
                OSError,
                asyncpg.PostgresError,
            ) as exc:
                traceback.print_exc()
                reason = f"{type(exc).__name__}: {str(exc)[-300:]}"
                results["feedback"] = {"stats": {"status": "failed", "reason": reason}}
    except KeyboardInterrupt:
        results["notes"].append("interrupted")
        exit_code = 130
    except Exception as exc:  # record what failed; the partial results are still written
        results["notes"].append(f"bench failed: {type(exc).__name__}: {exc}")
        traceback.print_exc()
        exit_code = 1
    finally:
        results["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        results["elapsed_s"] = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1)
        results.setdefault("machine", report.machine_info({}, loadgen.wrk_path()))
        results["targets"] = report.evaluate(results)
        json_path.write_text(json.dumps(results, indent=1, default=str))
        section = report.render_markdown(results)
        if cfg.docs is not None and results["sizes"]:
            report.append_to_docs(cfg.docs, section)
        print(section)
        log(f"raw results: {json_path}")
        if not cfg.keep_db:
            try:
                arun(drop_database(cfg))
            except (OSError, asyncpg.PostgresError) as exc:
                log(f"could not drop the benchmark database: {exc}")
        shutil.rmtree(home, ignore_errors=True)
    return exit_code


async def _client_id(cfg: Config, name: str) -> uuid.UUID:
    conn = await asyncpg.connect(bench_dsn(cfg))
    try:
        value = await conn.fetchval("SELECT client_id FROM api_clients WHERE name = $1", name)
    finally:
        await conn.close()
    if value is None:
        raise BenchError(f"client {name} not found after creation")
    return uuid.UUID(str(value))


if __name__ == "__main__":
    sys.exit(main())
