"""docs/demo-outcomes.md, asserted cell by cell against the service on the demo data (DOMAIN.md §7)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.db.engine import Database
from tests.builders import load_catalogue, load_demo_subjects
from tests.check_api.conftest import check_request

DOC = Path(__file__).resolve().parents[2] / "docs" / "demo-outcomes.md"
ITEMS = [f"I{n:02d}" for n in range(1, 13)]
_CELL = re.compile(r"^(?P<outcome>[a-z]+)(?::\s*(?P<measures>[^;]+))?(?P<rest>(?:;\s*[^;]+)*)$")


def expected_table() -> list[dict[str, Any]]:
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 + len(ITEMS) or cells[0] in ("subject", "---"):
            continue
        rows.append(
            {
                "name": cells[0],
                "code": cells[1],
                "clean": int(cells[2]),
                "cells": dict(zip(ITEMS, cells[3:], strict=True)),
            }
        )
    return rows


def parse_cell(cell: str) -> dict[str, Any]:
    match = _CELL.match(cell)
    assert match, cell
    parsed: dict[str, Any] = {
        "outcome": match["outcome"],
        "measures": _codes(match["measures"] or ""),
        "suspended": [],
        "withheld": [],
    }
    for part in filter(None, (p.strip() for p in match["rest"].split(";"))):
        label, _, codes = part.partition(" ")
        assert label in ("suspended", "withheld"), cell
        parsed[label] = _codes(codes)
    return parsed


def _codes(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def test_the_table_covers_every_demo_subject_and_item() -> None:
    rows = expected_table()
    assert len(rows) == 8  # the seven subjects of §7.5 and the legal representative named on an entry
    assert all(len(r["cells"]) == 12 for r in rows)


@pytest.mark.usefixtures("catalogue")
async def test_demo_outcomes(db: Database, api: httpx.AsyncClient) -> None:
    await load_demo_subjects(db)
    mismatches = []
    for row in expected_table():
        for item, cell in row["cells"].items():
            response = await api.post("/v1/checks", json=check_request(item, row["code"]))
            assert response.status_code == 200, response.text
            body = response.json()
            actual = {
                "outcome": body["outcome"],
                "measures": [m["code"] for m in body["measures"]],
                "suspended": [m["code"] for m in body["suspended_measures"]],
                "withheld": [m["code"] for m in body["withheld_incentives"]],
            }
            if actual != parse_cell(cell):
                mismatches.append((row["name"], item, cell, actual))
            if body["clean_record_years"] != row["clean"]:
                mismatches.append((row["name"], item, f"clean {row['clean']}", body["clean_record_years"]))
            # feedback_due_on exactly when measures is not empty
            assert (body["feedback_due_on"] is None) == (not body["measures"])
    assert mismatches == []


async def test_the_demo_catalogue_is_what_the_table_assumes(db: Database) -> None:
    assert await load_catalogue(db) is not None
    async with db.connection() as conn:
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM items) AS items, (SELECT count(*) FROM measures) AS measures, "
            "(SELECT count(*) FROM list_types) AS list_types"
        )
    assert dict(counts) == {"items": 12, "measures": 33, "list_types": 9}
