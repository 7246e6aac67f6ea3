"""Machine facts, target evaluation and the markdown section a run appends to docs/benchmarks.md."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("fastapi", "uvicorn", "uvloop", "httptools", "pydantic", "asyncpg", "sqlalchemy")

# (key, description, comparison, goal)
TARGETS = {
    "single_vs_floor": ("single check req/s ÷ floor app req/s", ">=", 0.8),
    "half_p99_p50": ("p99 ÷ p50 at half the saturating rate", "<=", 3.0),
    "batch_vs_single": ("batch subjects/s ÷ single-check subjects/s", ">=", 10.0),
    "ingest_vs_copy": ("snapshot ingest rows/s ÷ bare COPY rows/s", ">=", 0.5),
    "latency_scaling": ("half-rate p50 at the largest size ÷ at 100 k", "<=", 1.2),
    "worker_rss": ("peak RSS of a service worker (MiB)", "<", 200.0),
    "stats_time": ("enforcement statistics over 1 M checks (s, median of 5)", "<", 1.0),
}


def _run(cmd: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=20, check=False, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout or done.stderr).strip()


def machine_info(pg: dict[str, str], wrk: str | None) -> dict[str, Any]:
    mem_kib = 0
    model = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    dirty = [ln[3:] for ln in _run(["git", "status", "--porcelain"]).splitlines() if ln.strip()]
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg,
        "packages": versions,
        "wrk": " ".join(_run([wrk, "-v"]).split()[:2]) if wrk else None,
        "git_commit": _run(["git", "rev-parse", "--short", "HEAD"]),
        "git_uncommitted_files": len(dirty),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- evaluation --------------------------------------------------------------------------------------------


def _verdict(key: str, value: float | None) -> str:
    _, op, goal = TARGETS[key]
    if value is None:
        return "SKIPPED"
    ok = {">=": value >= goal, "<=": value <= goal, "<": value < goal}[op]
    return "PASS" if ok else "FAIL"


def _row(
    key: str, scope: str, value: float | None, note: str = "", *, invalid: bool = False
) -> dict[str, Any]:
    desc, op, goal = TARGETS[key]
    status = "INVALID" if invalid else _verdict(key, value)
    return {
        "key": key,
        "target": desc,
        "scope": scope,
        "value": None if value is None else round(value, 3),
        "goal": f"{op} {goal:g}",
        "status": status,
        "note": " ".join(note.split())[:300],  # one line: it goes into a markdown table
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def app_ok(app: dict[str, Any] | None) -> bool:
    return bool(app) and app.get("status") == "ok"  # type: ignore[union-attr]


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target and scope (size, workers): PASS / FAIL / SKIPPED (why) / INVALID (errors)."""
    rows: list[dict[str, Any]] = []
    sizes: dict[str, Any] = results.get("sizes", {})
    for n, size in sizes.items():
        label = f"{int(n):,} entries"
        ingest = size.get("ingest", {})
        copy = size.get("copy", {})
        if ingest.get("status") == "ok" and copy.get("rows_per_s"):
            rows.append(_row("ingest_vs_copy", label, ingest["rows_per_s"] / copy["rows_per_s"]))
        elif ingest.get("rows_per_s_at_most") and copy.get("rows_per_s"):
            # The run did not finish in time: its rate was at most N / time waited.
            bound = ingest["rows_per_s_at_most"] / copy["rows_per_s"]
            row = _row("ingest_vs_copy", label, bound, f"at most: {ingest.get('reason', '')}")
            if row["status"] == "PASS":  # an upper bound proves nothing above the goal
                row["status"] = "SKIPPED"
            rows.append(row)
        else:
            rows.append(_row("ingest_vs_copy", label, None, ingest.get("reason", "not run")))
        for w, per in size.get("workers", {}).items():
            scope = f"{label}, {w} worker{'s' if w != '1' else ''}"
            svc, floor = per.get("service", {}), per.get("floor", {})
            if not app_ok(svc) or not app_ok(floor):
                why = svc.get("reason") if not app_ok(svc) else floor.get("reason")
                for key in ("single_vs_floor", "half_p99_p50", "batch_vs_single", "worker_rss"):
                    rows.append(_row(key, scope, None, str(why or "not run")))
                continue
            bad = svc.get("errors", 0) + floor.get("errors", 0)
            rows.append(
                _row(
                    "single_vs_floor",
                    scope,
                    svc["rps"] / floor["rps"] if floor.get("rps") else None,
                    f"{svc['rps']:,.0f} vs {floor['rps']:,.0f} req/s",
                    invalid=bad > 0,
                )
            )
            half = svc.get("half")
            if half and half.get("latency_ms", {}).get("p50"):
                lat = half["latency_ms"]
                rows.append(
                    _row(
                        "half_p99_p50",
                        scope,
                        lat["p99"] / lat["p50"],
                        f"p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms at {half['target_rate']:,.0f}/s",
                        invalid=half.get("errors", 0) > 0,
                    )
                )
            else:
                rows.append(_row("half_p99_p50", scope, None, svc.get("half_reason", "not run")))
            batch = svc.get("batch")
            if batch and batch.get("subjects_per_s"):
                rows.append(
                    _row(
                        "batch_vs_single",
                        scope,
                        batch["subjects_per_s"] / svc["rps"],
                        f"{batch['subjects_per_s']:,.0f} subjects/s",
                        invalid=batch.get("errors", 0) > 0,
                    )
                )
            else:
                rows.append(_row("batch_vs_single", scope, None, svc.get("batch_reason", "not run")))
            rss = svc.get("rss", {}).get("max_peak_rss_mb")
            rows.append(_row("worker_rss", scope, rss, "" if rss is not None else "no worker found"))
    rows.extend(_scaling_rows(sizes))
    stats = results.get("feedback", {}).get("stats", {})
    if stats.get("status") == "ok":
        rows.append(
            _row(
                "stats_time",
                f"{stats.get('checks', 0):,} checks",
                stats["median_s"],
                f"max {stats['max_s']:.3f} s",
                invalid=stats.get("errors", 0) > 0,
            )
        )
    else:
        rows.append(_row("stats_time", "1,000,000 checks", None, stats.get("reason", "not run")))
    return rows


def _scaling_rows(sizes: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    ns = sorted(int(n) for n in sizes)
    if len(ns) < 2:
        return rows
    small, large = str(ns[0]), str(ns[-1])
    for w in sizes[small].get("workers", {}):
        a = sizes[small]["workers"][w].get("service", {})
        b = sizes[large].get("workers", {}).get(w, {}).get("service", {})
        scope = f"{int(large):,} vs {int(small):,} entries, {w} worker{'s' if w != '1' else ''}"
        pa = (a.get("half") or {}).get("latency_ms", {}).get("p50")
        pb = (b.get("half") or {}).get("latency_ms", {}).get("p50")
        if app_ok(a) and app_ok(b) and pa and pb:
            note = f"{pb:.2f} ms vs {pa:.2f} ms; req/s {b['rps']:,.0f} vs {a['rps']:,.0f}"
            bad = (a["half"].get("errors", 0) + b["half"].get("errors", 0)) > 0
            rows.append(_row("latency_scaling", scope, pb / pa, note, invalid=bad))
        else:
            rows.append(_row("latency_scaling", scope, None, "service figures missing at one size"))
    return rows


# --- markdown ------------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 0, unit: str = "") -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}{unit}"
    return str(value)


def _lat(result: dict[str, Any] | None, key: str) -> str:
    if not result:
        return "–"
    return _fmt(result.get("latency_ms", {}).get(key), 2)


def _app_cells(app: dict[str, Any]) -> list[str]:
    if not app_ok(app):
        reason = " ".join(str(app.get("reason", "not run")).split())[:200]
        return [f"{app.get('status', 'skipped')}: {reason}"] + ["–"] * 11
    sat = app.get("saturating", [])
    rounds = "/".join(f"{r['rps']:,.0f}" for r in sat)
    best = app.get("median_run") or (sat[0] if sat else None)
    half = app.get("half")
    half_cells = [_lat(half, "p50"), _lat(half, "p99")]
    if half and half.get("latency_ms", {}).get("p50"):
        half_cells.append(_fmt(half["latency_ms"]["p99"] / half["latency_ms"]["p50"], 2))
    else:
        half_cells.append("–")
    batch = app.get("batch")
    errors = app.get("errors", 0)
    rps = f"**{app['rps']:,.0f}** ({rounds})" + (f" ⚠ {errors} errors" if errors else "")
    return [
        rps,
        _lat(best, "p50"),
        _lat(best, "p90"),
        _lat(best, "p99"),
        *half_cells,
        _fmt(batch.get("subjects_per_s")) if batch else "–",
        _fmt(app.get("rss", {}).get("max_peak_rss_mb"), 0),
        _fmt((best or {}).get("app_cpu_us_per_req"), 0),
        _fmt((best or {}).get("pg_cpu_us_per_req"), 0),
        _fmt((best or {}).get("db_xacts_per_req"), 1),
    ]


def _code_line(results: dict[str, Any], m: dict[str, Any]) -> str:
    code = results.get("code")
    if not code:
        return f"Code: git {m.get('git_commit')} ({m.get('git_uncommitted_files', 0)} uncommitted files in the tree)."
    changed = code.get("uncommitted_files", [])
    return (
        f"Code: git {code.get('commit')}"
        + (f" plus {len(changed)} uncommitted files in shared/, services/, bench/" if changed else "")
        + f"; every process ran a copy taken at the start (digest {code.get('snapshot_sha256')})."
    )


def render_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    pg = m.get("postgresql", {})
    s = results["settings"]
    pkgs = m.get("packages", {})
    lines = [
        f"### {results['started_at'][:16].replace('T', ' ')} UTC · {results['mode']}",
        "",
        f"Command: `{results['command']}` (took {results.get('elapsed_s', 0) / 60:.1f} min)",
        "",
        f"Machine: {m['nproc']} CPUs ({m.get('cpu') or 'unknown'}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}, "
        f"load average at start {', '.join(map(str, m.get('loadavg_at_start', [])))}; "
        f"PostgreSQL {pg.get('server_version', '?')} (shared_buffers {pg.get('shared_buffers', '?')}, "
        f"synchronous_commit {pg.get('synchronous_commit', '?')}, fsync {pg.get('fsync', '?')}, "
        f"max_wal_size {pg.get('max_wal_size', '?')}); Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in pkgs.items())
        + f"; {m.get('wrk') or 'wrk ?'}.",
        "",
        _code_line(results, m),
        "",
        f"Load: wrk -t{s['threads']} -c{s['connections']}, {s['rounds']} rounds × {s['duration_s']:g} s per app, "
        f"service and floor alternating (median of rounds), {s['warmup_s']:g} s warm-up each; half-rate runs: "
        f"open-loop client, {s['open_loop_connections']} connections, {s['half_duration_s']:g} s; batches of "
        f"{s['batch_size']} subjects, wrk -t2 -c{s['batch_connections']}; {s['probes']:,} probe subjects "
        "(90 % clear, 10 % matching), item I07. Latencies in ms.",
        "",
        "| target | scope | measured | goal | result | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in results.get("targets", []):
        lines.append(
            f"| {row['target']} | {row['scope']} | {_fmt(row['value'], 2)} | {row['goal']} | "
            f"**{row['status']}** | {row['note']} |"
        )
    for n, size in results.get("sizes", {}).items():
        lines += ["", f"#### {int(n):,} entries", ""]
        copy = size.get("copy", {})
        ingest = size.get("ingest", {})
        load = size.get("load", {})
        gen = size.get("generate", {})
        lines += [
            "| step | figure |",
            "| --- | --- |",
            f"| data set ({gen.get('persons', 0):,} linked persons, {gen.get('in_effect', 0):,} entries in effect) | "
            f"{'cached' if gen.get('cached') else _fmt(gen.get('seconds'), 1, ' s')} |",
        ]
        if copy.get("rows_per_s"):
            lines.append(
                f"| bare COPY into unindexed copies of list_entries + entry_persons | "
                f"**{copy['rows_per_s']:,.0f} rows/s** ({copy['seconds']:.1f} s) |"
            )
        if ingest.get("status") == "ok":
            counts = ", ".join(f"{k} {v:,}" for k, v in (ingest.get("counts") or {}).items() if v)
            lines.append(
                f"| snapshot ingest through list-sync ({ingest.get('via')}) | **{ingest['rows_per_s']:,.0f} rows/s** "
                f"({ingest['seconds']:.1f} s; {counts}) |"
            )
        else:
            reason = " ".join(str(ingest.get("reason", "not run")).split())[:300]
            lines.append(
                f"| snapshot ingest through list-sync | {ingest.get('status', 'skipped')}: {reason} |"
            )
        if load:
            lines.append(
                f"| load list_entries for the checks (COPY, indexes rebuilt, VACUUM ANALYZE) | "
                f"{_fmt(load.get('seconds'), 1, ' s')} |"
            )
        if not size.get("workers"):
            continue
        lines += [
            "",
            "| workers | app | req/s (rounds) | p50 | p90 | p99 | half-rate p50 | half-rate p99 | p99/p50 | "
            "batch subjects/s | peak RSS MiB | app CPU µs/req | PG CPU µs/req | DB xacts/req |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for w, per in size.get("workers", {}).items():
            for name in ("service", "floor"):
                app = per.get(name, {})
                lines.append(f"| {w} | {name} | " + " | ".join(_app_cells(app)) + " |")
        for w, per in size.get("workers", {}).items():
            sample = per.get("service", {}).get("agreement")
            if sample:
                lines.append(
                    f"\nService answers checked on {sample['checked']} probes ({w} worker(s)): "
                    f"{sample['agree']} as expected (match ↔ outcome not clear)."
                )
                break
    fb = results.get("feedback", {})
    if fb:
        lines += ["", "#### Feedback and statistics", ""]
        if fb.get("checks_loaded"):
            lines.append(
                f"{fb['checks_loaded']:,} synthetic checks loaded by COPY in {fb.get('load_s', 0):.1f} s "
                f"({fb.get('with_measures', 0):,} with measures); the feedback write runs answer some of them "
                "before the statistics are timed."
            )
        stats = fb.get("stats", {})
        if stats.get("status") == "ok":
            lines.append(
                f"GET /v1/stats/enforcement: median **{stats['median_s']:.3f} s**, max {stats['max_s']:.3f} s "
                f"(all time); last 30 days: median {stats.get('window_median_s', 0):.3f} s."
            )
        else:
            reason = " ".join(str(stats.get("reason", "not run")).split())[:300]
            lines.append(f"Statistics: {stats.get('status', 'skipped')}: {reason}.")
        for w, write in fb.get("write", {}).items():
            if write.get("status") == "ok":
                lines.append(
                    f"POST /v1/checks/{{id}}/feedback, {w} worker(s): **{write['rps']:,.0f} req/s** "
                    f"(p50 {_lat(write, 'p50')} ms, p99 {_lat(write, 'p99')} ms; app CPU "
                    f"{_fmt(write.get('app_cpu_us_per_req'))} µs/req, PG CPU {_fmt(write.get('pg_cpu_us_per_req'))} "
                    f"µs/req, {_fmt(write.get('db_xacts_per_req'), 1)} DB transactions/req)."
                )
            else:
                reason = " ".join(str(write.get("reason", "not run")).split())[:300]
                lines.append(f"Feedback writes, {w} worker(s): {write.get('status', 'skipped')}: {reason}.")
    if results.get("notes"):
        lines += ["", *[f"- {note}" for note in results["notes"]]]
    return "\n".join(lines) + "\n"


def append_to_docs(doc: Path, section: str) -> None:
    """Append a run's section under '## Results' (kept last; 'How to run' stays at the top)."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    if "\n## Results" not in text:
        text = text.rstrip("\n") + "\n\n## Results\n\nEach run appends a section here (newest last).\n"
    doc.write_text(text.rstrip("\n") + "\n\n" + section, encoding="utf-8")
