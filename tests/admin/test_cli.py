"""`python -m bot nlu|model|inbox`: the console's operations from a terminal."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
from pathlib import Path

from backend import db
from backend.services import nlu_inbox
from tests.conftest import PROJECT_DIR


def _bot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=300)


def test_export_import_retrain_activate_rollback_and_inbox(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    env = {**os.environ, "DATABASE_URL": url, "PROJECT_DIR": str(PROJECT_DIR), "LOG_LEVEL": "WARNING"}
    env.pop("REDIS_URL", None)
    assert _bot(env, "db", "upgrade").returncode == 0

    empty = _bot(env, "nlu", "export", "--out", str(tmp_path / "none"))
    assert empty.returncode == 2 and "nlu import" in empty.stderr

    imported = _bot(env, "nlu", "import")
    assert imported.returncode == 0 and "intent lines" in imported.stdout
    exported = _bot(env, "nlu", "export", "--out", str(tmp_path / "data"))
    assert exported.returncode == 0
    for name in ("nlu.yml", "synonyms.yml"):
        assert (tmp_path / "data" / name).read_bytes() == (PROJECT_DIR / "data" / name).read_bytes()

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "nlu.yml").write_text("nlu:\n- intent: greet\n  examples: |\n    - [oops(customer_code)\n", encoding="utf-8")
    bad = _bot(env, "nlu", "import", "--data", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "nlu.yml:4" in bad.stderr

    first = _bot(env, "nlu", "retrain")
    assert first.returncode == 0, first.stderr
    v1 = first.stdout.split()[1].rstrip(":")
    assert _bot(env, "model", "activate", v1).returncode == 0
    second = _bot(env, "nlu", "retrain")
    v2 = second.stdout.split()[1].rstrip(":")
    activated = _bot(env, "model", "activate", v2)
    assert activated.returncode == 0 and f"{v2} is now active" in activated.stdout
    listing = _bot(env, "model", "list").stdout
    assert f"* {v2}" in listing and f"  {v1}" in listing
    rolled = _bot(env, "model", "rollback")
    assert rolled.returncode == 0 and f"{v1} is now active" in rolled.stdout
    assert _bot(env, "model", "activate", "no-such-version").returncode == 1

    async def capture() -> None:
        db.configure(url)
        await nlu_inbox.capture("sđt em 0912345678 mà không nhận được tin", channel="rest", conversation_id="c1", reason="fallback")
        await db.dispose()

    asyncio.run(capture())
    listed = _bot(env, "inbox", "list")
    assert "fallback" in listed.stdout and "0912345678" not in listed.stdout and "091" in listed.stdout
    masked = list(csv.DictReader(io.StringIO(_bot(env, "inbox", "export").stdout)))
    assert len(masked) == 1 and "0912345678" not in masked[0]["text"]
    revealed = _bot(env, "inbox", "export", "--reveal", "--format", "jsonl", "--out", str(tmp_path / "inbox.jsonl"))
    assert revealed.returncode == 0 and "0912345678" in (tmp_path / "inbox.jsonl").read_text(encoding="utf-8")
