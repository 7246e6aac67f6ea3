"""The benchmark harness's pieces that need no running service: generator, probes, floor app, upstream feed,
load generators and the report. No timing asserts: speed is measured by `python -m bench.run`, not here."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import io
import json
import shutil
import threading
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench import generate, loadgen, report, upstream
from bench.floor_app import FLOOR_TABLE, create_app, ensure_floor_table
from shared.codes import SubjectKind, normalise
from shared.db.engine import Database
from shared.demo import demo_catalogue
from shared.entries import LinkedPerson, NewEntry
from shared.entries import content_hash as shared_content_hash
from tests.builders import load_catalogue, make_client, make_entry

TODAY = dt.date(2026, 11, 23)


def _entries(n: int, seed: int = 1) -> list[generate.GenEntry]:
    return list(generate.iter_entries(seed, n, TODAY))


# --- generator -------------------------------------------------------------------------------------------


def test_every_generated_code_is_valid_and_normalised() -> None:
    entries = _entries(3000) + generate.generate_chunk(1, 57, 1_000_000, TODAY)[:1000]
    for e in entries:
        subject = normalise(e.subject_code, e.subject_kind, today=TODAY)
        assert subject.code == e.subject_code
        assert subject.org_code == e.subject_org_code
        assert not subject.warnings
        for _, code, _ in e.linked_persons:
            person = normalise(code, SubjectKind.CITIZEN_ID, today=TODAY)
            assert person.code == code
            assert not person.warnings


def test_codes_are_unique_per_subject_and_person() -> None:
    entries = _entries(5000)
    names: dict[str, str] = {}
    for e in entries:
        # A subject may be listed twice (the generator re-lists some), but one code is always one subject.
        assert names.setdefault(e.subject_code, e.subject_name) == e.subject_name
    org_codes = {e.subject_org_code for e in entries if e.subject_org_code}
    assert len(org_codes) == len({e.subject_code for e in entries if e.subject_kind == "uscc"})
    persons = [code for e in entries for _, code, _ in e.linked_persons]
    assert len(persons) == len(set(persons))
    assert not set(persons) & set(names)


def test_generator_is_deterministic_and_independent_of_n() -> None:
    assert generate.generate_chunk(7, 0, 2000, TODAY) == generate.generate_chunk(7, 0, 2000, TODAY)
    assert generate.generate_chunk(7, 0, 1500, TODAY) == generate.generate_chunk(7, 0, 2000, TODAY)[:1500]
    assert generate.generate_chunk(8, 0, 100, TODAY) != generate.generate_chunk(7, 0, 100, TODAY)
    first = generate.generate_chunk(7, 3, 100_000, TODAY)
    assert first[0].index == 3 * generate.CHUNK
    assert first == generate.generate_chunk(7, 3, 1_000_000, TODAY)


def test_the_mix_looks_like_the_lists() -> None:
    entries = _entries(20_000)
    catalogue_kinds = {lt["code"]: lt["kind"] for lt in demo_catalogue()["list_types"]}
    types = Counter(e.list_type for e in entries)
    assert set(types) == set(catalogue_kinds)
    assert all(e.list_kind == catalogue_kinds[e.list_type] for e in entries)
    assert types["LT01"] > types["LT05"]
    linked = sum(1 for e in entries if e.linked_persons) / len(entries)
    assert 0.15 < linked < 0.25
    assert all(p[0] == "legal_representative" for e in entries for p in e.linked_persons[:1])
    in_effect = sum(1 for e in entries if e.in_effect(TODAY)) / len(entries)
    assert 0.75 < in_effect < 0.9
    statuses = Counter(e.status for e in entries)
    assert statuses["ended"] > 0
    assert statuses["objection_pending"] > 0
    assert all(e.end_reason for e in entries if e.status == "ended")
    assert all(e.expires_on is None or e.expires_on >= e.listed_on for e in entries)
    people = [e for e in entries if e.subject_kind == "citizen_id"]
    assert people
    assert {e.list_type for e in people} == {"LT01"}


def test_content_hash_is_the_write_path_s() -> None:
    for e in _entries(300)[::7]:
        subject = normalise(e.subject_code, e.subject_kind, today=TODAY)
        entry = NewEntry(
            list_type=e.list_type,
            subject=subject,
            subject_name=e.subject_name,
            reason=e.reason,
            decision_no=e.decision_no,
            issuing_department=e.issuing_department,
            listed_on=e.listed_on,
            expires_on=e.expires_on,
            linked_persons=tuple(LinkedPerson(r, c, n) for r, c, n in e.linked_persons),
        )
        assert generate.content_hash(e) == shared_content_hash(entry, e.subject_code)


async def test_tsv_rows_copy_into_the_real_tables(db: Database) -> None:
    await load_catalogue(db)
    entries = _entries(500)
    rows = "".join(generate.entry_tsv(e, TODAY) for e in entries).encode()
    persons = "".join(generate.person_tsv(e) for e in entries).encode()
    async with db.connection() as conn:
        await conn.copy_to_table(
            "list_entries", source=io.BytesIO(rows), columns=list(generate.ENTRY_COLUMNS), format="text"
        )
        await conn.copy_to_table(
            "entry_persons", source=io.BytesIO(persons), columns=list(generate.PERSON_COLUMNS), format="text"
        )
        assert await conn.fetchval("SELECT count(*) FROM list_entries") == 500
        assert await conn.fetchval("SELECT count(*) FROM entry_persons") == sum(
            len(e.linked_persons) for e in entries
        )
        first = entries[0]
        row = await conn.fetchrow("SELECT * FROM list_entries WHERE entry_id = $1", first.entry_id)
    assert row is not None
    assert row["subject_code"] == first.subject_code
    assert row["linked_persons"] == [{"role": r, "code": c, "name": n} for r, c, n in first.linked_persons]
    assert row["source_record_id"] == first.source_id


# --- probes ----------------------------------------------------------------------------------------------


def test_probes_are_90_percent_clear_and_10_percent_matching() -> None:
    n = 20_000
    entries = _entries(n)
    effect_subjects = {e.subject_code for e in entries if e.in_effect(TODAY)}
    effect_linked = {c for e in entries if e.in_effect(TODAY) for _, c, _ in e.linked_persons}
    every_code = (
        {e.subject_code for e in entries}
        | {e.subject_org_code for e in entries}
        | {c for e in entries for _, c, _ in e.linked_persons}
    )
    probes = generate.make_probes(1, n, TODAY, 1000)
    assert Counter(p.expect for p in probes) == {"clear": 900, "match": 100}
    assert {p.via for p in probes if p.expect == "match"} == {
        "subject",
        "related_person",
        "responsible_person",
    }
    for p in probes:
        codes = {p.subject["code"]} | {r["code"] for r in p.related_persons}
        normalise(p.subject["code"], p.subject["kind"], today=TODAY)
        for r in p.related_persons:
            normalise(r["code"], SubjectKind.CITIZEN_ID, today=TODAY)
        if p.expect == "clear":
            assert not codes & every_code
            assert p.subject["code"][8:17] not in every_code
        else:
            assert codes & (effect_subjects | effect_linked)
    assert generate.make_probes(1, n, TODAY, 1000) == probes


def test_probe_files(tmp_path: Path) -> None:
    probes = generate.make_probes(3, 10_000, TODAY, 200)
    single, batch = generate.write_probes(probes, tmp_path)
    bodies = [json.loads(line) for line in single.read_text(encoding="utf-8").splitlines()]
    subjects = [json.loads(line) for line in batch.read_text(encoding="utf-8").splitlines()]
    expects = [json.loads(line) for line in (tmp_path / "probes-expect.jsonl").read_text().splitlines()]
    assert len(bodies) == len(subjects) == len(expects) == 200
    assert sum(1 for x in expects if x["expect"] == "match") == 20
    for body, subject in zip(bodies, subjects, strict=True):
        assert set(body) == {"item_code", "subject", "related_persons", "business_ref", "operator"}
        assert body["item_code"] == "I07"
        assert subject["code"] == body["subject"]["code"]
        assert subject.get("related_persons", []) == body["related_persons"]


# --- floor app -------------------------------------------------------------------------------------------


@pytest.mark.committing
async def test_floor_app_answers_a_check(database_url: str, committed_db: Database) -> None:
    await load_catalogue(committed_db)
    _, key = await make_client(committed_db, scopes="check")
    await make_entry(committed_db, code="91110105MA01ABCD5F")
    async with committed_db.connection() as conn:
        await ensure_floor_table(conn)
    app = create_app(database_url)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://floor.test") as http:
            body = generate.make_probes(1, 100, TODAY, 1)[0].check_body(1)
            body["subject"] = {"code": "91110105ma01abcd5f ", "kind": "uscc"}
            listed = await http.post("/v1/checks", json=body, headers={"Authorization": f"Bearer {key}"})
            assert listed.status_code == 200, listed.text
            assert listed.json()["match_count"] == 1
            body["subject"] = {"code": "91440300MA5F000000", "kind": "uscc"}
            clear = await http.post("/v1/checks", json=body, headers={"Authorization": f"Bearer {key}"})
            assert clear.json()["match_count"] == 0
            stranger = await http.post("/v1/checks", json=body, headers={"Authorization": "Bearer oc_nope"})
            assert stranger.status_code == 401
            assert (await http.post("/v1/checks", json={"item_code": "I07"}, headers={})).status_code == 422
        async with committed_db.connection() as conn:
            assert await conn.fetchval(f"SELECT count(*) FROM {FLOOR_TABLE}") == 2
    finally:
        await app.state.floor.close()
        async with committed_db.connection() as conn:
            await conn.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")


# --- upstream feed ----------------------------------------------------------------------------------------


@pytest.fixture
async def feed(tmp_path: Path) -> AsyncIterator[tuple[str, generate.Dataset]]:
    ds = generate.write_dataset(tmp_path, 5, 2500, TODAY, probes=50, processes=1)
    pages = upstream.Pages(ds.pages_dir, ds.n)
    server = await upstream.start(pages, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", ds
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("limit", [1000, 300, 5000])
async def test_upstream_serves_every_record_once(feed: tuple[str, generate.Dataset], limit: int) -> None:
    url, ds = feed
    seen: list[str] = []
    cursor: str | None = None
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(100):
            params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
            r = await http.get("/entries", params=params)
            assert r.status_code == 200
            page = r.json()
            assert len(page["entries"]) <= limit
            seen.extend(x["source_id"] for x in page["entries"])
            cursor = page["next_cursor"]
            if not page["has_more"]:
                break
        assert (await http.get("/entries", params={"cursor": "x"})).status_code == 400
        assert (await http.get("/other")).status_code == 404
    assert seen == [f"BENCH-{i:010d}" for i in range(ds.n)]


def test_upstream_records_follow_the_contract(tmp_path: Path) -> None:
    ds = generate.write_dataset(tmp_path, 5, 1200, TODAY, probes=20, processes=1)
    record = json.loads(generate.page_path(ds.pages_dir, 1).read_text(encoding="utf-8"))[0]
    assert set(record) == {
        "source_id", "list_type", "subject", "linked_persons", "reason", "decision_no",
        "issuing_department", "listed_on", "expires_on", "status", "updated_at",
    }  # fmt: skip
    assert record["status"] in ("active", "removed")
    assert set(record["subject"]) == {"code", "name", "kind"}
    assert generate.load_dataset(ds.root) == ds
    assert len((ds.root / "entries.tsv").read_text(encoding="utf-8").splitlines()) == 1200


# --- load generators ----------------------------------------------------------------------------------------


def test_wrk_script_is_there_and_plausible() -> None:
    text = loadgen.LUA_SCRIPT.read_text()
    for needle in ("function init(args)", "function request()", "function done(", "wrk.format", "BENCH_JSON"):
        assert needle in text
    opened = sum(
        line.count(" do") + line.count(" then") for line in text.splitlines() if "--" not in line[:3]
    )
    assert text.count("\nend") + text.count(" end") >= opened


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(self.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Fail(_Answer):
    status = 500


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
@pytest.mark.parametrize(("handler", "mode"), [(_Answer, "single"), (_Fail, "batch"), (_Answer, "lines")])
def test_wrk_runs_the_script_and_reports_json(tmp_path: Path, handler: type[_Answer], mode: str) -> None:
    lines = tmp_path / "lines.txt"
    if mode == "lines":
        lines.write_text('/v1/checks/1/feedback\t{"decision":"approved"}\n')
    else:
        lines.write_text('{"code":"91110105MA01ABCD5F"}\n{"code":"91440300MA5F000000"}\n')
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = loadgen.run_wrk(url, mode, lines, "oc_x", threads=1, connections=1, duration_s=1, batch=2)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert result.requests > 0
    assert result.socket_errors == 0
    assert result.non_2xx == (result.requests if handler is _Fail else 0)
    assert result.ok == (handler is _Answer)
    assert result.latency_ms["p50"] <= result.latency_ms["p99"]


def test_parse_wrk_output() -> None:
    out = (
        "Running 1s test @ http://127.0.0.1:1\n"
        'BENCH_JSON {"requests":2000,"duration_us":2000000,"bytes":1,"errors":{"connect":0,"read":0,'
        '"write":0,"status":3,"timeout":0},"latency_us":{"min":100,"mean":950.5,"max":9000,"stdev":1.0,'
        '"p50":900,"p90":1500,"p99":4000,"p999":8000}}\n'
    )
    result = loadgen.parse_wrk_output(out)
    assert result.rps == 1000
    assert result.non_2xx == 3
    assert not result.ok
    assert result.latency_ms["p99"] == 4.0
    with pytest.raises(loadgen.LoadError):
        loadgen.parse_wrk_output("nothing")


async def test_open_loop_counts_every_answer() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                status = b"500 Oops" if body == b"fail" else b"200 OK"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        requests = [
            loadgen.raw_post("127.0.0.1", port, "/v1/checks", b, "k") for b in (b"ok", b"ok", b"fail")
        ]
        result = await loadgen.open_loop("127.0.0.1", port, requests, rate=600, duration_s=0.5, connections=4)
    finally:
        server.close()
        await server.wait_closed()
    assert result.requests == 300
    assert result.statuses == {"200": 200, "500": 100}
    assert result.non_2xx == 100
    assert not result.ok
    assert result.latency_ms["p50"] <= result.latency_ms["p99"]


def test_percentiles() -> None:
    values = [i / 1000 for i in range(1, 101)]
    p = loadgen.percentiles(values)
    assert p["p50"] == 50.0
    assert p["p99"] == 99.0
    assert p["max"] == 100.0
    assert loadgen.percentiles([]) == {}


# --- report ---------------------------------------------------------------------------------------------------


def _app(rps: float, p50: float = 1.0, p99: float = 2.5, errors: int = 0) -> dict[str, Any]:
    run = {"rps": rps, "errors": errors, "latency_ms": {"p50": 5.0, "p90": 8.0, "p99": 12.0}}
    return {
        "status": "ok",
        "rps": rps,
        "errors": errors,
        "saturating": [run],
        "median_run": run,
        "half": {"latency_ms": {"p50": p50, "p99": p99}, "target_rate": rps / 2, "errors": 0},
        "batch": {"subjects_per_s": rps * 12, "errors": 0},
        "rss": {"max_peak_rss_mb": 150.0},
    }


def test_report_evaluates_and_renders(tmp_path: Path) -> None:
    results: dict[str, Any] = {
        "started_at": "2026-11-23T10:00:00+00:00",
        "mode": "quick",
        "command": ".venv/bin/python -m bench.run --quick",
        "elapsed_s": 60,
        "machine": report.machine_info({"server_version": "15"}, None),
        "settings": {
            "threads": 2,
            "connections": 64,
            "rounds": 2,
            "duration_s": 10,
            "warmup_s": 3,
            "open_loop_connections": 32,
            "half_duration_s": 10,
            "batch_size": 1000,
            "batch_connections": 4,
            "probes": 1000,
        },
        "sizes": {
            "100000": {
                "copy": {"rows_per_s": 400_000.0, "seconds": 0.25},
                "ingest": {"status": "skipped", "reason": "list-sync has no POST /v1/sources yet"},
                "workers": {"1": {"service": _app(900), "floor": _app(1000)}},
            },
            "1000000": {
                "copy": {"rows_per_s": 400_000.0, "seconds": 2.5},
                "ingest": {"status": "ok", "rows_per_s": 100_000.0, "seconds": 10.0},
                "workers": {
                    "1": {"service": _app(700, p50=1.5, errors=2), "floor": _app(1000)},
                    "2": {
                        "service": {"status": "skipped", "reason": "check-api has no POST /v1/checks yet"},
                        "floor": _app(1500),
                    },
                },
            },
        },
        "feedback": {"stats": {"status": "ok", "median_s": 0.4, "max_s": 0.5, "checks": 1_000_000}},
    }
    rows = report.evaluate(results)
    by = {(r["key"], r["scope"]): r["status"] for r in rows}
    assert by[("single_vs_floor", "100,000 entries, 1 worker")] == "PASS"
    assert by[("single_vs_floor", "1,000,000 entries, 1 worker")] == "INVALID"  # errors: no speed figure
    assert by[("single_vs_floor", "1,000,000 entries, 2 workers")] == "SKIPPED"
    assert by[("ingest_vs_copy", "100,000 entries")] == "SKIPPED"
    assert by[("ingest_vs_copy", "1,000,000 entries")] == "FAIL"
    assert by[("latency_scaling", "1,000,000 vs 100,000 entries, 1 worker")] == "FAIL"
    assert by[("stats_time", "1,000,000 checks")] == "PASS"
    results["targets"] = rows
    text = report.render_markdown(results)
    assert "skipped: check-api has no POST /v1/checks yet" in text
    assert "| 1 | service |" in text
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## How to run\n\nrun it\n")
    report.append_to_docs(doc, text)
    report.append_to_docs(doc, text)
    written = doc.read_text()
    assert written.index("## How to run") < written.index("## Results")
    assert written.count("## Results") == 1
    assert written.count("### 2026-11-23 10:00 UTC · quick") == 2
