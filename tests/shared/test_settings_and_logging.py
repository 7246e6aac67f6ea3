"""Settings refuse unsafe production defaults; logs never carry a personal ID number in clear."""

from __future__ import annotations

import io
import json
import logging

import pytest
from pydantic import ValidationError

from shared.logging import configure_logging, get_logger, mask_code_details, mask_text
from shared.settings import Settings, check_outbound_url


def test_development_defaults_are_accepted() -> None:
    settings = Settings(environment="development")
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.feedback_due_days == 30
    assert settings.snapshot_max_end_share == 0.2
    assert settings.outbox_max_attempts == 20
    assert settings.outbox_max_retry_delay_seconds == 300


def test_feedback_rides_out_a_day_of_downtime_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.outbox_max_attempts == 20  # subscription callbacks: the contract's default
    cap = settings.outbox_max_retry_delay_seconds
    # The shortest possible wait before each retry: backoff 1, 2, 4 … capped, jittered down to half.
    shortest = sum(min(cap, 2.0 ** (n - 1)) / 2 for n in range(1, settings.feedback_max_attempts))
    assert shortest >= 24 * 3600
    monkeypatch.setenv("ONECHECK_FEEDBACK_MAX_ATTEMPTS", "7")
    assert Settings().feedback_max_attempts == 7


def test_production_refuses_the_embedded_database_and_the_development_key() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(environment="production")
    assert "ONECHECK_DATABASE_URL" in str(raised.value)
    assert "ONECHECK_PII_HMAC_KEY" in str(raised.value)
    ok = Settings(
        environment="production", database_url="postgresql+asyncpg://u@db/onecheck", pii_hmac_key="s" * 40
    )
    assert ok.environment == "production"


def test_production_refuses_a_plain_http_upstream() -> None:
    with pytest.raises(ValidationError, match="https"):
        Settings(
            environment="production",
            database_url="postgresql+asyncpg://u@db/onecheck",
            pii_hmac_key="s" * 40,
            feedback_upstream_url="http://platform.example/api",
        )


def test_comma_separated_hosts_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONECHECK_CALLBACK_HTTP_HOSTS", "receiver.local, 10.0.0.5")
    assert Settings().callback_http_hosts == ["receiver.local", "10.0.0.5"]


@pytest.mark.parametrize(
    "url",
    ["ftp://x/y", "http://169.254.169.254/latest/meta-data", "http://metadata.google.internal/", "nohost"],
)
def test_outbound_urls_that_must_never_be_called_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"refused|not an http"):
        check_outbound_url(url)


def test_mask_text_masks_id_shaped_numbers_only() -> None:
    assert mask_text("subject 110105199003071239 listed") == "subject 110105********1239 listed"
    assert mask_text("legacy 110105900307123") == "legacy 110105*****7123"
    assert mask_text("uscc 91110105MA01ABCD5F stays") == "uscc 91110105MA01ABCD5F stays"
    assert mask_text("id 11010819880808009X") == "id 110108********009X"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "subject.code: birth date '19801301' (positions 7-14) is not a real date",
            "subject.code: birth date '********' (positions 7-14) is not a real date",
        ),
        (
            "linked_persons[0].code: birth date '801301' (YYMMDD, positions 7-12 of the legacy number) is not a"
            " real date",
            "linked_persons[0].code: birth date '******' (YYMMDD, positions 7-12 of the legacy number) is not a"
            " real date",
        ),
        (
            "subject.code: birth date 2099-01-01 is after today (2026-11-23)",
            "subject.code: birth date ****-**-** is after today (****-**-**)",
        ),
        ("check character should be 'X', got '3'", "check character should be 'X', got '*'"),
        ("positions 3-8 (administrative division) must be digits, got '44A703'", None),
        ("id 110105199003071239 in a message", "id 110105********1239 in a message"),
        ("required field subject.code is missing", "required field subject.code is missing"),
        ("text longer than 4,000 characters", "text longer than 4,000 characters"),
    ],
)
def test_mask_code_details(text: str, masked: str | None) -> None:
    result = mask_code_details(text)
    if masked is not None:
        assert result == masked
    assert "44A703" not in result


def test_json_logs_mask_ids_in_messages_and_fields() -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", json=True)
    handler = logging.getLogger().handlers[0]
    handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        get_logger("t").info(
            "checked 310104198512242469", subject="310104198512242469", nested={"c": ["110105199003071239"]}
        )
        logging.getLogger("stdlib").warning("stdlib 440305200002290176")
    finally:
        configure_logging("WARNING", json=True)
    text = stream.getvalue()
    for raw in ("310104198512242469", "110105199003071239", "440305200002290176"):
        assert raw not in text
    first = json.loads(text.splitlines()[0])
    assert first["subject"] == "310104********2469"
    assert first["event"] == "checked 310104********2469"
