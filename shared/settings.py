"""OneCheck settings: environment variables with the prefix ``ONECHECK_``.

The names written in the public contract (``ONECHECK_DATABASE_URL``, ``ONECHECK_MAX_BODY_BYTES`` …) are fixed;
the rest are ours. ``get_settings()`` builds them once per process; tests build their own ``Settings``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.outbound import check_outbound_url

__all__ = ["DEV_PII_HMAC_KEY", "Settings", "check_outbound_url", "get_settings"]

# Only for development and tests: production refuses to start with it (see `_refuse_unsafe_production`).
DEV_PII_HMAC_KEY = "onecheck-development-pii-key-do-not-use-in-production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONECHECK_", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    # Unset: an embedded PostgreSQL under `home` (shared/db/embedded.py).
    database_url: str | None = None
    home: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("onecheck")))
    db_pool_min_size: int = Field(default=2, ge=1)
    db_pool_max_size: int = Field(default=10, ge=1)
    db_statement_timeout_ms: int = Field(default=15_000, ge=0)

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    rate_limit_per_minute: int = Field(default=0, ge=0)
    # How long a verified API key stays cached in a process; a revoked key may work this long.
    auth_cache_seconds: float = Field(default=10.0, ge=0)

    feedback_due_days: int = Field(default=30, ge=0)
    snapshot_max_end_share: float = Field(default=0.2, ge=0, le=1)
    import_dir: Path = Field(default_factory=lambda: Path.cwd() / "imports")
    callback_http_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    outbox_max_attempts: int = Field(default=20, ge=1)
    # Feedback the upstream could not take (down, timing out, 408/425/429/5xx) keeps being retried this often:
    # at the default 300 s cap, jittered to 150–300 s, 1000 attempts ride out at least 41 hours of downtime.
    feedback_max_attempts: int = Field(default=1000, ge=1)
    # A claimed message is the relay's for this long: sent (or given back) within it, else another relay
    # takes it over (a relay killed mid-batch). Longer than a send may take (30 s).
    outbox_lease_seconds: float = Field(default=120.0, ge=5)
    outbox_max_retry_delay_seconds: float = Field(default=300.0, gt=0)
    outbox_relay_enabled: bool = True
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    feedback_upstream_url: str | None = None
    feedback_upstream_token: SecretStr | None = None

    sync_scheduler_enabled: bool = True
    sync_http_timeout_seconds: float = Field(default=30.0, gt=0)
    sync_run_deadline_seconds: float = Field(default=3600.0, gt=0)
    sync_max_page_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    sync_max_retries: int = Field(default=5, ge=0)
    # Upstream hosts a source may point at; empty: any host except link-local/metadata addresses.
    sync_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Loopback destinations (127.0.0.0/8, ::1, localhost) for sources, callbacks and the feedback upstream:
    # refused unless set (development, tests, a local sidecar). shared/outbound.py has the whole policy.
    outbound_allow_loopback: bool = False

    pii_hmac_key: SecretStr = SecretStr(DEV_PII_HMAC_KEY)
    log_level: str = "INFO"
    log_json: bool = True
    access_log: bool = True

    @field_validator("callback_http_hosts", "sync_allowed_hosts", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        # Operators write `ONECHECK_CALLBACK_HTTP_HOSTS=a,b`; pydantic-settings would want JSON.
        if isinstance(value, str) and not value.strip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("feedback_upstream_url")
    @classmethod
    def _strip_upstream_url(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _check_upstream_url(self) -> Settings:
        if self.feedback_upstream_url:
            try:
                check_outbound_url(self.feedback_upstream_url, allow_loopback=self.outbound_allow_loopback)
            except ValueError as exc:
                raise ValueError(f"ONECHECK_FEEDBACK_UPSTREAM_URL: {exc}") from None
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment != "production":
            return self
        problems = []
        if self.database_url is None:
            problems.append("ONECHECK_DATABASE_URL must name a managed PostgreSQL in production")
        if self.pii_hmac_key.get_secret_value() == DEV_PII_HMAC_KEY or len(self.pii_hmac_key) < 32:
            problems.append("ONECHECK_PII_HMAC_KEY must be set to a secret of at least 32 characters")
        if self.feedback_upstream_url and not self.feedback_upstream_url.startswith("https://"):
            problems.append("ONECHECK_FEEDBACK_UPSTREAM_URL must be https in production")
        if problems:
            raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self


@functools.cache
def get_settings() -> Settings:
    return Settings()
