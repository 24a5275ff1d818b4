"""`python -m bot serve --workers N` refuses what cannot be shared between processes: the
embedded default keeps conversations and locks in memory, and SQLite admits one writer."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_DIR


def _serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--port", "1", *args], cwd=PROJECT_DIR, env={**os.environ, **env},
        capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"REDIS_URL": "", "DATABASE_URL": "sqlite+aiosqlite:///var/never.db"}, "needs REDIS_URL"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0", "DATABASE_URL": "sqlite+aiosqlite:///var/never.db"}, "needs a PostgreSQL DATABASE_URL"),
        ({"REDIS_URL": "redis://127.0.0.1:1/0", "DATABASE_URL": "postgresql+asyncpg://x@127.0.0.1:1/x", "TRACKER_STORE": "memory"}, "memory is not shared"),
    ],
)
def test_several_workers_need_shared_stores(env: dict[str, str], reason: str) -> None:
    result = _serve(env, "--workers", "2")
    assert result.returncode == 2
    assert reason in result.stderr


def test_workers_must_be_positive() -> None:
    result = _serve({}, "--workers", "0")
    assert result.returncode == 2 and "at least 1" in result.stderr
