"""Importing the measure catalogue and item mapping from a CSV or XLSX file with Chinese headers.

Used by `onecheck catalogue import FILE` (shared/cli.py) and `POST /v1/catalogue/import`. The format is
described for operators in docs/catalogue-import.md; docs/catalogue-template.csv is a file to start from.

One row is one mapping: *this item* (权责事项), for *this list type* (名单类型), applies *this measure* (措施) to
*these targets* (适用对象). A measure used by several rows repeats its columns identically; so does an item.
The file is the whole mapping table: mappings not in it are dropped (measures and items are kept). Every row
is validated first; one bad row refuses the whole import and nothing is written.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.catalogue import CatalogueData, write_catalogue
from shared.models import Item, ListType, Memorandum
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

# Column → what it holds. The first fifteen are the agreed headers (AGREED_COLUMNS); the last four are ours
# and optional: a file with exactly the fifteen imports (see the docs).
COLUMNS: dict[str, str] = {
    "措施编号": "measure code (unique; the key that ties rows of one measure together)",
    "措施名称": "short title of the measure (not stored; used as 措施内容 when that is empty)",
    "措施类别": "category, e.g. 限制政府采购",
    "措施性质": "nature, e.g. 行政性 / 管理性 / 市场性 / 激励",
    "措施内容": "full text of the measure",
    "激励/惩戒对象": "targets the measure can reach at all: 单位 / 法定代表人·主要负责人 / 自然人",
    "实施部门": "the measure's implementing department (配合单位)",
    "相关依据": "legal basis (law and article, memorandum article)",
    "依据层级": "level of the basis: 法律 / 行政法规 / 司法解释 / 部门规章 / 党中央国务院文件 / 地方性法规 / 备忘录",
    "备忘录": "memorandum code or title (must exist), or empty",
    "名单类型编码": "list type code (must exist), e.g. LT01",
    "权责事项编码": "item code, e.g. I07",
    "事项名称": "item name",
    "关联科室": "the item's responsible section",
    "适用对象": "targets this item applies the measure to for this list type (this decides what a check does)",
    "奖惩类型": "激励 (incentive) or 惩戒 (penalty); empty or absent: from the list type (red 激励, black/watch 惩戒)",
    "是否必须": "是 (mandatory, 依法必须) or 否 (advisory, 参考); empty: 是 for penalties, 否 for incentives",
    "事项类型": "item type, e.g. 行政许可 (required for an item not yet in the catalogue)",
    "事项实施部门": "the item's department, compared exactly with a client's department (required for a new item)",
}
AGREED_COLUMNS = tuple(COLUMNS)[:15]
# The header must have these (all among the agreed fifteen); every other column may be left out.
REQUIRED_COLUMNS = (
    "措施编号",
    "措施类别",
    "措施内容",
    "激励/惩戒对象",
    "相关依据",
    "名单类型编码",
    "权责事项编码",
    "事项名称",
    "适用对象",
)
MAX_TEXT = 4000
MAX_ROWS = 100_000

_TARGET_WORDS: dict[str, str] = {
    "entity": "entity",
    "单位": "entity",
    "法人": "entity",
    "企业": "entity",
    "法人和其他组织": "entity",
    "u": "entity",
    "responsible_person": "responsible_person",
    "法定代表人": "responsible_person",
    "主要负责人": "responsible_person",
    "负责人": "responsible_person",
    "实际控制人": "responsible_person",
    "直接责任人": "responsible_person",
    "直接责任人员": "responsible_person",
    "相关责任人": "responsible_person",
    "负有责任的人员": "responsible_person",
    "p": "responsible_person",
    "natural_person": "natural_person",
    "自然人": "natural_person",
    "个人": "natural_person",
    "n": "natural_person",
}
_TARGET_SPLIT = re.compile(r"[、,，;；/|·・\s]+")
_KINDS = {"激励": "incentive", "惩戒": "penalty", "incentive": "incentive", "penalty": "penalty"}
# An incentive follows a red list, a penalty a black or watch list (also the kind of a row without 奖惩类型).
_KIND_OF_LIST = {"red": "incentive", "black": "penalty", "watch": "penalty"}
_YES = {"是", "必须", "y", "yes", "true", "1"}
_NO = {"否", "参考", "n", "no", "false", "0"}
_CODE = re.compile(r"^\S{1,64}$")


class CatalogueImportError(Exception):
    """The file was refused; `problems` lists each bad row as {"line", "msg"} (line 0: the file as a whole)."""

    def __init__(self, message: str, problems: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ImportResult:
    version: int | None  # None: the file equals the current catalogue
    rows: int
    counts: dict[str, int]

    @property
    def changed(self) -> bool:
        return self.version is not None

    def summary(self) -> str:
        what = (
            f"{self.counts['measures']} measures, {self.counts['items']} items, "
            f"{self.counts['mappings']} mappings from {self.rows} rows"
        )
        if self.version is None:
            return f"catalogue unchanged ({what} equal the current version)"
        return f"catalogue version {self.version}: {what}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "changed": self.changed,
            "rows": self.rows,
            "counts": self.counts,
            "summary": self.summary(),
        }


# --- reading the file ------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a code typed as a number in Excel
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value).strip()


def _csv_rows(data: bytes) -> Iterator[tuple[int, list[str]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatalogueImportError(
            "the file is not UTF-8 text",
            [{"line": 0, "msg": f"the file is not UTF-8 (byte {exc.start}); save it as CSV UTF-8"}],
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    line = 1
    try:
        for record in reader:
            yield line, [c.strip() for c in record]
            line = reader.line_num + 1  # the next record starts after this one's last physical line
    except csv.Error as exc:
        raise CatalogueImportError(
            "the CSV file cannot be read", [{"line": line, "msg": f"malformed CSV: {exc}"}]
        ) from None


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, list[str]]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a file that is not a workbook
        raise CatalogueImportError(
            "the XLSX file cannot be read",
            [{"line": 0, "msg": f"not a readable XLSX workbook ({type(exc).__name__})"}],
        ) from None
    try:
        sheet = workbook.worksheets[0]
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, [_cell(v) for v in values]
    finally:
        workbook.close()


def read_rows(filename: str, data: bytes) -> Iterator[tuple[int, list[str]]]:
    """(line, cells) of every row, header first; the kind of file from its name, else its first bytes."""
    name = filename.lower()
    if name.endswith(".xlsx") or (not name.endswith(".csv") and data[:2] == b"PK"):
        return _xlsx_rows(data)
    return _csv_rows(data)


# --- validating ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Context:
    list_types: Mapping[str, str]  # code → kind
    memoranda: Mapping[str, str]  # code or title → code
    items: Mapping[str, dict[str, Any]]  # existing items by code
    columns: frozenset[str] = frozenset()  # the file's header
    problems: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def bad(self, line: int, msg: str) -> None:
        self.problems.append({"line": line, "msg": msg})


def _targets(value: str) -> tuple[list[str], list[str]]:
    """(targets in the order written, each once; words not understood)."""
    found: dict[str, None] = {}
    unknown: list[str] = []
    for word in _TARGET_SPLIT.split(value):
        if not word:
            continue
        target = _TARGET_WORDS.get(word.lower())
        if target is None:
            unknown.append(word)
        else:
            found[target] = None
    return list(found), unknown


def _row_values(header: Sequence[str], cells: Sequence[str]) -> dict[str, str]:
    values = {name: (cells[i] if i < len(cells) else "") for i, name in enumerate(header) if name}
    return {name: values.get(name, "") for name in COLUMNS}


def _validate_row(
    ctx: _Context, line: int, row: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, Any], tuple[str, list[str]]] | None:
    """(measure, item, (list type, targets)) of a valid row; problems recorded on `ctx` otherwise."""
    before = len(ctx.problems)
    for name, value in row.items():
        if len(value) > MAX_TEXT:
            ctx.bad(line, f"{name}: longer than {MAX_TEXT} characters")
        if "\x00" in value:
            ctx.bad(line, f"{name}: contains a NUL character")
    content = row["措施内容"] or row["措施名称"]
    for name in REQUIRED_COLUMNS:
        if not (content if name == "措施内容" else row[name]):
            ctx.bad(line, f"{name}: required")
    measure_code, item_code, list_type = row["措施编号"], row["权责事项编码"], row["名单类型编码"]
    if measure_code and not _CODE.match(measure_code):
        ctx.bad(line, f"措施编号: {measure_code[:40]!r} must be 1 to 64 characters without spaces")
    if item_code and not _CODE.match(item_code):
        ctx.bad(line, f"权责事项编码: {item_code[:40]!r} must be 1 to 64 characters without spaces")
    list_kind = ctx.list_types.get(list_type)
    if list_type and list_kind is None:
        ctx.bad(line, f"名单类型编码: unknown list type {list_type[:40]!r}")
    kind = _KINDS.get(row["奖惩类型"].lower()) if row["奖惩类型"] else None
    if row["奖惩类型"] and kind is None:
        ctx.bad(line, f"奖惩类型: {row['奖惩类型'][:40]!r} is neither 激励 nor 惩戒")
    # An incentive follows a red list and a penalty a black or watch list: anything else is a mistake that
    # would reward the untrustworthy or punish the trustworthy. Not given, the list type says which it is.
    implied = _KIND_OF_LIST.get(list_kind) if list_kind else None
    if kind and implied and kind != implied:
        ctx.bad(
            line,
            f"奖惩类型 {row['奖惩类型']} does not fit list type {list_type} ({list_kind} list): "
            "incentives go with red lists, penalties with black and watch lists",
        )
    if not row["奖惩类型"]:
        kind = implied
    mandatory: bool | None = None
    flag = row["是否必须"].lower()
    if flag in _YES:
        mandatory = True
    elif flag in _NO:
        mandatory = False
    elif flag:
        ctx.bad(line, f"是否必须: {row['是否必须'][:40]!r} is neither 是 nor 否")
    if mandatory is None:
        mandatory = kind != "incentive"
    possible, unknown = _targets(row["激励/惩戒对象"])
    if unknown:
        ctx.bad(line, f"激励/惩戒对象: not a target: {', '.join(unknown)[:80]}")
    applied, unknown = _targets(row["适用对象"])
    if unknown:
        ctx.bad(line, f"适用对象: not a target: {', '.join(unknown)[:80]}")
    memorandum: str | None = None
    if row["备忘录"]:
        memorandum = ctx.memoranda.get(row["备忘录"])
        if memorandum is None:
            ctx.bad(line, f"备忘录: unknown memorandum {row['备忘录'][:60]!r} (give its code or exact title)")
    existing = ctx.items.get(item_code, {})
    item_type = row["事项类型"] or existing.get("type", "")
    department = row["事项实施部门"] or existing.get("department", "")
    for name, value in (("事项类型", item_type), ("事项实施部门", department)):
        if item_code and not value:
            # Only a new item needs these; an item the catalogue has keeps its own when they are empty.
            hint = "" if name in ctx.columns else f" (add a {name} column)"
            ctx.bad(
                line,
                f"{name}: required for a new item ({item_code[:40]!r} is not in the catalogue yet){hint}",
            )
    if len(ctx.problems) > before:
        return None
    measure = {
        "code": measure_code,
        "kind": kind,
        "category": row["措施类别"],
        "nature": row["措施性质"] or None,
        "mandatory": mandatory,
        "content": content,
        "targets": possible,
        "implementing_department": row["实施部门"] or None,
        "legal_basis": row["相关依据"],
        "basis_level": row["依据层级"] or None,
        "memorandum": memorandum,
    }
    item = {
        "code": item_code,
        "name": row["事项名称"],
        "type": item_type,
        "department": department,
        "section": row["关联科室"] or None,
        "system": existing.get("system"),
    }
    return measure, item, (list_type, applied)


def _differences(first: Mapping[str, Any], other: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    return [labels[key] for key in labels if first[key] != other[key]]


_MEASURE_LABELS = {
    "kind": "奖惩类型",
    "category": "措施类别",
    "nature": "措施性质",
    "mandatory": "是否必须",
    "content": "措施内容",
    "targets": "激励/惩戒对象",
    "implementing_department": "实施部门",
    "legal_basis": "相关依据",
    "basis_level": "依据层级",
    "memorandum": "备忘录",
}
_ITEM_LABELS = {"name": "事项名称", "type": "事项类型", "department": "事项实施部门", "section": "关联科室"}


def parse_catalogue(rows: Iterator[tuple[int, list[str]]], ctx: _Context) -> tuple[CatalogueData, int]:
    """The catalogue a file describes, and its number of data rows; raises CatalogueImportError."""
    header: list[str] | None = None
    measures: dict[str, tuple[int, dict[str, Any]]] = {}
    items: dict[str, tuple[int, dict[str, Any]]] = {}
    mappings: dict[tuple[str, str], dict[str, list[str]]] = {}
    seen: dict[tuple[str, str, str], int] = {}
    count = 0
    for line, cells in rows:
        if not any(cells):
            continue
        if header is None:
            header = [c.lstrip("\ufeff").strip() for c in cells]
            unknown = [c for c in header if c and c not in COLUMNS]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if unknown:
                ctx.bad(line, f"unknown column(s): {', '.join(unknown)[:200]}")
            if missing:
                ctx.bad(line, f"missing column(s): {', '.join(missing)}")
            if unknown or missing:
                break
            ctx.columns = frozenset(c for c in header if c)
            continue
        count += 1
        if count > MAX_ROWS:
            ctx.bad(line, f"more than {MAX_ROWS} rows")
            break
        parsed = _validate_row(ctx, line, _row_values(header, cells))
        if parsed is None:
            continue
        measure, item, (list_type, targets) = parsed
        first = measures.setdefault(measure["code"], (line, measure))
        if first[1] != measure:
            diff = ", ".join(_differences(first[1], measure, _MEASURE_LABELS))
            note = (
                ": one measure is either an incentive (red lists) or a penalty (black and watch lists)"
                if first[1]["kind"] != measure["kind"]
                else ""
            )
            ctx.bad(line, f"措施编号 {measure['code']}: {diff} differ from line {first[0]}{note}")
        first_item = items.setdefault(item["code"], (line, item))
        if first_item[1] != item:
            diff = ", ".join(_differences(first_item[1], item, _ITEM_LABELS))
            ctx.bad(line, f"权责事项编码 {item['code']}: {diff} differ from line {first_item[0]}")
        key = (item["code"], list_type, measure["code"])
        if key in seen:
            ctx.bad(line, f"the mapping {' × '.join(key)} is also on line {seen[key]}")
            continue
        seen[key] = line
        mappings.setdefault((item["code"], list_type), {})[measure["code"]] = targets
    if header is None:
        ctx.bad(0, "the file is empty: expected a header row and at least one data row")
    elif count == 0 and not ctx.problems:
        ctx.bad(0, "the file has a header row but no data rows")
    if ctx.problems:
        n = len(ctx.problems)
        raise CatalogueImportError(
            f"the catalogue file has {n} problem{'s' if n != 1 else ''}; nothing was imported", ctx.problems
        )
    data: CatalogueData = {
        "list_types": [],  # list types and memoranda are referenced, not defined, by the file
        "memoranda": [],
        "measures": [m for _, m in sorted(measures.values(), key=lambda v: v[1]["code"])],
        "items": [i for _, i in sorted(items.values(), key=lambda v: v[1]["code"])],
        "mappings": [
            {
                "item": item_code,
                "list_type": list_type,
                "measures": [{"measure": code, "targets": targets} for code, targets in sorted(per.items())],
            }
            for (item_code, list_type), per in sorted(mappings.items())
        ],
    }
    return data, count


async def _context(session: AsyncSession) -> _Context:
    list_types = {
        code: kind for code, kind in (await session.execute(select(ListType.code, ListType.kind))).all()
    }
    memoranda: dict[str, str] = {}
    for code, title in (await session.execute(select(Memorandum.code, Memorandum.title))).all():
        memoranda[title] = code
        memoranda[code] = code  # a code wins over a title spelled like another memorandum's code
    items = {
        row.code: {"type": row.type, "department": row.department, "system": row.system}
        for row in (await session.execute(select(Item.code, Item.type, Item.department, Item.system))).all()
    }
    return _Context(list_types=list_types, memoranda=memoranda, items=items)


async def import_catalogue_file(session: AsyncSession, filename: str, data: bytes) -> ImportResult:
    """Validate the whole file, then replace the catalogue in one transaction (commits)."""
    ctx = await _context(session)
    catalogue, rows = parse_catalogue(read_rows(filename, data), ctx)
    try:
        version = await write_catalogue(session, catalogue, source="import", note=filename[:200])
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    counts = {
        "measures": len(catalogue["measures"]),
        "items": len(catalogue["items"]),
        "mappings": sum(len(m["measures"]) for m in catalogue["mappings"]),
    }
    return ImportResult(version=version, rows=rows, counts=counts)


__all__ = ["AGREED_COLUMNS", "COLUMNS", "CatalogueImportError", "ImportResult", "import_catalogue_file"]
