"""`python -m bot`: database, seed data, the server and a terminal chat.

    python -m bot db upgrade
    python -m bot seed
    python -m bot serve [--host 127.0.0.1] [--port 5005] [--workers 1] [--grace 30]
    python -m bot shell
    python -m bot telegram set-webhook --url URL | delete-webhook | poll
    python -m bot staff create NAME --role agent|admin
    python -m bot privacy purge [--dry-run]
    python -m bot nlu export|import|retrain, model list|activate VERSION|rollback, inbox list|export
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from backend.db import SchemaOutOfDate
from backend.services.nlu_data import NluDataError
from backend.settings import get_settings
from bot.admin_cli import add_admin_commands
from bot.channels.base import OutputChannel
from bot.config_files import ConfigFileError
from bot.observability import configure_logging
from nlu.training_data import TrainingDataError


def setup_logging() -> None:
    """JSON lines with LOG_JSON; every record carries its request and conversation ids and is
    scrubbed of phone numbers (bot/observability.py)."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
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
        from backend.services import nlu_data

        db.configure(get_settings().database_url)
        try:
            await seed_demo()
            if not await nlu_data.has_data():  # the admin console edits the training data in the database
                await nlu_data.import_files(get_settings().project_dir / "data", nlu_data.Actor("seed"))
                print("training data imported from data/")
        finally:
            await db.dispose()

    asyncio.run(run())
    print("demo data loaded")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from bot.server import serve

    return serve(args.host, args.port, args.workers, args.grace, get_settings(), reuse_port=args.reuse_port)


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


def _cmd_staff(args: argparse.Namespace) -> int:
    """Create a console account; the password is prompted for (or read from stdin with
    --password-stdin), never taken from the command line where `ps` would show it."""
    import getpass

    from backend import db
    from backend.services.staff import StaffError, create_staff

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("error: the passwords differ", file=sys.stderr)
            return 2

    async def run() -> None:
        db.configure(get_settings().database_url)
        try:
            await db.require_current_schema()
            await create_staff(args.username, password, args.role, display_name=args.name, max_chats=args.max_chats)
        finally:
            await db.dispose()

    try:
        asyncio.run(run())
    except StaffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.role} {args.username.strip().lower()} created")
    return 0


def _cmd_telegram(args: argparse.Namespace) -> int:
    """Telegram: register or remove the webhook, or long-poll for local development."""
    from telegram.error import InvalidToken, TelegramError

    from bot.channels import telegram
    from bot.channels.platforms import read_credentials, run_polling

    settings = get_settings()
    config = telegram.TelegramConfig.from_settings(settings, read_credentials(settings).get("telegram", {}))
    try:
        if args.telegram_command == "set-webhook":
            asyncio.run(telegram.set_webhook(config, args.url, args.max_connections))
            print(f"webhook set: {args.url} (secret token, updates {', '.join(telegram.ALLOWED_UPDATES)}, pending dropped)")
        elif args.telegram_command == "delete-webhook":
            asyncio.run(telegram.delete_webhook(config, args.drop_pending))
            print("webhook deleted")
        else:
            asyncio.run(run_polling(settings, args.host, args.port))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except InvalidToken:  # its message would print the token
        print("error: Telegram rejected TELEGRAM_BOT_TOKEN", file=sys.stderr)
        return 1
    except TelegramError as exc:
        print(f"error: Telegram answered: {exc.message}", file=sys.stderr)
        return 1
    return 0


def _cmd_privacy(args: argparse.Namespace) -> int:
    from bot.privacy import run_purge

    for line in asyncio.run(run_purge(get_settings(), dry_run=args.dry_run)):
        print(line)
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
    p_serve.add_argument("--workers", type=int, default=1, help="worker processes on the port (more than 1 needs PostgreSQL + Redis)")
    p_serve.add_argument("--grace", type=float, default=30.0, help="seconds in-flight requests get to finish on SIGTERM")
    p_serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set by the supervisor
    p_serve.set_defaults(func=_cmd_serve)
    sub.add_parser("shell", help="chat with the bot in the terminal").set_defaults(func=_cmd_shell)
    p_staff = sub.add_parser("staff", help="agent console accounts")
    staff_sub = p_staff.add_subparsers(dest="staff_command", required=True)
    p_create = staff_sub.add_parser("create", help="create a console account (asks for the password)")
    p_create.add_argument("username")
    p_create.add_argument("--role", choices=["agent", "admin"], default="agent")
    p_create.add_argument("--name", help="the name customers and colleagues see (default: the username)")
    p_create.add_argument("--max-chats", type=int, default=3, help="conversations this agent may hold at once")
    p_create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p_create.set_defaults(func=_cmd_staff)
    p_tg = sub.add_parser("telegram", help="Telegram webhook registration, or long polling for development")
    tg_sub = p_tg.add_subparsers(dest="telegram_command", required=True)
    p_set = tg_sub.add_parser("set-webhook", help="register the webhook (secret token, allowed updates, pending dropped)")
    p_set.add_argument("--url", required=True, help="public https URL of POST /webhooks/telegram")
    p_set.add_argument("--max-connections", type=int, default=40)
    p_set.set_defaults(func=_cmd_telegram)
    p_del = tg_sub.add_parser("delete-webhook", help="remove the webhook")
    p_del.add_argument("--drop-pending", action="store_true", help="also discard updates Telegram still holds")
    p_del.set_defaults(func=_cmd_telegram)
    p_poll = tg_sub.add_parser("poll", help="serve with long polling instead of the webhook (local development)")
    p_poll.add_argument("--host", default="127.0.0.1")
    p_poll.add_argument("--port", type=int, default=5005)
    p_poll.set_defaults(func=_cmd_telegram)
    add_admin_commands(sub)  # nlu export|import|retrain, model list|activate|rollback, inbox list|export
    p_privacy = sub.add_parser("privacy", help="personal data retention")
    privacy_sub = p_privacy.add_subparsers(dest="privacy_command", required=True)
    p_purge = privacy_sub.add_parser("purge", help="delete transcripts older than TRANSCRIPT_RETENTION_DAYS (run daily)")
    p_purge.add_argument("--dry-run", action="store_true", help="count what would go, change nothing")
    p_purge.set_defaults(func=_cmd_privacy)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        return args.func(args)
    except (ConfigFileError, TrainingDataError, SchemaOutOfDate, NluDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
