"""Settings, from arguments or environment variables (table in README).

Built explicitly by the CLI or the test that needs them; nothing reads the
environment at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from licensing_service.db_target import DbTarget, SqliteTarget, parse_db


class ConfigError(ValueError):
    """Settings that must not be run with (raised before anything starts)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LH_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)
    # A path or sqlite:///path (SQLite), or postgresql://... (db_target.py).
    db: DbTarget = SqliteTarget(Path("var/licensing.db"))
    workers: int = Field(default=1, ge=1, le=64)
    environment: Literal["development", "test", "staging", "production"] = "development"
    test_clock: bool = False
    # Comma-separated origins allowed by CORS; empty disables CORS headers.
    cors_origins: str = ""
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Per-connection bounds on both HTTP paths (api/http_limits.py): a slow or
    # stalled client is refused, not waited for.
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    body_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    trust_forwarded_for: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    rate_limit_ip: int = Field(default=30, ge=1)
    rate_limit_email: int = Field(default=10, ge=1)
    rate_limit_window_seconds: int = Field(default=600, ge=1)
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_open_seconds: float = Field(default=30.0, gt=0)
    # A database call at least this slow counts as a breaker failure; 0: off.
    breaker_slow_call_ms: int = Field(default=0, ge=0, le=60_000)
    # How long a unit of work waits on the database (SQLite's busy timeout, and
    # the bound on injected latency) before failing as unavailable.
    db_timeout_ms: int = Field(default=2000, ge=1, le=60_000)
    audit_flush_ms: int = Field(default=50, ge=1)
    # The inline accelerator (api/inline_http.py): synchronous routes answered
    # inside the HTTP protocol; false serves every request through ASGI.
    inline_http: bool = True

    resend_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("RESEND_API_KEY", "LH_RESEND_API_KEY")
    )
    resend_api_base: str = "https://api.resend.com"
    email_from: str = "POSPal Licensing <licensing@example.com>"
    # Where emails go without RESEND_API_KEY: a JSON-lines file (default beside the database).
    email_sink: Path | None = None
    email_poll_seconds: float = Field(default=1.0, gt=0)

    # Stripe. The unprefixed names are the seeds' (wrangler secrets).
    stripe_webhook_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("STRIPE_WEBHOOK_SECRET", "LH_STRIPE_WEBHOOK_SECRET"),
    )
    stripe_secret_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("STRIPE_SECRET_KEY", "LH_STRIPE_SECRET_KEY")
    )
    stripe_api_base: str = Field(
        default="https://api.stripe.com",
        validation_alias=AliasChoices("STRIPE_API_BASE", "LH_STRIPE_API_BASE"),
    )
    stripe_price_id: str | None = Field(
        default=None, validation_alias=AliasChoices("STRIPE_PRICE_ID", "LH_STRIPE_PRICE_ID")
    )
    price_cents: int = Field(default=2000, ge=1)
    price_currency: str = Field(default="eur", pattern=r"^[a-z]{3}$")
    checkout_success_url: str = "https://pospal.example/success?session_id={CHECKOUT_SESSION_ID}"
    checkout_cancel_url: str = "https://pospal.example/cancel"
    portal_return_url: str = "https://pospal.example/account"
    stripe_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    stripe_max_retries: int = Field(default=2, ge=0, le=10)
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=86400)
    webhook_lease_seconds: int = Field(default=60, ge=1)

    @field_validator("db", mode="before")
    @classmethod
    def _parse_db(cls, value: object) -> DbTarget:
        return parse_db(value)

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.environment == "production":
            if self.test_clock:
                raise ConfigError("--test-clock is refused when LH_ENVIRONMENT=production")
            if "*" in self.allowed_origins():
                raise ConfigError("LH_CORS_ORIGINS='*' is refused when LH_ENVIRONMENT=production")
        return self

    def webhook_secrets(self) -> list[str]:
        """Comma-separated: during a rotation both the old and the new secret verify."""
        if self.stripe_webhook_secret is None:
            return []
        raw = self.stripe_webhook_secret.get_secret_value()
        return [s.strip() for s in raw.split(",") if s.strip()]

    def allowed_origins(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def sink_path(self) -> Path:
        return self.email_sink or self.db.state_dir() / "emails.jsonl"
