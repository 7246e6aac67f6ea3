"""`file` sources: CSV / XLSX with the template's Chinese headers, applied like a snapshot of the source."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from pathlib import Path

import openpyxl
import pytest

from services.list_sync.records import HEADERS, REQUIRED_HEADERS, read_file_rows
from shared.db.engine import Database
from shared.settings import Settings
from tests.list_sync.helpers import add_source, citizen_id, entries_of, fetch, run, uscc

TEMPLATE = Path(__file__).parents[2] / "shared" / "data" / "entries-template.csv"
HEADER = list(HEADERS)


def row(source_id: str, index: int, **cells: str) -> list[str]:
    today = dt.date.today()
    values = {
        "名单类型编码": "LT01",
        "主体名称": f"江门市文件{index}号有限公司",
        "主体代码": uscc(1000 + index),
        "主体代码类型": "uscc",
        "法定代表人姓名": "",
        "法定代表人证件号码": "",
        "列入事由": "有履行能力而拒不履行生效法律文书确定义务",
        "认定文号": f"(2026)粤0703执{index}号",
        "认定部门": "江门市蓬江区人民法院",
        "列入日期": (today - dt.timedelta(days=30)).isoformat(),
        "有效期至": "",
        "状态": "active",
        "来源记录编号": source_id,
    }
    values.update(cells)
    return [values[h] for h in HEADER]


def csv_bytes(rows: list[list[str]], header: list[str] = HEADER, encoding: str = "utf-8-sig") -> bytes:
    import csv

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def xlsx_bytes(rows: list[list[str]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER)
    for r in rows:
        sheet.append(r)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.fixture
def folder(test_settings: Settings) -> Path:
    path = test_settings.import_dir / uuid.uuid4().hex
    path.mkdir(parents=True)
    return path


async def _file_source(db: Database, folder: Path, name: str, body: bytes, settings: Settings) -> str:
    path = folder / name
    path.write_bytes(body)
    relative = str(path.relative_to(settings.import_dir))
    await add_source(db, "file-" + folder.name[:8], "file", path=relative)
    return "file-" + folder.name[:8]


def test_the_template_headers_are_ours() -> None:
    header = TEMPLATE.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header == HEADER
    assert set(REQUIRED_HEADERS) <= set(header)


async def test_a_csv_file_with_bad_rows(
    db: Database, catalogue: None, sync_settings: Settings, folder: Path
) -> None:
    rows = [
        row("SRC-1", 1, 法定代表人姓名="张三", 法定代表人证件号码=citizen_id(3)),
        row("SRC-2", 2, 主体代码=uscc(2)[:17] + "0"),  # bad check character
        row("SRC-3", 3, 列入日期="2026/01/01"),
        row("SRC-4", 4, 有效期至="2099-12-31", 名单类型编码="LT04"),
        ["", "", "", "", "", "", "", "", "", "", "", "", ""],  # a blank line is no record
        row("SRC-5", 5, 状态=""),
        row("SRC-6", 6, 法定代表人姓名="李四"),  # a legal representative without an id number
    ]
    name = await _file_source(db, folder, "court.csv", csv_bytes(rows), sync_settings)
    view = await run(db, sync_settings, name)
    assert view["status"] == "succeeded", view
    assert view["counts"]["received"] == 6
    assert (view["counts"]["inserted"], view["counts"]["quarantined"]) == (2, 4)
    quarantined = await fetch(db, "SELECT line, rule, raw FROM sync_quarantine ORDER BY line")
    assert [(q["line"], q["rule"]) for q in quarantined] == [
        (3, "uscc.check_char"),
        (4, "date.format"),
        (7, "required.status"),
        (8, "required.linked_persons[0].code"),
    ]
    assert quarantined[0]["raw"]["来源记录编号"] == "SRC-2"  # the row as the file has it
    stored = await entries_of(db, name)
    assert stored["SRC-1"]["linked_persons"] == [
        {"role": "legal_representative", "code": citizen_id(3), "name": "张三"}
    ]
    assert stored["SRC-1"]["expires_on"] is not None  # empty 有效期至: the list type's default validity
    assert stored["SRC-4"]["expires_on"] == dt.date(2099, 12, 31)
    assert stored["SRC-1"]["upstream_updated_at"] is None
    [page_row] = await fetch(db, "SELECT seq, cursor, size_bytes FROM sync_pages")
    assert page_row["cursor"].endswith("court.csv")


async def test_a_file_is_the_sources_complete_listing(
    db: Database, catalogue: None, sync_settings: Settings, folder: Path
) -> None:
    path = folder / "list.csv"
    path.write_bytes(csv_bytes([row(f"SRC-{i}", i) for i in range(1, 11)]))
    await add_source(db, "file-list", "file", path=str(path.relative_to(sync_settings.import_dir)))
    assert (await run(db, sync_settings, "file-list"))["counts"]["inserted"] == 10
    path.write_bytes(csv_bytes([row(f"SRC-{i}", i) for i in range(1, 10)]))  # SRC-10 gone
    view = await run(db, sync_settings, "file-list")
    assert view["counts"]["unchanged"] == 9
    assert view["counts"]["ended"] == 1
    assert (await entries_of(db, "file-list"))["SRC-10"]["end_reason"] == "removed"
    path.write_bytes(csv_bytes([row(f"SRC-{i}", i) for i in range(1, 3)]))
    assert (await run(db, sync_settings, "file-list"))["status"] == "held"


async def test_an_xlsx_file(db: Database, catalogue: None, sync_settings: Settings, folder: Path) -> None:
    rows = [row("X-1", 1), row("X-2", 2, 主体代码="bad")]
    name = await _file_source(db, folder, "court.xlsx", xlsx_bytes(rows), sync_settings)
    view = await run(db, sync_settings, name)
    assert (view["counts"]["inserted"], view["counts"]["quarantined"]) == (1, 1)
    [q] = await fetch(db, "SELECT line, rule FROM sync_quarantine")
    assert (q["line"], q["rule"]) == (3, "uscc.length")


def test_xlsx_cells_become_text() -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER)
    values = row("X-1", 1)
    values[HEADER.index("列入日期")] = dt.datetime(2026, 3, 1)  # type: ignore[call-overload]
    values[HEADER.index("来源记录编号")] = 12345.0  # type: ignore[call-overload]
    sheet.append(values)
    out = io.BytesIO()
    book.save(out)
    [(line, cells)] = list(read_file_rows(out.getvalue()))
    assert line == 2
    assert cells["列入日期"] == "2026-03-01"
    assert cells["来源记录编号"] == "12345"


async def test_a_gbk_csv(db: Database, catalogue: None, sync_settings: Settings, folder: Path) -> None:
    name = await _file_source(
        db, folder, "gbk.csv", csv_bytes([row("G-1", 1)], encoding="gb18030"), sync_settings
    )
    view = await run(db, sync_settings, name)
    assert view["counts"]["inserted"] == 1
    assert (await entries_of(db, name))["G-1"]["subject_name"] == "江门市文件1号有限公司"


async def test_the_contract_template_row_is_read(
    db: Database, catalogue: None, sync_settings: Settings, folder: Path
) -> None:
    """The template's example codes are illustrative (check characters not computed): quarantined, not lost."""
    name = await _file_source(db, folder, "template.csv", TEMPLATE.read_bytes(), sync_settings)
    view = await run(db, sync_settings, name)
    assert view["counts"]["received"] == 1
    assert view["counts"]["inserted"] + view["counts"]["quarantined"] == 1


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (csv_bytes([], header=HEADER[:-1]), "FileFormatError: missing column(s): 来源记录编号"),
        (b"", "FileFormatError: the file is empty"),
        (b"PK\x03\x04garbage", "FileFormatError: not a readable XLSX workbook"),
        ("名单类型编码\n".encode("utf-16"), "FileFormatError: the file is neither UTF-8 nor GB18030 text"),
    ],
)
async def test_unreadable_files_fail_the_run(
    db: Database, catalogue: None, sync_settings: Settings, folder: Path, body: bytes, error: str
) -> None:
    name = await _file_source(db, folder, "bad.csv", body, sync_settings)
    view = await run(db, sync_settings, name)
    assert view["status"] == "failed"
    assert view["error"].startswith(error)
    assert await entries_of(db, name) == {}


async def test_a_missing_file_and_an_escaping_symlink(
    db: Database, catalogue: None, sync_settings: Settings, folder: Path, tmp_path: Path
) -> None:
    await add_source(db, "file-missing", "file", path=f"{folder.name}/nope.csv")
    view = await run(db, sync_settings, "file-missing")
    assert view["error"] == f"SourceFileError: no file '{folder.name}/nope.csv' in ONECHECK_IMPORT_DIR"
    outside = tmp_path / "secret.csv"
    outside.write_bytes(csv_bytes([row("S-1", 1)]))
    (folder / "link.csv").symlink_to(outside)
    await add_source(db, "file-link", "file", path=f"{folder.name}/link.csv")
    view = await run(db, sync_settings, "file-link")
    assert view["error"] == "SourceFileError: path leads outside ONECHECK_IMPORT_DIR"


async def test_a_file_over_the_cap(
    db: Database, catalogue: None, sync_settings: Settings, folder: Path
) -> None:
    settings = sync_settings.model_copy(update={"sync_max_page_bytes": 100})
    name = await _file_source(db, folder, "big.csv", csv_bytes([row("B-1", 1)]), settings)
    view = await run(db, settings, name)
    assert view["error"].startswith("PageTooLarge: file of ")
