"""The bulk ingest's fast paths answer exactly what the general paths answer (or leave the record to them).

- `shared.codes.fast_normalise` vs `normalise` (GB 32100 / GB 11643 / GB 11714 / MOD 11,10 rules unchanged);
- `records.fast_record` vs `parse_record` (quarantine rules unchanged);
- `shared.entries.content_digest` vs the `json.dumps` digest it replaces;
- COPY text staging keeps every character; entry ids are UUIDv7 ascending with the records;
- `finished_at` of a run includes its apply.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Any

import respx
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from services.list_sync.records import (
    ListTypeInfo,
    Rejected,
    fast_record,
    parse_record,
    valid_of,
)
from services.list_sync.runs import copy_text, page_flags
from shared.codes import (
    AmbiguousSubjectCode,
    SubjectCodeError,
    SubjectKind,
    citizen_id_check_char,
    fast_normalise,
    normalise_by_rules,
    org_code_check_char,
    registration_no_check_digit,
)
from shared.db.engine import Database
from shared.entries import content_digest
from shared.settings import Settings
from tests.list_sync.helpers import (
    BASE,
    add_source,
    citizen_id,
    envelope,
    fetch,
    page,
    record,
    run,
    uscc,
)

TODAY = dt.date(2026, 12, 1)
TYPES = {
    "LT01": ListTypeInfo("black", 730),
    "LT07": ListTypeInfo("black", None),
    "LT09": ListTypeInfo("red", 1095),
}
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- subject codes ----------------------------------------------------------------------------------------

USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
KINDS = st.sampled_from([None, "uscc", "citizen_id", "org_code", "registration_no", "USCC", "passport"])


def _org_code(i: int) -> str:
    body = f"{i:08d}"[:6] + "AB"
    return body + org_code_check_char(body)


def _registration_no(i: int) -> str:
    first14 = f"4407030{i % 10**7:07d}"
    return first14 + registration_no_check_digit(first14)


def _reference(code: str, kind: Any) -> tuple[str, SubjectKind, str | None] | None:
    try:
        found = normalise_by_rules(code, kind, today=TODAY)
    except (SubjectCodeError, AmbiguousSubjectCode):
        return None
    return found.code, found.kind, found.org_code


def _valid_codes() -> st.SearchStrategy[str]:
    index = st.integers(0, 10**7)
    return st.one_of(
        index.map(uscc),
        index.map(lambda i: uscc(i, prefix="N2440703")),
        index.map(citizen_id),
        index.map(_org_code),
        index.map(_registration_no),
    )


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    code = draw(_valid_codes())
    at = draw(st.integers(0, len(code) - 1))
    edit = draw(st.sampled_from(["replace", "drop", "insert", "lower", "space", "fullwidth"]))
    char = draw(st.sampled_from(USCC_CHARS + "IOSVZXa -\u3000０"))
    if edit == "replace":
        return code[:at] + char + code[at + 1 :]
    if edit == "drop":
        return code[:at] + code[at + 1 :]
    if edit == "insert":
        return code[:at] + char + code[at:]
    if edit == "lower":
        return code.lower()
    if edit == "space":
        return f" {code} "
    return code.translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789"})  # full-width digits


@FAST
@given(code=st.one_of(_valid_codes(), _mutated(), st.text(USCC_CHARS + "IOSVZxy-", max_size=20)), kind=KINDS)
@example(code="", kind=None)
@example(code="110105194912310021", kind=None)
def test_fast_normalise_answers_only_what_normalise_answers(code: str, kind: Any) -> None:
    fast = fast_normalise(code, kind, TODAY)
    if fast is not None:
        assert fast == _reference(code, kind)


@FAST
@given(code=_valid_codes())
def test_fast_normalise_takes_valid_codes_without_their_kind_too(code: str) -> None:
    expected = _reference(code, None)
    assume(expected is not None)  # a citizen id that is a valid USCC too is ambiguous without its kind
    assert expected is not None
    assert fast_normalise(code, None, TODAY) == expected
    assert fast_normalise(code, expected[1].value, TODAY) == expected
    assert fast_normalise(code.lower(), expected[1], TODAY) == expected


def test_fast_normalise_leaves_ambiguous_and_future_codes_to_normalise() -> None:
    ambiguous = next(code for i in range(100_000) if _reference(code := citizen_id(i), "uscc") is not None)
    assert fast_normalise(ambiguous, None, TODAY) is None
    assert fast_normalise(ambiguous, "uscc", TODAY) == _reference(ambiguous, "uscc")
    assert fast_normalise(ambiguous, "citizen_id", TODAY) == _reference(ambiguous, "citizen_id")
    first17 = f"440703{TODAY + dt.timedelta(days=1):%Y%m%d}001"
    unborn = first17 + citizen_id_check_char(first17)
    assert fast_normalise(unborn, "citizen_id", TODAY) is None
    assert _reference(unborn, "citizen_id") is None
    legacy = "440703700101001"  # 15-digit citizen id: converted by normalise only
    assert fast_normalise(legacy, "citizen_id", TODAY) is None


# --- records ----------------------------------------------------------------------------------------------

ABSENT: Any = object()
LONG = "长" * 4001
EDGE = "边" * 3998 + "  "  # 4,000 characters before stripping


def _mostly(valid: list[Any], odd: list[Any]) -> st.SearchStrategy[Any]:
    """Mostly one of `valid` (what a record accepts in some form), now and then one of `odd`."""
    return st.integers(0, 11).flatmap(lambda i: st.sampled_from(odd if i == 0 else valid))


def _texts(*valid: Any) -> st.SearchStrategy[Any]:
    return _mostly([*valid, " 带空格 ", EDGE], [ABSENT, None, "", "  ", 17, LONG])


@st.composite
def _persons(draw: st.DrawFn) -> Any:
    person = st.fixed_dictionaries(
        {
            "role": _mostly(
                ["legal_representative", " actual_controller "],
                ["boss", "", None, "legal_representative" + " " * 4000],
            ),
            "code": st.integers(0, 10**6).flatmap(
                lambda i: _mostly(
                    [citizen_id(i % 9), citizen_id(i), f" {citizen_id(i)} "], [uscc(3), "4407031"]
                )
            ),
            "name": _mostly(["张三", " 李四 "], ["", None, LONG]),
        },
        optional={"extra": st.just("x")} if draw(st.integers(0, 19)) == 0 else {},
    )
    return draw(
        _mostly([ABSENT, None, [], ["LISTS"]], ["x", 3]).flatmap(
            lambda v: st.lists(person, max_size=3) if v == ["LISTS"] else st.just(v)
        )
    )


@st.composite
def _records(draw: st.DrawFn) -> Any:
    code = draw(st.integers(0, 9).flatmap(lambda i: _mutated() if i == 0 else _valid_codes()))
    subject: Any = {
        "code": code,
        "name": draw(_texts("江门市某某有限公司")),
        "kind": draw(_mostly([ABSENT, None, ""], ["uscc", " citizen_id ", "org_code", "USCC", 3])),
    }
    if draw(st.integers(0, 19)) == 0:
        subject["extra"] = 1
    fields: dict[str, Any] = {
        "source_id": draw(_texts("S-1")),
        "list_type": draw(_mostly(["LT01", " LT07 ", "LT09"], ["LT99", "", None, ABSENT, 5])),
        "subject": draw(_mostly([subject], [None, "x", ABSENT])),
        "linked_persons": draw(_persons()),
        "reason": draw(_texts("拒不履行")),
        "decision_no": draw(_texts("(2026)粤07执1号")),
        "issuing_department": draw(_texts("江门市人民法院")),
        "listed_on": draw(
            _mostly(
                ["2025-03-01", "2024-02-29"],
                ["2025-02-30", "20250301", "2025-W01-1", "２０２５-03-01", "", None, 7, ABSENT],
            )
        ),
        "expires_on": draw(
            _mostly([ABSENT, None, "", "2027-03-01", "2025-03-01"], ["2024-01-01", "x", 5, "20270301"])
        ),
        "status": draw(
            _mostly(["active", "removed", " active "], ["ACTIVE", "", None, ABSENT, "active" + " " * 4000])
        ),
        "updated_at": draw(
            _mostly(
                [
                    ABSENT,
                    None,
                    "2026-11-30T08:00:00+08:00",
                    "2026-11-30T00:00:00Z",
                    "2026-11-30T08:00:00.123456+05:30",
                ],
                ["2026-11-30T08:00:00", "x", 9],
            )
        ),
    }
    out = {k: v for k, v in fields.items() if v is not ABSENT}
    if isinstance(out.get("subject"), dict):
        out["subject"] = {k: v for k, v in out["subject"].items() if v is not ABSENT}
    if draw(st.integers(0, 19)) == 0:
        out["extra"] = {"nested": [LONG]}
    return out


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rec=_records())
def test_fast_record_accepts_only_what_parse_record_accepts_and_says_the_same(rec: Any) -> None:
    fast = fast_record(rec, 7, TYPES, TODAY, True)
    reference = parse_record(rec, line=7, list_types=TYPES, today=TODAY)
    if fast is not None:
        assert not isinstance(reference, Rejected), reference
        assert fast == valid_of(reference)


def test_fast_record_takes_the_common_records() -> None:
    records = [
        record(
            "A-1", code=uscc(1), list_type="LT07", expires_on=None, updated_at="2026-11-30T08:00:00+08:00"
        ),
        record("A-2", code=citizen_id(2), name="张三", expires_on="2028-01-01"),
        {**record("A-3", code=uscc(3)), "subject": {"code": uscc(3), "name": "某公司", "kind": "uscc"}},
        record(
            "A-4",
            code=uscc(4),
            linked_persons=[
                {"role": "legal_representative", "code": citizen_id(4), "name": "李四"},
                {"role": "legal_representative", "code": citizen_id(4), "name": "李四（重复）"},
            ],
        ),
    ]
    for rec in records:
        fast = fast_record(rec, 1, TYPES, TODAY, True)
        reference = parse_record(rec, line=1, list_types=TYPES, today=TODAY)
        assert fast is not None, rec
        assert not isinstance(reference, Rejected)
        assert fast == valid_of(reference)
    persons = fast_record(records[3], 1, TYPES, TODAY, True)
    assert persons is not None
    assert persons.persons == (("legal_representative", citizen_id(4), "李四（重复）"),)
    # Not safe (the page may hold a NUL or a lone surrogate): always the general path.
    assert fast_record(records[0], 1, TYPES, TODAY, False) is None


# --- digest, COPY text, page flags ------------------------------------------------------------------------


def _json_digest(
    list_type: str,
    code: str,
    name: str,
    persons: list[tuple[str, str, str]],
    text: str,
    expires: dt.date | None,
) -> str:
    content = {
        "list_type": list_type,
        "subject_code": code,
        "subject_name": name,
        "linked_persons": sorted(persons),
        "reason": text,
        "decision_no": text[::-1],
        "issuing_department": name + text,
        "listed_on": "2025-03-01",
        "expires_on": expires.isoformat() if expires else None,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@FAST
@given(
    name=st.text(),
    text=st.text(),
    persons=st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5), st.text(max_size=5)), max_size=4),
    expires=st.none() | st.dates(),
)
@example(name='引号"与\\反斜杠\t\n\x00\x1f\u2028', text="", persons=[], expires=None)
def test_content_digest_is_the_json_digest(
    name: str, text: str, persons: list[tuple[str, str, str]], expires: dt.date | None
) -> None:
    assert content_digest(
        list_type="LT01",
        subject_code=name[:3],
        subject_name=name,
        persons=persons,
        reason=text,
        decision_no=text[::-1],
        issuing_department=name + text,
        listed_on=dt.date(2025, 3, 1),
        expires_on=expires,
    ) == _json_digest("LT01", name[:3], name, persons, text, expires)


def test_copy_text_escapes_what_copy_reads_specially() -> None:
    assert copy_text("a\\b\tc\nd\re") == "a\\\\b\\tc\\nd\\re"
    assert copy_text("纯文本") == "纯文本"


def test_page_flags() -> None:
    assert page_flags('{"entries": [{"name": "张三"}]}'.encode()) == (True, True)
    assert page_flags(b'{"name": "\\"quoted\\""}') == (True, False)  # escapes: COPY text must escape
    assert page_flags(b'{"name": "\\u5f20"}') == (True, False)
    assert page_flags(b'{"name": "\\u0000"}') == (False, False)  # a NUL
    assert page_flags(b'{"name": "\\uD83D\\uDE00"}') == (False, False)  # surrogate escapes
    assert page_flags(b'{"name": "\xed\xa0\x80"}') == (False, True)  # an encoded lone surrogate
    assert page_flags('{"name": "한국"}'.encode()) == (True, True)  # other \xed bytes are fine
    assert page_flags('{"a": 1}'.encode("utf-16")) == (False, False)


# --- through a run ----------------------------------------------------------------------------------------


async def _snapshot_body(db: Database, settings_: Settings, body: bytes, name: str = "odd") -> dict[str, Any]:
    await add_source(db, name, "snapshot")
    with respx.mock(base_url=BASE) as mock:
        mock.get("/entries").mock(return_value=page(body))
        return await run(db, settings_, name)


async def test_text_that_copy_escapes_is_stored_exactly(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    odd = 'tab\there, new\nline, back\\slash, "quotes", \\N, \\., emoji 😀, 中文'
    entries = [
        record("T-1", name=odd, reason=odd, decision_no="\\N", issuing_department="\t"),
        record(
            "T-2",
            code=uscc(2),
            linked_persons=[{"role": "legal_representative", "code": citizen_id(2), "name": odd}],
        ),
    ]
    # ensure_ascii: every non-ASCII character (the emoji as a surrogate pair) comes as an escape
    body = json.dumps(envelope(entries), ensure_ascii=True).encode()
    view = await _snapshot_body(db, sync_settings, body)
    assert view["status"] == "succeeded", view
    assert view["counts"]["inserted"] == 2
    rows = await fetch(
        db,
        "SELECT source_record_id, subject_name, reason, decision_no, issuing_department, linked_persons "
        "FROM list_entries WHERE source_name = 'odd' ORDER BY source_record_id",
    )
    assert rows[0]["subject_name"] == odd
    assert rows[0]["reason"] == odd
    assert rows[0]["decision_no"] == "\\N"
    assert rows[0]["issuing_department"] == ""  # stripped, as parse_record does
    assert rows[1]["linked_persons"] == [{"role": "legal_representative", "code": citizen_id(2), "name": odd}]
    [person] = await fetch(db, "SELECT person_name FROM entry_persons WHERE person_code = $1", citizen_id(2))
    assert person["person_name"] == odd


async def test_entry_ids_are_uuid7_ascending_with_the_records(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    entries = [record(f"U-{i}", code=uscc(100 + i)) for i in (5, 3, 9, 1, 7)]
    view = await _snapshot_body(db, sync_settings, json.dumps(envelope(entries)).encode(), "ids")
    assert view["counts"]["inserted"] == 5
    rows = await fetch(db, "SELECT entry_id, source_record_id FROM list_entries WHERE source_name = 'ids'")
    by_source = {r["source_record_id"]: uuid.UUID(str(r["entry_id"])) for r in rows}
    ids = [by_source[e["source_id"]] for e in entries]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == 5


async def test_finished_at_is_after_the_apply(db: Database, catalogue: None, sync_settings: Settings) -> None:
    view = await _snapshot_body(db, sync_settings, json.dumps(envelope([record("F-1")])).encode(), "clock")
    [row] = await fetch(
        db,
        "SELECT r.finished_at, max(e.at) AS applied FROM sync_runs r JOIN entry_events e ON e.run_id = r.run_id "
        "WHERE r.run_id = $1 GROUP BY r.finished_at",
        uuid.UUID(view["run_id"]),
    )
    assert row["finished_at"] >= row["applied"]


def test_mutations_of_valid_codes_mostly_fail() -> None:
    """The mutation strategy reaches the failure paths (a guard for the properties above)."""
    rejected = 0
    for i in range(200):
        code = uscc(i)
        bad = code[:5] + ("0" if code[5] != "0" else "1") + code[6:]
        rejected += _reference(bad, "uscc") is None
    assert rejected > 150


# --- JSON pages -------------------------------------------------------------------------------------------

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types all the way down (1 == 1.0 == True would hide a difference)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and a != a:
        return bool(b != b)
    return bool(a == b)


def _both(body: bytes) -> tuple[Any, Any]:
    from services.list_sync.upstream import loads

    out = []
    for parse in (loads, json.loads):
        try:
            out.append(parse(body))
        except (ValueError, RecursionError) as exc:
            out.append(type(exc).__name__)
    return out[0], out[1]


@FAST
@given(value=_JSON, ascii_only=st.booleans())
def test_loads_reads_what_json_reads(value: Any, ascii_only: bool) -> None:
    fast, reference = _both(json.dumps(value, ensure_ascii=ascii_only).encode())
    assert _same(fast, reference)


@FAST
@given(body=st.binary(max_size=40) | st.text(max_size=40).map(str.encode))
@example(body=b"[18446744073709551616]")
@example(body=b"[-9223372036854775809]")
@example(body=b"\xef\xbb\xbf{}")
@example(body=b'["\\ud800", NaN, 1e400]')
@example(body='{"a": 1}'.encode("utf-16"))
@example(body=b'{"a": 1, "a": 2}')
def test_loads_fails_where_json_fails_and_agrees_elsewhere(body: bytes) -> None:
    fast, reference = _both(body)
    assert _same(fast, reference)


async def test_unstorable_text_in_a_rejected_record_is_quarantined_not_fatal(
    db: Database, catalogue: None, sync_settings: Settings
) -> None:
    entries = [
        record("OK-1"),
        record("NUL\x00ID"),  # its source_id cannot be stored; the record is quarantined
        {**record("KEY-1"), "bad\x00key": "x" * 4001},  # the reason names the key
        {**record("SUR-1"), "k\ud800": "x" * 4001},
    ]
    body = json.dumps(envelope(entries)).encode()
    view = await _snapshot_body(db, sync_settings, body, "unstorable")
    assert view["status"] == "succeeded", view
    assert (view["counts"]["inserted"], view["counts"]["quarantined"]) == (1, 3)
    rows = await fetch(db, "SELECT line, rule, reason FROM sync_quarantine ORDER BY line")
    assert [r["rule"] for r in rows] == ["text.invalid", "text.too_long", "text.too_long"]
    assert all("\x00" not in r["reason"] for r in rows)
