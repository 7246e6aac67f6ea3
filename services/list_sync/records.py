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
from typing import Any

from shared.codes import AmbiguousSubjectCode, SubjectCode, SubjectCodeError, SubjectKind, normalise
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
