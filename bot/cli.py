"""`python -m bot`: database, seed data, the server and a terminal chat.

    python -m bot db upgrade
    python -m bot seed
    python -m bot serve [--host 127.0.0.1] [--port 5005]
    python -m bot shell
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any

from backend.db import SchemaOutOfDate
from backend.settings import get_settings
from bot.channels.base import OutputChannel
from bot.config_files import ConfigFileError
from nlu.training_data import TrainingDataError


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging() -> None:
    settings = get_settings()
    handler = logging.StreamHandler()
    if settings.log_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin


def _cmd_db(args: argparse.Namespace) -> int:
    from backend.db import upgrade_database

    upgrade_database(get_settings().database_url)
    print("database is at the latest migration")
    return 0


def _cmd_seed(args: argparse.Namespace) -> int:
    from backend import db
    from backend.seed import seed_demo

    async def run() -> None:
        db.configure(get_settings().database_url)
        try:
            await seed_demo()
        finally:
            await db.dispose()

    asyncio.run(run())
    print("demo data loaded")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from bot.app import create_app

    print(f"serving on http://{args.host}:{args.port} (REST: POST /webhooks/rest/webhook)", flush=True)
    web.run_app(create_app(), host=args.host, port=args.port, print=None, access_log=None)
    return 0


class _TerminalOutput(OutputChannel):
    """Prints replies; buttons are numbered so typing the number presses them."""

    name = "shell"

    def __init__(self) -> None:
        self.buttons: list[dict[str, Any]] = []

    async def send_text(self, recipient_id: str, text: str) -> None:
        print(f"bot: {text}")

    async def send_buttons(self, recipient_id: str, text: str, buttons: list[dict[str, Any]]) -> None:
        if text:
            await self.send_text(recipient_id, text)
        for button in buttons:
            self.buttons.append(button)
            print(f"     {len(self.buttons)}. {button.get('title', '')}")


async def _shell() -> None:
    from backend import db
    from bot.channels.base import UserMessage
    from bot.runtime import build_runtime

    await db.require_current_schema()
    runtime = build_runtime(get_settings())
    print("Chat with the bot (Ctrl-D or /exit to quit; type a number to press a button).")
    output = _TerminalOutput()
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                text = await loop.run_in_executor(None, input, "you: ")
            except EOFError:
                break
            if text.strip() in ("/exit", "/quit"):
                break
            if text.strip().isdigit() and 0 < int(text) <= len(output.buttons):
                text = output.buttons[int(text) - 1]["payload"]
            output.buttons = []
            for reply in await runtime.agent.handle_message(UserMessage("shell", text, "shell")):
                await output.send("shell", reply)
    finally:
        await runtime.close()
        await db.dispose()


def _cmd_shell(args: argparse.Namespace) -> int:
    asyncio.run(_shell())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="EVN customer-care chatbot service")
    sub = parser.add_subparsers(dest="command", required=True)
    p_db = sub.add_parser("db", help="database schema")
    p_db.add_argument("action", choices=["upgrade"])
    p_db.set_defaults(func=_cmd_db)
    sub.add_parser("seed", help="load the demo data (idempotent)").set_defaults(func=_cmd_seed)
    p_serve = sub.add_parser("serve", help="run the HTTP server")
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, default=5005)
    p_serve.set_defaults(func=_cmd_serve)
    sub.add_parser("shell", help="chat with the bot in the terminal").set_defaults(func=_cmd_shell)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        return args.func(args)
    except (ConfigFileError, TrainingDataError, SchemaOutOfDate) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
