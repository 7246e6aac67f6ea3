"""Fixtures of the feedback tests: the feedback service over the rolled-back `db`, and a checking client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr

from shared.db.engine import Database
from shared.settings import Settings
from tests.builders import make_client
from tests.conftest import AppFactory, api_client
from tests.feedback.builders import CHECKING_DEPARTMENT

UPSTREAM = "https://upstream.test/credit"


@dataclass(frozen=True)
class Caller:
    client_id: uuid.UUID
    key: str
    api: httpx.AsyncClient


@pytest.fixture
def upstream_settings(test_settings: Settings) -> Settings:
    return test_settings.model_copy(
        update={
            "feedback_upstream_url": UPSTREAM,
            "feedback_upstream_token": SecretStr("upstream-token"),
            "outbox_max_attempts": 3,
            "outbox_max_retry_delay_seconds": 300.0,
        }
    )


@pytest.fixture
async def caller(db: Database, app_factory: AppFactory) -> AsyncIterator[Caller]:
    """The business system that makes the checks (scopes check and feedback)."""
    client_id, key = await make_client(db, scopes="check,feedback", department=CHECKING_DEPARTMENT)
    async with api_client(app_factory(db, "feedback"), key) as api:
        yield Caller(client_id, key, api)
