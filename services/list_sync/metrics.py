"""Prometheus metrics of sync runs, on `/metrics` of the list-sync process that ran them (docs/operations.md).

    onecheck_sync_runs_total{source, status}                   runs by the status they ended in: succeeded,
                                                               failed, held; a held run counts again when it
                                                               is discarded, or when the background apply of
                                                               its confirm ends (succeeded or failed)
    onecheck_sync_records_total{source, outcome}               records of succeeded and failed runs by outcome
                                                               (the contract's counts: inserted, updated,
                                                               unchanged, duplicates, stale, quarantined; a
                                                               failed feed run counts its committed pages)
    onecheck_sync_entries_ended_total{source}                  entries the runs ended
    onecheck_sync_last_success_timestamp_seconds{source}       when the source's last successful run finished

Labels carry source names only (operators name sources; never a subject code).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from prometheus_client import Counter, Gauge

OUTCOMES = ("inserted", "updated", "unchanged", "duplicates", "stale", "quarantined")

RUNS = Counter(
    "onecheck_sync_runs_total", "Sync runs by source and the status they ended in", ["source", "status"]
)
RECORDS = Counter(
    "onecheck_sync_records_total",
    "Records received by sync runs, by source and outcome",
    ["source", "outcome"],
)
ENDED = Counter("onecheck_sync_entries_ended_total", "Entries that sync runs ended", ["source"])
LAST_SUCCESS = Gauge(
    "onecheck_sync_last_success_timestamp_seconds",
    "Unix time at which the source's last successful sync run (in this process) finished",
    ["source"],
)


def record_run(run: dict[str, Any]) -> None:
    """Count a run that has just ended (`run` as GET /v1/runs/{id} shows it)."""
    source, status = run["source"], run["status"]
    if status == "running":  # not ended: nothing to count yet
        return
    RUNS.labels(source, status).inc()
    if status not in ("succeeded", "failed"):
        return  # held: applied (and counted) on confirm; discarded: never applied
    counts = run.get("counts") or {}
    for outcome in OUTCOMES:
        if counts.get(outcome):
            RECORDS.labels(source, outcome).inc(counts[outcome])
    if counts.get("ended"):
        ENDED.labels(source).inc(counts["ended"])
    if status == "succeeded":
        finished = run.get("finished_at")
        when = dt.datetime.fromisoformat(finished).timestamp() if finished else time.time()
        LAST_SUCCESS.labels(source).set(when)
