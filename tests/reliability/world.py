"""A small, realistic world for the reliability tests: two clients of two departments, an entry, a check
that matched it, and valid bodies for every POST route (so that a refusal in a test is the fault under test,
never a bad body).

Everything is made through the public API where the API can make it, over the rolled-back `db` fixture.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.codes import citizen_id_check_char
from shared.db.engine import Database
from shared.ids import uuid7
from shared.lifecycle import business_date
from tests.builders import auth, load_catalogue, make_client, make_entry

OWNER_DEPARTMENT = "江门市人民法院"
OTHER_DEPARTMENT = "江门市财政局"
ORG_CODE = "91110105MA01ABCD5F"
ORG_NAME = "北京某建设工程有限公司"
BAD_KEY = "oc_" + "x" * 43


def citizen_id(first17: str) -> str:
    """A synthetic citizen id with a valid GB 11643 check character (so a leak regex would match it)."""
    assert len(first17) == 17
    return first17 + citizen_id_check_char(first17)


def fresh_check_id() -> str:
    """An id shaped exactly like a real check id (UUIDv7 of now), for "no such check" probes."""
    return str(uuid7(dt.datetime.now(dt.UTC)))


def check_body(**override: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "item_code": "I01",
        "subject": {"code": ORG_CODE, "name": ORG_NAME, "kind": "uscc"},
        "business_ref": "SP-2026-000123",
        "operator": "clerk-017",
    }
    body.update(override)
    return body


def batch_body(**override: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "item_code": "I01",
        "business_ref": "SP-2026-000124",
        "operator": "clerk-017",
        "subjects": [{"code": ORG_CODE, "name": ORG_NAME}],
    }
    body.update(override)
    return body


def feedback_body(**override: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "decision": "approved_with_conditions",
        "measures": [{"code": "M05", "status": "applied"}],
        "operator": "clerk-018",
    }
    body.update(override)
    return body


def entry_body(**override: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "list_type": "LT01",
        "subject": {"code": "91440104MA59XK3P20", "name": "广州某贸易有限公司", "kind": "uscc"},
        "reason": "有履行能力而拒不履行生效法律文书确定义务",
        "decision_no": "（2026）粤0703执1号",
        "listed_on": (business_date() - dt.timedelta(days=3)).isoformat(),
    }
    body.update(override)
    return body


def event_body(**override: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "objection", "basis": "主体提出异议", "operator": "judge-3"}
    body.update(override)
    return body


def source_body(**override: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "provincial-feed",
        "kind": "feed",
        "base_url": "https://platform.example/api",
    }
    body.update(override)
    return body


def subscription_body(**override: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"callback_url": "https://hooks.example/onecheck", "list_kinds": ["black"]}
    body.update(override)
    return body


@dataclass
class World:
    owner_id: uuid.UUID
    owner_key: str
    other_id: uuid.UUID
    other_key: str
    entry_id: str
    check_id: str
    run_id: str
    subscription_id: str
    extras: dict[str, Any] = field(default_factory=dict)

    def ids(self) -> dict[str, str]:
        return {
            "check_id": self.check_id,
            "entry_id": self.entry_id,
            "run_id": self.run_id,
            "subscription_id": self.subscription_id,
        }


async def build_world(db: Database, api: httpx.AsyncClient) -> World:
    """Two clients with every scope, of two departments; the owner's department issued an LT01 entry on
    `ORG_CODE`, and the owner's check of it (item I01) triggered M05 and M22."""
    await load_catalogue(db)
    owner_id, owner_key = await make_client(db, department=OWNER_DEPARTMENT, any_department=True)
    other_id, other_key = await make_client(db, department=OTHER_DEPARTMENT, any_department=True)
    entry = await make_entry(db, code=ORG_CODE, name=ORG_NAME, issuing_department=OWNER_DEPARTMENT)
    checked = await api.post("/v1/checks", json=check_body(), headers=auth(owner_key))
    assert checked.status_code == 200, checked.text
    assert [m["code"] for m in checked.json()["measures"]] == ["M05", "M22"], checked.text
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO sync_sources (name, kind, base_url) VALUES ('rel-src', 'feed', 'https://p.example')"
        )
        run_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO sync_runs (run_id, source, status, finished_at) VALUES ($1, 'rel-src', 'succeeded', now())",
            run_id,
        )
    subscribed = await api.post("/v1/subscriptions", json=subscription_body(), headers=auth(owner_key))
    assert subscribed.status_code == 201, subscribed.text
    return World(
        owner_id=owner_id,
        owner_key=owner_key,
        other_id=other_id,
        other_key=other_key,
        entry_id=str(entry),
        check_id=checked.json()["check_id"],
        run_id=str(run_id),
        subscription_id=subscribed.json()["subscription_id"],
    )


async def row_counts(db: Database) -> dict[str, int]:
    """Rows per public table (the check partitions through their parent)."""
    async with db.connection() as conn:
        tables = [
            r["tablename"]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
            if not r["tablename"].startswith("checks_")
        ]
        return {t: int(await conn.fetchval(f'SELECT count(*) FROM "{t}"')) for t in tables}
