"""Quarantine reasons (each one) and legacy codes (aliases, unmapped counting)."""

from __future__ import annotations

from typing import Any

import pytest
import respx

from services.list_sync.records import ListTypeInfo, Rejected, parse_record
from shared.db.engine import Database
from shared.lifecycle import business_date
from shared.settings import Settings
from tests.list_sync.helpers import (
    BASE,
    Answer,
    add_source,
    by_cursor,
    entries_of,
    envelope,
    fetch,
    page,
    record,
    run,
    uscc,
)

EXPECTED_RULES = {  # line in poison-page.json → rule
    1: "required.source_id",
    2: "required.list_type",
    3: "required.subject.code",
    4: "required.subject.name",
    5: "required.listed_on",
    6: "required.status",
    7: "uscc.check_char",
    8: "list_type.unknown",
    9: "date.format",
    10: "expires_on.before_listed_on",
    11: "status.unknown",
    12: "text.too_long",
    13: "record.type",
    14: "citizen_id.check_char",
}


async def test_each_quarantine_reason(db: Database, catalogue: None, sync_settings: Settings) -> None:
    await add_source(db, "poison")
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(return_value=page("poison-page.json"))
        view = await run(db, sync_settings, "poison")
    assert view["status"] == "succeeded"
    assert view["counts"]["received"] == 15
    assert view["counts"]["quarantined"] == 14
    assert view["counts"]["inserted"] == 1
    assert set(await entries_of(db, "poison")) == {"Q-GOOD"}
    rows = await fetch(db, "SELECT line, rule, reason, raw FROM sync_quarantine ORDER BY line")
    assert {r["line"]: r["rule"] for r in rows} == EXPECTED_RULES
    by_line = {r["line"]: r for r in rows}
    assert by_line[13]["raw"] == "not an object"
    assert by_line[12]["reason"] == "reason is longer than 4,000 characters (4,001)"
    assert by_line[1]["raw"]["subject"]["name"] == "缺来源编号"  # the record as received


def _parse(record: Any) -> Any:
    types = {"LT01": ListTypeInfo("black", 730)}
    return parse_record(record, line=1, list_types=types, today=business_date())


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"source_id": ""}, "required.source_id"),
        ({"source_id": 17}, "type.source_id"),
        ({"subject": None}, "required.subject.code"),
        ({"subject": "x"}, "type.subject"),
        ({"subject": {"code": " ", "name": "x"}}, "required.subject.code"),
        ({"subject": {"code": uscc(1), "name": "x", "kind": "passport"}}, "kind.unknown"),
        ({"subject": {"code": uscc(1), "name": "x", "kind": "citizen_id"}}, "citizen_id.format"),
        ({"listed_on": "20250301"}, "date.format"),
        ({"listed_on": "2025-02-30"}, "date.format"),
        ({"expires_on": 20250301}, "date.format"),
        ({"status": None}, "required.status"),
        ({"status": "ACTIVE"}, "status.unknown"),
        ({"updated_at": "2026-11-01 08:00"}, "updated_at.format"),
        ({"updated_at": "yesterday"}, "updated_at.format"),
        ({"decision_no": "号" * 4001}, "text.too_long"),
        ({"subject": {"code": uscc(1), "name": "名" * 4001}}, "text.too_long"),
        ({"reason": "bad\x00text"}, "text.invalid"),
        ({"reason": "bad\ud800text"}, "text.invalid"),
        (
            {
                "extra": {
                    "a": {
                        "b": {
                            "c": {
                                "d": {
                                    "e": {
                                        "f": {
                                            "g": {
                                                "h": {
                                                    "i": {"j": {"k": {"l": {"m": {"n": {"o": {"p": {}}}}}}}}
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            },
            "record.too_deep",
        ),
        ({"linked_persons": "张三"}, "type.linked_persons"),
        (
            {"linked_persons": [{"role": "boss", "code": "440703198001011234", "name": "张三"}]},
            "linked_persons.role",
        ),
        (
            {"linked_persons": [{"role": "legal_representative", "name": "张三"}]},
            "required.linked_persons[0].code",
        ),
        (
            {"linked_persons": [{"role": "legal_representative", "code": "440703198001011234"}]},
            "required.linked_persons[0].name",
        ),
    ],
)
def test_record_rules(change: dict[str, Any], rule: str) -> None:
    result = _parse({**record("R-1"), **change})
    assert isinstance(result, Rejected), result
    assert result.rule == rule


def test_a_good_record_is_normalised() -> None:
    parsed = _parse(
        record("R-1", code=" " + uscc(5).lower() + " ", expires_on=None, updated_at="2026-11-01T00:00:00Z")
    )
    assert not isinstance(parsed, Rejected)
    assert parsed.subject.code == uscc(5)
    assert parsed.expires_on is None
    assert parsed.updated_at is not None
    assert parsed.updated_at.utcoffset() is not None
    omitted = _parse(record("R-2", listed_on="2026-01-01"))
    assert not isinstance(omitted, Rejected)
    assert omitted.expires_on is not None
    assert omitted.expires_on.isoformat() == "2028-01-01"  # LT01 default validity


async def test_unstorable_text_is_still_quarantined(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    await add_source(db, "poison")
    bad = [record("N-1", reason="nul\x00here"), record("N-2", reason="lone\ud800surrogate")]
    body = (
        '{"entries": [' + ",".join(_dumps(r) for r in bad) + '], "next_cursor": null, "has_more": false}'
    ).encode()
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(return_value=page(body))
        view = await run(db, sync_settings, "poison")
    assert view["counts"]["quarantined"] == 2
    rows = await fetch(db, "SELECT rule, raw FROM sync_quarantine ORDER BY line")
    assert [r["rule"] for r in rows] == ["text.invalid", "text.invalid"]
    assert rows[0]["raw"]["reason"] == "nul\ufffdhere"


def _dumps(value: Any) -> str:
    import json

    return json.dumps(
        value
    )  # ASCII escapes: \u0000 and \ud800 survive into the page as the upstream sent them


async def test_legacy_codes_map_to_uscc_or_are_counted_unmapped(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    async with db.connection() as conn:
        await conn.executemany(
            "INSERT INTO subject_aliases (alias_code, alias_kind, uscc) VALUES ($1, $2, $3)",
            [("L12345674", "org_code", uscc(11)), ("440703000123450", "registration_no", uscc(12))],
        )
    await add_source(db, "legacy")
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(return_value=page("legacy-page.json"))
        view = await run(db, sync_settings, "legacy")
    assert view["counts"]["inserted"] == 4
    assert view["counts"]["unmapped_legacy"] == 2
    stored = await entries_of(db, "legacy")
    got = {
        k: (
            e["subject_code"],
            e["subject_kind"],
            e["original_code"],
            e["original_kind"],
            e["subject_org_code"],
        )
        for k, e in stored.items()
    }
    assert got == {
        "L-1": (uscc(11), "uscc", "L12345674", "org_code", uscc(11)[8:17]),
        "L-2": (uscc(12), "uscc", "440703000123450", "registration_no", uscc(12)[8:17]),
        "L-3": ("MA51XX015", "org_code", "MA51XX015", "org_code", "MA51XX015"),
        "L-4": ("440703000543214", "registration_no", "440703000543214", "registration_no", None),
    }


async def test_a_new_alias_moves_an_entry_to_its_uscc(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    await add_source(db, "legacy")
    legacy = record("L-9", subject={"code": "MA51XX015", "name": "旧代码", "kind": "org_code"})
    for alias in (False, True):
        if alias:
            async with db.connection() as conn:
                await conn.execute(
                    "INSERT INTO subject_aliases (alias_code, alias_kind, uscc) VALUES ('MA51XX015', 'org_code', $1)",
                    uscc(13),
                )
        with respx.mock(base_url=BASE) as mock:
            mock.get("/entries").mock(return_value=page(envelope([legacy], "n")))
            view = await run(db, sync_settings, "legacy")
    assert view["counts"]["updated"] == 1
    assert view["counts"]["unmapped_legacy"] == 0
    assert (await entries_of(db, "legacy"))["L-9"]["subject_code"] == uscc(13)


def _legacy(source_id: str, hours: int, reason: str = "原事由") -> dict[str, Any]:
    return record(
        source_id,
        subject={"code": "MA51XX015", "name": "旧代码未映射", "kind": "org_code"},
        updated_at=f"2026-11-01T{hours:02d}:00:00+00:00",
        reason=reason,
    )


async def test_an_unmapped_record_counts_once_per_run_across_feed_pages(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    """A newer repeat on a later page is applied but is a duplicate: it is not counted unmapped again."""
    await add_source(db, "legacy")
    answers: dict[str | None, Answer] = {
        None: page(envelope([_legacy("L-5", 8)], "c2", has_more=True)),
        "c2": page(envelope([_legacy("L-5", 9, "新事由"), _legacy("L-5", 9, "新事由")], "c3")),
    }
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(side_effect=by_cursor(answers))
        view = await run(db, sync_settings, "legacy")
    assert view["counts"]["inserted"] == 1
    assert view["counts"]["duplicates"] == 2
    assert view["counts"]["unmapped_legacy"] == 1
    assert (await entries_of(db, "legacy"))["L-5"]["reason"] == "新事由"


@pytest.mark.parametrize("kind", ["feed", "snapshot"])
async def test_a_stale_or_repeated_unmapped_record_is_not_counted(
    db: Database, catalogue: None, sync_settings: Settings, kind: str
) -> None:
    await add_source(db, "legacy", kind)
    first = [_legacy("L-6", 10), _legacy("L-7", 10)]
    # L-6 stale, L-7 unchanged twice (one is a duplicate), L-8 new and delivered twice.
    second = [_legacy("L-6", 5, "旧事由"), _legacy("L-7", 10), _legacy("L-7", 10), _legacy("L-8", 10)]
    second.append(_legacy("L-8", 10))
    for records, cursor in ((first, None), (second, "c1" if kind == "feed" else None)):
        with respx.mock(base_url=BASE) as mock:
            mock.get("/entries").mock(side_effect=by_cursor({cursor: page(envelope(records, "c1"))}))
            view = await run(db, sync_settings, "legacy")
    counts = view["counts"]
    assert (counts["stale"], counts["unchanged"], counts["inserted"], counts["duplicates"]) == (1, 1, 1, 2)
    assert counts["unmapped_legacy"] == 2  # L-7 and L-8, once each
