"""The one settings object of the project, read from the environment and a `.env` file.

It lives in `backend/` because every package may read it (dependencies point one way:
bot -> actions -> backend), and actions also run inside a plain rasa_sdk action server.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Service configuration. Secrets come from the environment only, never from files in the repo."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = Field(
        default="sqlite+aiosqlite:///var/bot.db",
        description="SQLAlchemy async URL; SQLite by default, postgresql+asyncpg:// in production.",
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL; unset means in-memory tracker and lock stores."
    )
    project_dir: Path = Field(default=PROJECT_ROOT, description="Where domain.yml and data/ live.")
    models_dir: Path | None = Field(default=None, description="Trained NLU models (default: PROJECT_DIR/models).")
    hotline: str = Field(default="1900 1006", description="Customer-care hotline shown on fallback.")
    verification_max_attempts: int = 3
    verification_lock_minutes: int = 15
    lock_lifetime_seconds: float = 60.0
    log_level: str = "INFO"
    log_json: bool = False

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        if self.models_dir is None:
            self.models_dir = self.project_dir / "models"
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process; tests call `get_settings.cache_clear()` after changing env."""
    return Settings()
