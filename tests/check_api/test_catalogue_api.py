"""Catalogue reads: items, one item with its mapping, list types, measures, memoranda (any valid key)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from shared.db.engine import Database
from tests.builders import make_client
from tests.conftest import api_client

pytestmark = pytest.mark.usefixtures("catalogue")


@pytest.fixture
async def reader(db: Database, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # Any valid key reads the catalogue, whatever its scopes.
    _, key = await make_client(db, scopes="stats:read", department="某部门")
    async with api_client(app, key) as client:
        yield client


async def test_items(reader: httpx.AsyncClient) -> None:
    body = (await reader.get("/v1/items")).json()
    assert [i["code"] for i in body["items"]] == [f"I{n:02d}" for n in range(1, 13)]
    assert body["items"][6] == {
        "code": "I07",
        "name": "政府采购供应商资格审查",
        "department": "财政局(政府采购监管) / 采购人",
        "section": "政府采购科",
        "type": "其他权力/公共服务",
        "system": "政府采购",
    }


async def test_one_item_with_its_mapping(reader: httpx.AsyncClient) -> None:
    body = (await reader.get("/v1/items/I01")).json()
    missing = await reader.get("/v1/items/I99")
    assert body["code"] == "I01"
    assert body["department"] == "住房和城乡建设局"
    mappings = {m["list_type"]: m["measures"] for m in body["mappings"]}
    assert sorted(mappings) == ["LT01", "LT05", "LT06", "LT08", "LT09"]
    assert [(m["code"], m["targets"]) for m in mappings["LT06"]] == [
        ("M05", ["entity", "responsible_person"]),
        ("M11", ["entity", "responsible_person"]),
    ]
    # The targets of the mapping (DOMAIN.md §7.4: U,P), wider here than the measure's own (M05: entity).
    assert mappings["LT06"][0]["content"] == "从严审核行政许可申请，不适用告知承诺、容缺受理"
    assert missing.status_code == 404
    assert missing.json()["code"] == "unknown_item"


async def test_list_types(reader: httpx.AsyncClient) -> None:
    body = (await reader.get("/v1/list-types")).json()
    assert len(body["list_types"]) == 9
    lt01 = body["list_types"][0]
    assert {k: lt01[k] for k in ("code", "name", "kind", "issuing_authority", "default_validity_days")} == {
        "code": "LT01",
        "name": "失信被执行人",
        "kind": "black",
        "issuing_authority": "人民法院",
        "default_validity_days": 730,
    }
    assert {lt["code"]: lt["kind"] for lt in body["list_types"]}["LT07"] == "watch"


async def test_measures(reader: httpx.AsyncClient) -> None:
    body = (await reader.get("/v1/measures")).json()
    assert len(body["measures"]) == 33
    m14 = next(m for m in body["measures"] if m["code"] == "M14")
    assert m14["targets"] == ["responsible_person", "natural_person"]
    assert m14["memorandum"] == "关于对失信被执行人实施联合惩戒的合作备忘录"
    assert m14["kind"] == "penalty"


async def test_memoranda(reader: httpx.AsyncClient) -> None:
    body = (await reader.get("/v1/memoranda")).json()
    assert [m["code"] for m in body["memoranda"]] == ["MEMO-SXBZXR", "MEMO-ZBTB"]
    assert body["memoranda"][0]["doc_no"] == "发改财金〔2016〕141号"


async def test_the_catalogue_needs_a_valid_key(app: FastAPI) -> None:
    async with api_client(app) as api:
        for path in ("/v1/items", "/v1/items/I01", "/v1/list-types", "/v1/measures", "/v1/memoranda"):
            assert (await api.get(path)).status_code == 401
    async with api_client(app, "oc_unknown") as api:
        assert (await api.get("/v1/items")).status_code == 401
