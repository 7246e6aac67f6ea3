"""Properties (RELIABILITY.md R3, R4): the conservation rule with injected poison, and delta sequences against a
simple model (duplicates, out-of-order, removals of unknown ids, re-listing)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.list_sync.runs import execute_run
from shared.db.engine import Database
from shared.settings import Settings
from tests.list_sync.helpers import (
    BASE,
    add_source,
    assert_conserved,
    by_cursor,
    entries_of,
    envelope,
    page,
    record,
    uscc,
)

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
FAR = "2099-12-31"
PROPERTY_SETTINGS = settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
)


def _at(hours: int) -> str:
    return (T0 + dt.timedelta(hours=hours)).isoformat()


def _pages(
    records: list[Any], sizes: list[int], run_no: int, first_cursor: str | None
) -> dict[str | None, Any]:
    """Split records into pages of the drawn sizes; cursors unique per run, the last one `<run>-end`."""
    chunks: list[list[Any]] = []
    rest = list(records)
    for size in sizes:
        if not rest:
            break
        chunks.append(rest[:size])
        rest = rest[size:]
    if rest or not chunks:
        chunks.append(rest)
    answers: dict[str | None, Any] = {}
    cursor = first_cursor
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        nxt = f"{run_no}-end" if last else f"{run_no}-{i + 1}"
        answers[cursor] = page(envelope(chunk, nxt, has_more=not last))
        cursor = nxt
    return answers


async def _run(
    db: Database, settings_: Settings, source: str, answers: dict[str | None, Any]
) -> dict[str, Any]:
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(side_effect=by_cursor(answers))
        view = await execute_run(db, settings_, source)
    assert view is not None
    assert view["status"] == "succeeded", view
    assert_conserved(view["counts"])
    return view


# --- conservation with poison ------------------------------------------------------------------------------

POISON: dict[str, Callable[[int], Any]] = {
    "bad_check_char": lambda i: record(f"P-{i}", code=uscc(i)[:17] + ("0" if uscc(i)[17] != "0" else "1")),
    "null_name": lambda i: {**record(f"P-{i}"), "subject": {"code": uscc(i), "name": None}},
    "unknown_list_type": lambda i: record(f"P-{i}", list_type="LT77"),
    "huge_field": lambda i: record(f"P-{i}", reason="x" * 100_000),
    "bad_date": lambda i: record(f"P-{i}", listed_on="01/03/2026"),
    "expiry_before_listing": lambda i: record(f"P-{i}", listed_on="2026-03-01", expires_on="2026-01-01"),
    "bad_status": lambda i: record(f"P-{i}", status="suspended"),
    "no_source_id": lambda i: {k: v for k, v in record(f"P-{i}").items() if k != "source_id"},
    "not_an_object": lambda i: [i],
}


@dataclass(frozen=True)
class Mix:
    stored: int  # records stored by a first run
    new: int  # new records in the second run
    changed: int  # stored ones, newer and changed
    same: int  # stored ones, newer timestamp, same content
    stale: int  # stored ones, older
    repeats: list[int]  # indexes of new records delivered twice
    newer_repeats: (
        bool  # the second delivery is newer (and changed): applied if it comes later, still a duplicate
    )
    legacy: set[int]  # indexes of records under an organisation code that no alias maps
    poison: list[str]
    page_sizes: list[int]
    seed: int


mixes = st.builds(
    Mix,
    stored=st.integers(0, 12),
    new=st.integers(0, 12),
    changed=st.integers(0, 4),
    same=st.integers(0, 4),
    stale=st.integers(0, 4),
    repeats=st.lists(st.integers(0, 11), max_size=5),
    newer_repeats=st.booleans(),
    legacy=st.sets(st.integers(0, 111), max_size=12),
    poison=st.lists(st.sampled_from(sorted(POISON)), max_size=10),
    page_sizes=st.lists(st.integers(1, 7), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
)


@PROPERTY_SETTINGS
@given(mix=mixes, kind=st.sampled_from(["feed", "snapshot"]))
async def test_counts_add_up_and_quarantine_is_exactly_the_poison(
    db: Database, catalogue: None, sync_settings: Settings, mix: Mix, kind: str
) -> None:
    import random

    rng = random.Random(mix.seed)
    source = f"prop-{uuid.uuid4().hex[:12]}"
    await add_source(db, source, kind)
    settings_ = sync_settings.model_copy(update={"snapshot_max_end_share": 1.0})

    def good(i: int, hours: int, reason: str = "原事由") -> dict[str, Any]:
        code = uscc(i)[8:17] if i in mix.legacy else uscc(i)  # its embedded org code: kept unmapped
        return record(f"G-{i}", code=code, expires_on=FAR, updated_at=_at(hours), reason=reason)

    stored = [good(i, 10) for i in range(mix.stored)]
    if stored:
        await _run(db, settings_, source, _pages(stored, [len(stored)], 0, None))

    changed = min(mix.changed, mix.stored)
    same = min(mix.same, mix.stored - changed)
    stale = min(mix.stale, mix.stored - changed - same)
    second: list[Any] = []
    second += [good(i, 20, "新事由") for i in range(changed)]
    second += [good(i, 20) for i in range(changed, changed + same)]
    second += [good(i, 5, "旧事由") for i in range(changed + same, changed + same + stale)]
    fresh = [good(100 + i, 10) for i in range(mix.new)]
    second += fresh
    repeated = [100 + i for i in mix.repeats if i < mix.new]
    repeats = [good(i, 11, "再事由") if mix.newer_repeats else good(i, 10) for i in repeated]
    poison = [POISON[name](1000 + n) for n, name in enumerate(mix.poison)]
    second += repeats + poison
    rng.shuffle(second)
    # Shuffling may put a repeat first: whichever copy comes first counts, the other is the duplicate (a newer
    # repeat on a later feed page is still applied).
    first_cursor = None if kind == "snapshot" or not stored else "0-end"
    view = await _run(db, settings_, source, _pages(second, mix.page_sizes, 1, first_cursor))
    counts = view["counts"]
    assert counts["received"] == len(second)
    assert counts["quarantined"] == len(poison)
    assert counts["inserted"] == len(fresh)
    assert counts["duplicates"] == len(repeats)
    assert counts["updated"] == changed
    assert counts["unchanged"] == same
    assert counts["stale"] == stale
    ended_missing = mix.stored - changed - same - stale if kind == "snapshot" else 0
    assert counts["ended"] == ended_missing
    # Once per accepted record (inserted, updated or unchanged), never for a stale one or a repeat.
    counted = [*range(changed + same), *(100 + i for i in range(mix.new))]
    assert counts["unmapped_legacy"] == sum(i in mix.legacy for i in counted)


# --- delta sequences against a model -----------------------------------------------------------------------

delivery = st.tuples(
    st.integers(0, 4),  # source id
    st.integers(0, 6),  # updated_at (hours)
    st.sampled_from(["active", "removed"]),
    st.sampled_from(["甲", "乙"]),  # content
)
runs_ = st.lists(
    st.tuples(st.lists(delivery, max_size=8), st.lists(st.integers(1, 4), min_size=1, max_size=4)),
    min_size=1,
    max_size=5,
)


@PROPERTY_SETTINGS
@given(runs=runs_, kind=st.sampled_from(["feed", "snapshot"]))
async def test_delta_sequences_end_as_the_model_says(
    db: Database, catalogue: None, sync_settings: Settings, runs: list[Any], kind: str
) -> None:
    """Model: per run, each source id's first record with the latest `updated_at` wins; it is applied unless
    older than what is stored; `removed` ends an entry and a later `active` re-lists it; a snapshot ends the
    entries it does not list."""
    source = f"delta-{uuid.uuid4().hex[:12]}"
    await add_source(db, source, kind)
    settings_ = sync_settings.model_copy(update={"snapshot_max_end_share": 1.0})
    model: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    for run_no, (deliveries, sizes) in enumerate(runs):
        records = [
            record(
                f"D-{sid}", code=uscc(sid), expires_on=FAR, updated_at=_at(t), status=status, reason=reason
            )
            for sid, t, status, reason in deliveries
        ]
        winners: dict[str, tuple[int, str, str]] = {}
        for sid, t, status, reason in deliveries:
            key = f"D-{sid}"
            if key not in winners or t > winners[key][0]:
                winners[key] = (t, status, reason)
        for key, (t, status, reason) in winners.items():
            if key not in model or t >= model[key]["t"]:
                model[key] = {
                    "t": t,
                    "status": "ended" if status == "removed" else "active",
                    "reason": reason,
                }
        if kind == "snapshot":
            for key, state in model.items():
                if key not in winners:
                    state["status"] = "ended"
        await _run(
            db, settings_, source, _pages(records, sizes, run_no, None if kind == "snapshot" else cursor)
        )
        cursor = f"{run_no}-end"
    stored = await entries_of(db, source)
    got = {
        key: {
            "t": int((e["upstream_updated_at"] - T0).total_seconds() // 3600),
            "status": e["status"],
            "reason": e["reason"],
        }
        for key, e in stored.items()
    }
    assert got == model
