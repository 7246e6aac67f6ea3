"""Fixtures of the check-api tests: the service over the rolled-back `db`, the demo catalogue, clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from shared.db.engine import Database
from tests.builders import load_catalogue, make_client
from tests.conftest import AppFactory, api_client

# DOMAIN.md §7.5 (synthetic codes)
BEIJING = "91110105MA01ABCD5F"  # LT01 + LT06 (legal representative 王某 linked)
BEIJING_ORG = "MA01ABCD5"
WANG = "110105199003071239"  # 王某, linked person on BEIJING's LT06 entry
SHANGHAI = "92310104L12345674R"  # LT07 watch
SHANGHAI_REG = "310104000123453"  # its 工商注册号 (alias)
SHENZHEN = "52440305MJL000016T"  # LT03 under objection
HANGZHOU = "123301064700012356"  # nothing
CHENGDU = "91510100201908154K"  # LT08 red + LT02 black
GUANGZHOU = "91440104MA59XK3P20"  # LT02 expired 425 days ago
CHEN = "310104198512242469"  # 陈某, natural person with LT01
CHEN_15 = "310104851224246"
OTHER_PERSON = "330106198801011006"


@pytest.fixture
def app(db: Database, app_factory: AppFactory) -> FastAPI:
    return app_factory(db, "check-api")


@pytest.fixture
async def catalogue(db: Database) -> int | None:
    return await load_catalogue(db)


@dataclass(frozen=True)
class Keys:
    platform: str  # any department, check scope, no pii:read
    pii: str  # any department, check + pii:read
    finance: str  # 财政局 department only (item I07's department), check
    other: str  # another any-department client (object access)


@pytest.fixture
async def keys(db: Database) -> Keys:
    _, platform = await make_client(db, scopes="check", any_department=True, name="platform")
    _, pii = await make_client(db, scopes="check,pii:read", any_department=True, name="platform-pii")
    _, finance = await make_client(
        db, scopes="check", department="财政局(政府采购监管) / 采购人", name="finance"
    )
    _, other = await make_client(db, scopes="check", any_department=True, name="other")
    return Keys(platform, pii, finance, other)


@pytest.fixture
async def api(app: FastAPI, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    """The check-api with the platform key (no pii:read)."""
    async with api_client(app, keys.platform) as client:
        yield client


def check_request(item: str, code: str, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "item_code": item,
        "subject": {"code": code},
        "business_ref": "SP-TEST-1",
        "operator": "clerk-1",
    }
    body.update(extra)
    return body
