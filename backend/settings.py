"""The one settings object of the project, read from the environment and a `.env` file.

It lives in `backend/` because every package may read it (dependencies point one way:
bot -> actions -> backend), and actions also run inside a plain rasa_sdk action server.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Service configuration. Secrets come from the environment only, never from files in the repo."""

    # hide_input_in_errors: a validation error must not echo the input, which holds secrets.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", hide_input_in_errors=True
    )

    database_url: str = Field(
        default="sqlite+aiosqlite:///var/bot.db",
        description="SQLAlchemy async URL; SQLite by default, postgresql+asyncpg:// in production.",
    )
    # PostgreSQL connections per worker process: `serve --workers N` opens up to
    # N x (size + overflow), which must stay under the server's max_connections (default 100).
    database_pool_size: int = Field(default=15, ge=1, description="Connections each worker keeps open (PostgreSQL).")
    database_max_overflow: int = Field(default=5, ge=0, description="Extra connections a worker may open at a peak.")
    database_pool_recycle_seconds: int = Field(
        default=1800, ge=60, description="A pooled connection older than this is replaced before use."
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL; unset means in-memory tracker and lock stores."
    )
    project_dir: Path = Field(default=PROJECT_ROOT, description="Where domain.yml and data/ live.")
    models_dir: Path | None = Field(default=None, description="Trained NLU models (default: PROJECT_DIR/models).")
    hotline: str = Field(default="1900 1006", description="Customer-care hotline shown on fallback.")
    nlu_test_data: Path | None = Field(
        default=None, description="Held-out NLU file the quality gate evaluates on (default: tests/data/nlu_test.yml)."
    )
    nlu_inbox_threshold: float = Field(
        default=0.5, ge=0, le=1, description="Messages whose top intent scores below this go to the NLU inbox."
    )
    nlu_watch_seconds: float = Field(
        default=1.0, gt=0, description="How often a worker checks the database for a newly activated model "
        "(with Redis it is told at once and checks every 10 s as well)."
    )
    staff_api_token: SecretStr | None = Field(
        default=None, description="Bearer token of the staff HTTP API (/api/...); unset = API off."
    )
    url_signing_secret: SecretStr | None = Field(
        default=None,
        description="Signs links the bot hands out (consumption charts); random per process when "
        "unset, so set it when several workers serve the same links.",
    )
    handoff_hours: str = Field(
        default="07:00-21:00", description="When agents work, HH:MM-HH:MM on the Viet Nam clock."
    )
    handoff_days: str = Field(default="0-6", description="Working days, Monday = 0, e.g. '0-4' or '0-5,6'.")
    verification_max_attempts: int = 3
    # Across codes from one chat, and across chats for one code (enumeration and guessing).
    verification_chat_failures_per_hour: int = 10
    verification_code_failures_per_hour: int = 20
    verification_lock_minutes: int = 15
    transcript_retention_days: int = Field(
        default=365,
        ge=0,
        description="Conversation events and handoff transcripts older than this are deleted by "
        "`python -m bot privacy purge` (run it daily); 0 keeps them forever.",
    )
    lock_lifetime_seconds: float = 60.0
    log_level: str = "INFO"
    log_json: bool = False
    metrics_token: SecretStr | None = Field(
        default=None, description="Bearer token GET /metrics requires (bot/metrics.py); unset = open."
    )

    # Payments (backend/payments). The secrets are SecretStr so that they never show in a repr,
    # a log line or an error message.
    payment_gateway: Literal["sandbox", "vnpay"] = Field(
        default="sandbox",
        description="'sandbox' (built-in test gateway, no money moves) or 'vnpay' (real VNPay).",
    )
    vnpay_tmn_code: str | None = Field(default=None, description="VNPay merchant (terminal) code.")
    vnpay_hash_secret: SecretStr | None = Field(
        default=None, description="VNPay HMAC-SHA512 secret; from the environment only."
    )
    vnpay_payment_url: str = "https://sandbox.vnpayment.vn/paymentv2/vpcpay.html"
    vnpay_ipn_allowed_ips: str = Field(
        default="",
        description="Comma-separated addresses or networks VNPay's IPN may come from; empty = any "
        "(the signature is checked either way).",
    )
    public_base_url: str = Field(
        default="http://127.0.0.1:5005",
        description="Where customers' browsers reach this service (return and sandbox pages).",
    )
    payment_link_minutes: int = Field(default=15, ge=1, le=24 * 60)
    sandbox_payment_secret: SecretStr | None = Field(
        default=None,
        description="Signing secret of the sandbox gateway; random per process when unset, "
        "so it must be set when several worker processes serve the pages.",
    )

    # Messaging channels (bot/channels). A channel whose token is unset is off: its webhook
    # answers 404 and no worker sends for it. credentials.yml may supply the same values.
    telegram_bot_token: SecretStr | None = Field(
        default=None, description="Telegram bot token from @BotFather; unset = Telegram off."
    )
    telegram_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Secret Telegram echoes in X-Telegram-Bot-Api-Secret-Token (1-256 of "
        "A-Z a-z 0-9 _ -); webhook requests are refused while it is unset.",
    )
    telegram_api_base_url: str = Field(
        default="https://api.telegram.org/bot",
        description="PTB's base_url (the token is appended); tests point it at a local fake.",
    )
    zalo_app_id: str | None = Field(default=None, description="Zalo app id (developers.zalo.me).")
    zalo_app_secret: SecretStr | None = Field(
        default=None, description="Zalo app secret key: the secret_key header of token refreshes."
    )
    zalo_oa_secret_key: SecretStr | None = Field(
        default=None, description="OA secret key that signs webhook events (X-ZEvent-Signature)."
    )
    zalo_access_token: SecretStr | None = Field(
        default=None, description="OA access token (first one; later ones live in the database)."
    )
    zalo_refresh_token: SecretStr | None = Field(
        default=None, description="OA refresh token (single use; the database keeps the current one)."
    )
    token_encryption_key: SecretStr | None = Field(
        default=None,
        description="32 random bytes, URL-safe base64: encrypts the platform tokens stored in the database.",
    )
    zalo_api_base_url: str = "https://openapi.zalo.me"
    zalo_oauth_base_url: str = "https://oauth.zaloapp.com"
    # Outgoing rate limits per process (messages per second; 0 = unlimited) and the burst a chat
    # may use before its per-chat limit applies.
    telegram_rate_limit: float = Field(default=30.0, ge=0)
    telegram_chat_rate_limit: float = Field(default=1.0, ge=0)
    zalo_rate_limit: float = Field(default=10.0, ge=0)
    zalo_chat_rate_limit: float = Field(default=1.0, ge=0)
    channel_chat_burst: int = Field(default=3, ge=1)
    # The outbox worker: how often it looks for due messages when nobody woke it, how long a
    # claim lasts before another worker may take the message over, when it gives up.
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    outbox_lease_seconds: float = Field(default=120.0, gt=0)
    outbox_max_attempts: int = Field(default=8, ge=1)
    webhook_dedupe_ttl_seconds: int = Field(default=2 * 24 * 3600, ge=60)
    # The inbound journal: a platform update acknowledged but still unhandled this long after
    # it arrived belonged to a worker that died; any worker looks for such every poll.
    inbound_recover_after_seconds: float = Field(default=60.0, gt=0)
    inbound_recover_poll_seconds: float = Field(default=15.0, gt=0)
    # Inbound rate limits (bot/ratelimit.py): "N/s", "N/min" or "N/h"; "off" = none. Client
    # addresses in RATE_LIMIT_EXEMPT (loopback: probes, benchmarks, tests) are never limited;
    # X-Forwarded-For is believed only from TRUSTED_PROXIES.
    rate_limit_per_sender: str = Field(default="20/min", description="Messages per REST sender, Telegram chat or Zalo user.")
    rate_limit_per_ip: str = Field(default="600/min", description="Requests per client address (IPv6: per /64).")
    trusted_proxies: str = Field(default="127.0.0.1,::1", description="Comma-separated proxy addresses or networks.")
    rate_limit_exempt: str = Field(default="127.0.0.0/8,::1", description="Comma-separated client addresses or networks.")

    @model_validator(mode="after")
    def _check_channels(self) -> Settings:
        secret = self.telegram_webhook_secret and self.telegram_webhook_secret.get_secret_value()
        if secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ValueError("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        for name in ("telegram_api_base_url", "zalo_api_base_url", "zalo_oauth_base_url"):
            if not getattr(self, name).startswith(("http://", "https://")):
                raise ValueError(f"{name.upper()} must start with http:// or https://")
        if self.token_encryption_key is not None:
            from backend.token_crypto import parse_key

            parse_key(self.token_encryption_key.get_secret_value())  # a bad key stops startup, named
        self.zalo_api_base_url = self.zalo_api_base_url.rstrip("/")
        self.zalo_oauth_base_url = self.zalo_oauth_base_url.rstrip("/")
        return self

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        if self.models_dir is None:
            self.models_dir = self.project_dir / "models"
        return self

    @model_validator(mode="after")
    def _check_payments(self) -> Settings:
        # Fail at startup rather than on the first customer who wants to pay.
        if self.payment_gateway == "vnpay":
            missing = [
                name
                for name, value in (
                    ("VNPAY_TMN_CODE", self.vnpay_tmn_code),
                    ("VNPAY_HASH_SECRET", self.vnpay_hash_secret and self.vnpay_hash_secret.get_secret_value()),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    f"PAYMENT_GATEWAY=vnpay needs {' and '.join(missing)} in the environment "
                    "(the merchant code and hash secret VNPay issued), or use PAYMENT_GATEWAY=sandbox"
                )
        if not self.public_base_url.startswith(("http://", "https://")):
            raise ValueError(f"PUBLIC_BASE_URL must start with http:// or https://, got {self.public_base_url!r}")
        self.public_base_url = self.public_base_url.rstrip("/")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process; tests call `get_settings.cache_clear()` after changing env."""
    return Settings()
