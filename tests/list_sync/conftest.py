"""Fixtures of the list-sync tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stamina

from shared.db.engine import Database
from shared.settings import Settings
from tests.builders import load_catalogue


@pytest.fixture(autouse=True)
def _no_backoff() -> Iterator[None]:
    """stamina without sleeping; the attempt count stays the configured one (cap)."""
    stamina.set_testing(True, attempts=1000, cap=True)
    yield
    stamina.set_testing(False)


@pytest.fixture
async def catalogue(db: Database) -> None:
    await load_catalogue(db)


@pytest.fixture
def sync_settings(test_settings: Settings) -> Settings:
    """Test settings with few retries, so failure modes finish quickly."""
    return test_settings.model_copy(update={"sync_max_retries": 2})
