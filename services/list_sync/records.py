"""Upstream records: validation into normalised records or quarantine reasons, and reading `file` sources.

A record is quarantined (never dropped silently) when a required field is missing (`source_id`, `list_type`,
`subject.code`, `subject.name`, `listed_on`, `status`), its code fails the subject-code rules, its list type
is unknown, a date is not `YYYY-MM-DD` or `expires_on` is before `listed_on`, `status` is not `active` or
`removed`, or a text field is longer than 4,000 characters. Each reason comes with a machine-readable `rule`:
the subject-code rule (`uscc.check_char` ...) or one of ours (`required.subject.code`, `list_type.unknown` ...).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from shared.codes import (
    AmbiguousSubjectCode,
    SubjectCode,
    SubjectCodeError,
    SubjectKind,
    fast_normalise,
    normalise,
)
from shared.entries import LinkedPerson

MAX_TEXT = 4000
MAX_LINKED_PERSONS = 100
ROLES = ("legal_representative", "responsible_person", "actual_controller", "directly_responsible")
STATUSES = ("active", "removed")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_OMITTED: Any = object()  # `expires_on` absent (default validity) as opposed to null (open-ended)


@dataclass(frozen=True, slots=True)
class ListTypeInfo:
    kind: str
    default_validity_days: int | None


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    raw: Any
    reason: str
    rule: str
    source_id: str | None  # when the record names one: a quarantined record still counts as listed


@dataclass(frozen=True, slots=True)
class Parsed:
    line: int
    source_id: str
    list_type: str
    list_kind: str
    subject: SubjectCode
    subject_name: str
    linked_persons: tuple[LinkedPerson, ...]
    reason: str
    decision_no: str
    issuing_department: str
    listed_on: dt.date
    expires_on: dt.date | None
    status: str
    updated_at: dt.datetime | None


class _Reject(Exception):
    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


MAX_DEPTH = 16


def _str_ok(value: str) -> bool:
    return len(value) <= MAX_TEXT and "\x00" not in value and (value.isascii() or _encodable(value))


def _texts_ok(value: Any, depth: int = 0) -> bool:
    """The fast pass over a record (strings checked inline: this runs for every record of a million-row
    snapshot): True when every string is short and storable and nesting is shallow."""
    kind = type(value)
    if kind is str:
        return _str_ok(value)
    if kind is dict:
        if depth >= MAX_DEPTH:
            return False
        for key, item in value.items():
            if type(key) is str and not _str_ok(key):
                return False
            if type(item) is str:
                if not _str_ok(item):
                    return False
            elif (type(item) is dict or type(item) is list) and not _texts_ok(item, depth + 1):
                return False
        return True
    if kind is list:
        if depth >= MAX_DEPTH:
            return False
        for item in value:
            if type(item) is str:
                if not _str_ok(item):
                    return False
            elif (type(item) is dict or type(item) is list) and not _texts_ok(item, depth + 1):
                return False
    return True


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape
        return False
    return True


def _check_texts(record: Any) -> None:
    """Every string anywhere in the record: at most 4,000 characters, storable (no NUL, no lone surrogate);
    nesting at most MAX_DEPTH. Only a record failing the fast pass is walked again to name the field."""
    if _texts_ok(record):
        return
    stack: list[tuple[Any, str, int]] = [(record, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if len(value) > MAX_TEXT:
                raise _Reject(
                    "text.too_long", f"{path} is longer than {MAX_TEXT:,} characters ({len(value):,})"
                )
            if "\x00" in value:
                raise _Reject("text.invalid", f"{path} contains a NUL character")
            if not _encodable(value):
                raise _Reject("text.invalid", f"{path} is not valid Unicode text")
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise _Reject("record.too_deep", f"{path or 'the record'} is nested too deeply")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    stack.append((key, f"{path}.<key>" if path else "<key>", depth + 1))
                    child = f"{path}.{key}" if path else key
                else:
                    child = f"{path}[{key}]"
                stack.append((item, child, depth + 1))


def _text(record: Mapping[str, Any], key: str, path: str, *, required: bool) -> str:
    value = record.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _Reject(f"required.{path}", f"required field {path} is missing")
        return ""
    if not isinstance(value, str):
        raise _Reject(f"type.{path}", f"{path} must be a string")
    return value.strip()


def _date(value: Any, path: str) -> dt.date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise _Reject("date.format", f"{path} is not a date as YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise _Reject("date.format", f"{path} is not a real date") from None


def _timestamp(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise _Reject("updated_at.format", "updated_at is not an RFC 3339 time with an offset")
    return parsed


def _code(code: str, kind: str | None, path: str, today: dt.date) -> SubjectCode:
    try:
        return normalise(code, kind, today=today)
    except SubjectCodeError as exc:
        raise _Reject(exc.rule, f"{path}: {exc.message}") from None
    except AmbiguousSubjectCode as exc:
        raise _Reject("code.ambiguous", f"{path}: {exc.message}") from None


def _persons(value: Any, today: dt.date) -> tuple[LinkedPerson, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _Reject("type.linked_persons", "linked_persons must be a list")
    if len(value) > MAX_LINKED_PERSONS:
        raise _Reject("linked_persons.too_many", f"more than {MAX_LINKED_PERSONS} linked persons")
    persons: dict[tuple[str, str], LinkedPerson] = {}
    for i, item in enumerate(value):
        path = f"linked_persons[{i}]"
        if not isinstance(item, dict):
            raise _Reject("type.linked_persons", f"{path} must be an object")
        role = _text(item, "role", f"{path}.role", required=True)
        if role not in ROLES:
            raise _Reject("linked_persons.role", f"{path}.role must be one of {', '.join(ROLES)}")
        code = _text(item, "code", f"{path}.code", required=True)
        name = _text(item, "name", f"{path}.name", required=True)
        person = _code(code, SubjectKind.CITIZEN_ID, f"{path}.code", today)
        persons[(person.code, role)] = LinkedPerson(role, person.code, name)
    return tuple(persons.values())


def parse_record(
    record: Any, *, line: int, raw: Any = None, list_types: Mapping[str, ListTypeInfo], today: dt.date
) -> Parsed | Rejected:
    """Validate one upstream record (the feed's shape); `raw` is what quarantine keeps (default: the record)."""
    raw = record if raw is None else raw
    source_id: str | None = None
    if isinstance(record, dict):
        candidate = record.get("source_id")
        source_id = candidate.strip() if isinstance(candidate, str) and candidate.strip() else None
    try:
        if not isinstance(record, dict):
            raise _Reject("record.type", "the record is not a JSON object")
        _check_texts(record)
        source_id = _text(record, "source_id", "source_id", required=True)
        list_type = _text(record, "list_type", "list_type", required=True)
        subject = record.get("subject")
        if subject is None:
            raise _Reject("required.subject.code", "required field subject.code is missing")
        if not isinstance(subject, dict):
            raise _Reject("type.subject", "subject must be an object")
        code = _text(subject, "code", "subject.code", required=True)
        name = _text(subject, "name", "subject.name", required=True)
        kind = _text(subject, "kind", "subject.kind", required=False) or None
        if "listed_on" not in record or record["listed_on"] in (None, ""):
            raise _Reject("required.listed_on", "required field listed_on is missing")
        status = _text(record, "status", "status", required=True)
        if status not in STATUSES:
            raise _Reject("status.unknown", "status must be active or removed")
        info = list_types.get(list_type)
        if info is None:
            raise _Reject("list_type.unknown", "unknown list type")
        listed_on = _date(record["listed_on"], "listed_on")
        given_expiry = record.get("expires_on", _OMITTED)
        expires_on: dt.date | None
        if given_expiry is _OMITTED or given_expiry == "":
            # Absent (or an empty cell of a file): the list type's default validity, as the publish API does.
            days = info.default_validity_days
            expires_on = listed_on + dt.timedelta(days=days) if days is not None else None
        elif given_expiry is None:
            expires_on = None
        else:
            expires_on = _date(given_expiry, "expires_on")
            if expires_on < listed_on:
                raise _Reject("expires_on.before_listed_on", "expires_on is before listed_on")
        parsed_subject = _code(code, kind, "subject.code", today)
        persons = _persons(record.get("linked_persons"), today)
        return Parsed(
            line=line,
            source_id=source_id,
            list_type=list_type,
            list_kind=info.kind,
            subject=parsed_subject,
            subject_name=name,
            linked_persons=persons,
            reason=_text(record, "reason", "reason", required=False),
            decision_no=_text(record, "decision_no", "decision_no", required=False),
            issuing_department=_text(record, "issuing_department", "issuing_department", required=False),
            listed_on=listed_on,
            expires_on=expires_on,
            status=status,
            updated_at=_timestamp(record.get("updated_at")),
        )
    except _Reject as exc:
        return Rejected(line=line, raw=raw, reason=exc.reason, rule=exc.rule, source_id=source_id)


# --- the bulk path: one call per record of a snapshot ----------------------------------------------------


class Valid(NamedTuple):
    """A valid record, normalised, in the plain form bulk staging needs (what `Parsed` says, without objects;
    dates as `YYYY-MM-DD`). `code`/`kind`/`org_code` are the subject code as validated, before any alias
    mapping."""

    line: int
    source_id: str
    list_type: str
    list_kind: str
    code: str
    kind: str
    org_code: str | None
    name: str
    persons: tuple[
        tuple[str, str, str], ...
    ]  # (role, normalised code, name), de-duplicated as `_persons` does
    reason: str
    decision_no: str
    issuing_department: str
    listed_on: str
    expires_on: str | None
    status: str
    updated_at: dt.datetime | None


def valid_of(p: Parsed) -> Valid:
    return Valid(
        p.line,
        p.source_id,
        p.list_type,
        p.list_kind,
        p.subject.code,
        p.subject.kind.value,
        p.subject.org_code,
        p.subject_name,
        tuple((lp.role, lp.code, lp.name) for lp in p.linked_persons),
        p.reason,
        p.decision_no,
        p.issuing_department,
        p.listed_on.isoformat(),
        p.expires_on.isoformat() if p.expires_on else None,
        p.status,
        p.updated_at,
    )


_RECORD_KEYS = frozenset(
    (
        "source_id",
        "list_type",
        "subject",
        "linked_persons",
        "reason",
        "decision_no",
        "issuing_department",
        "listed_on",
        "expires_on",
        "status",
        "updated_at",
    )
)
_SUBJECT_KEYS = frozenset(("code", "name", "kind"))
_PERSON_KEYS = frozenset(("role", "code", "name"))
_ROLE_SET = frozenset(ROLES)
_STATUS_SET = frozenset(STATUSES)
_CACHE_LIMIT = 100_000
_dates: dict[str, dt.date] = {}  # canonical YYYY-MM-DD strings seen valid (dates repeat: a few thousand)
_expiries: dict[tuple[str, int], str] = {}  # (listed_on, default validity days) -> expires_on


def _fast_date(value: str) -> dt.date | None:
    """The date of a canonical ASCII `YYYY-MM-DD` (what `_date` accepts, and the common case), else None."""
    day = _dates.get(value)
    if day is None:
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            return None
        if day.isoformat() != value:  # another ISO form fromisoformat takes (20250301, week dates ...)
            return None
        if len(_dates) < _CACHE_LIMIT:
            _dates[value] = day
    return day


def _default_expiry(listed_on: str, day: dt.date, days: int) -> str:
    expiry = _expiries.get((listed_on, days))
    if expiry is None:
        expiry = (day + dt.timedelta(days=days)).isoformat()
        if len(_expiries) < _CACHE_LIMIT:
            _expiries[(listed_on, days)] = expiry
    return expiry


def fast_record(
    record: Any, line: int, list_types: Mapping[str, ListTypeInfo], today: dt.date, safe: bool
) -> Valid | None:
    """`parse_record` for the common valid record, without its general machinery; None for anything else
    (then `parse_record` decides, and names the reason). It accepts only what `parse_record` accepts and
    returns the same values (tests/list_sync/test_fast_paths.py holds them equal).

    `safe`: no string of the record can hold a NUL or a lone surrogate (the page it came from cannot encode
    one, see services/list_sync/runs.py `page_flags`), so of `_check_texts` only the lengths are left to
    check. Otherwise the record takes `parse_record`."""
    if not safe or type(record) is not dict or not record.keys() <= _RECORD_KEYS:
        return None
    get = record.get
    source_id = get("source_id")
    list_type = get("list_type")
    status = get("status")
    listed = get("listed_on")
    subject = get("subject")
    if (
        type(source_id) is not str
        or type(list_type) is not str
        or type(status) is not str
        or type(listed) is not str
        or type(subject) is not dict
        or not subject.keys() <= _SUBJECT_KEYS
    ):
        return None
    code = subject.get("code")
    name = subject.get("name")
    kind = subject.get("kind")
    if type(code) is not str or type(name) is not str:
        return None
    # _check_texts: every string at most MAX_TEXT characters (before stripping).
    if (
        len(source_id) > MAX_TEXT
        or len(list_type) > MAX_TEXT
        or len(status) > MAX_TEXT
        or len(code) > MAX_TEXT
        or len(name) > MAX_TEXT
    ):
        return None
    if kind is not None:
        if type(kind) is not str or len(kind) > MAX_TEXT:
            return None
        kind = kind.strip() or None
    source_id = source_id.strip()
    name = name.strip()
    if not source_id or not name or status.strip() not in _STATUS_SET:
        return None
    info = list_types.get(list_type.strip())
    if info is None:
        return None
    listed_on = _fast_date(listed)
    if listed_on is None:
        return None
    expires_on: str | None
    if "expires_on" not in record or (given := record["expires_on"]) == "":
        days = info.default_validity_days
        expires_on = None if days is None else _default_expiry(listed, listed_on, days)
    elif given is None:
        expires_on = None
    elif type(given) is str:
        until = _fast_date(given)
        if until is None or until < listed_on:
            return None
        expires_on = given
    else:
        return None
    subject_code = fast_normalise(code.strip(), kind, today)
    if subject_code is None:
        return None
    raw_persons = get("linked_persons")
    persons: tuple[tuple[str, str, str], ...] = ()
    if raw_persons:  # None or []: none
        if type(raw_persons) is not list or len(raw_persons) > MAX_LINKED_PERSONS:
            return None
        seen: dict[tuple[str, str], tuple[str, str, str]] = {}
        for item in raw_persons:
            if type(item) is not dict or not item.keys() <= _PERSON_KEYS:
                return None
            role = item.get("role")
            person_code = item.get("code")
            person_name = item.get("name")
            if (
                type(role) is not str
                or type(person_code) is not str
                or type(person_name) is not str
                or len(role) > MAX_TEXT
                or len(person_code) > MAX_TEXT
                or len(person_name) > MAX_TEXT
            ):
                return None
            role = role.strip()
            person_name = person_name.strip()
            if role not in _ROLE_SET or not person_name:
                return None
            person = fast_normalise(person_code.strip(), SubjectKind.CITIZEN_ID, today)
            if person is None:
                return None
            seen[(person[0], role)] = (role, person[0], person_name)
        persons = tuple(seen.values())
    elif raw_persons is not None and type(raw_persons) is not list:
        return None
    reason = get("reason")
    decision_no = get("decision_no")
    department = get("issuing_department")
    if reason is None:
        reason = ""
    elif type(reason) is not str or len(reason) > MAX_TEXT:
        return None
    if decision_no is None:
        decision_no = ""
    elif type(decision_no) is not str or len(decision_no) > MAX_TEXT:
        return None
    if department is None:
        department = ""
    elif type(department) is not str or len(department) > MAX_TEXT:
        return None
    stamp = get("updated_at")
    updated_at: dt.datetime | None = None
    if stamp is not None:
        if type(stamp) is not str or len(stamp) > MAX_TEXT:
            return None
        try:
            updated_at = dt.datetime.fromisoformat(stamp)
        except ValueError:
            return None
        if updated_at.tzinfo is None:
            return None
    return Valid(
        line,
        source_id,
        list_type.strip(),
        info.kind,
        subject_code[0],
        subject_code[1].value,
        subject_code[2],
        name,
        persons,
        reason.strip(),
        decision_no.strip(),
        department.strip(),
        listed,
        expires_on,
        status.strip(),
        updated_at,
    )


def validate(
    record: Any,
    *,
    line: int,
    raw: Any = None,
    list_types: Mapping[str, ListTypeInfo],
    today: dt.date,
    safe: bool = False,
) -> Valid | Rejected:
    """`parse_record` as a `Valid`, through `fast_record` when the record allows it."""
    fast = fast_record(record, line, list_types, today, safe)
    if fast is not None:
        return fast
    result = parse_record(record, line=line, raw=raw, list_types=list_types, today=today)
    return result if isinstance(result, Rejected) else valid_of(result)


def storable_json(raw: Any) -> str:
    """`raw` as JSON text PostgreSQL's jsonb accepts (NUL and lone surrogates replaced): quarantine keeps
    the bad record even when what makes it bad is unstorable text."""
    text = json.dumps(raw, ensure_ascii=False, default=str)
    text = text.replace("\\u0000", "\\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8")


# --- files -----------------------------------------------------------------------------------------------

# fixtures/entries-template.csv; 主体代码类型, 法定代表人*, 列入事由, 认定文号, 认定部门 and 有效期至 may be absent.
HEADERS = {
    "名单类型编码": "list_type",
    "主体名称": "subject_name",
    "主体代码": "subject_code",
    "主体代码类型": "subject_kind",
    "法定代表人姓名": "legal_rep_name",
    "法定代表人证件号码": "legal_rep_code",
    "列入事由": "reason",
    "认定文号": "decision_no",
    "认定部门": "issuing_department",
    "列入日期": "listed_on",
    "有效期至": "expires_on",
    "状态": "status",
    "来源记录编号": "source_id",
}
REQUIRED_HEADERS = ("名单类型编码", "主体名称", "主体代码", "列入日期", "状态", "来源记录编号")


class FileFormatError(Exception):
    """The file cannot be read as an entries file at all (the run fails; no row is applied)."""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _decode(body: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):  # exports from government systems are often GBK
        try:
            return body.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise FileFormatError("the file is neither UTF-8 nor GB18030 text")


def _csv_rows(body: bytes) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(_decode(body), newline=""))
    end = 0
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            yield start, [c.strip() for c in row]
    except csv.Error as exc:
        raise FileFormatError(f"CSV error at line {reader.line_num}: {exc}") from None


def _xlsx_rows(body: bytes) -> Iterator[tuple[int, list[str]]]:
    import openpyxl  # only file sources need it

    try:
        book = openpyxl.load_workbook(io.BytesIO(body), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a broken zip or sheet
        raise FileFormatError(f"not a readable XLSX workbook ({type(exc).__name__})") from None
    try:
        sheet = book.worksheets[0]
        for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, [_cell(v) for v in row]
    finally:
        book.close()


def read_file_rows(body: bytes) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, {header: cell}) for each non-empty data row of a CSV or XLSX entries file (header = line 1)."""
    rows = _xlsx_rows(body) if body[:4] == b"PK\x03\x04" else _csv_rows(body)
    header: list[str] | None = None
    for line, cells in rows:
        if header is None:
            if not any(cells):
                continue
            header = [c.lstrip("\ufeff").strip() for c in cells]
            missing = [h for h in REQUIRED_HEADERS if h not in header]
            if missing:
                raise FileFormatError(f"missing column(s): {', '.join(missing)}")
            continue
        if not any(cells):
            continue  # a blank line is no record
        yield line, {h: (cells[i] if i < len(cells) else "") for i, h in enumerate(header) if h}
    if header is None:
        raise FileFormatError("the file is empty")


def file_row_record(row: Mapping[str, str]) -> dict[str, Any]:
    """A file row in the upstream feed's shape (empty cells are absent fields)."""
    values = {HEADERS[h]: v for h, v in row.items() if h in HEADERS and v != ""}
    record: dict[str, Any] = {
        key: values[key]
        for key in (
            "source_id",
            "list_type",
            "reason",
            "decision_no",
            "issuing_department",
            "listed_on",
            "status",
        )
        if key in values
    }
    subject = {k: values[f"subject_{k}"] for k in ("code", "name", "kind") if f"subject_{k}" in values}
    if subject:
        record["subject"] = subject
    if "expires_on" in values:
        record["expires_on"] = values["expires_on"]
    if "legal_rep_name" in values or "legal_rep_code" in values:
        person = {"role": "legal_representative"}
        person.update({k: values[f"legal_rep_{k}"] for k in ("code", "name") if f"legal_rep_{k}" in values})
        record["linked_persons"] = [person]
    return record
