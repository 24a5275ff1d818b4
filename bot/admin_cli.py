"""The NLU administration commands of `python -m bot`, matching the admin console:

    python -m bot nlu export [--out data/]       the database's training data as Rasa YAML
    python -m bot nlu import [--data data/]      data/*.yml into the database (replaces it)
    python -m bot nlu retrain                    train on the database's data (a new version)
    python -m bot model list
    python -m bot model activate VERSION [--override-reason TEXT]
    python -m bot model rollback
    python -m bot inbox list [--status open]
    python -m bot inbox export [--out FILE] [--format csv|jsonl] [--reveal]

Changes are recorded in the audit log as made by "cli:<user>". Exit codes: 0 done, 1 refused
(quality gate, corrupted model), 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import io
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from backend import db
from backend.services import nlu_data, nlu_inbox, nlu_models
from backend.services.nlu_data import Actor, NluDataError
from backend.settings import get_settings


def _actor() -> Actor:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in a container: still say it was the command line
        user = "unknown"
    return Actor(f"cli:{user}")


def _run(body: Callable[[], Awaitable[int]]) -> int:
    async def wrapped() -> int:
        db.configure(get_settings().database_url)
        await db.require_current_schema()
        try:
            return await body()
        finally:
            await db.dispose()

    return asyncio.run(wrapped())


async def _redis() -> Any:
    url = get_settings().redis_url
    if not url:
        return None
    from redis.asyncio import Redis

    return Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _domain_intents() -> set[str]:
    from bot.domain import Domain

    return set(Domain.load(get_settings().project_dir / "domain.yml").intents)


# -- nlu -------------------------------------------------------------------------------------------


def _cmd_nlu(args: argparse.Namespace) -> int:
    settings = get_settings()

    async def body() -> int:
        if args.nlu_command == "export":
            out = Path(args.out or settings.project_dir / "data")
            if not await nlu_data.has_data():
                print("error: the database has no training data; run `python -m bot nlu import` first", file=sys.stderr)
                return 2
            for path in await nlu_data.export_files(out, _actor()):
                print(path)
            return 0
        if args.nlu_command == "import":
            counts = await nlu_data.import_files(Path(args.data or settings.project_dir / "data"), _actor())
            print(", ".join(f"{n} {kind} lines" for kind, n in counts.items()))
            return 0
        if args.nlu_command == "retrain":
            from bot.nlu_training import start_job

            job, new = await start_job(_actor(), settings, in_process=True)
            if not new:
                print(f"error: retraining job {job.id} is already {job.status}", file=sys.stderr)
                return 1
            done = await nlu_models.get_job(job.id)
            if done is None or done.status != "succeeded":
                print(f"error: retraining failed: {done.error if done else 'job lost'}", file=sys.stderr)
                return 1
            info = await nlu_models.get(done.version or "")
            print(f"trained {done.version}: accuracy {info.accuracy:.3f}, macro-F1 {info.macro_f1:.3f}" if info else done.version)
            print(f"activate it with: python -m bot model activate {done.version}")
            return 0
        # train-job: the process the console starts
        from bot.nlu_training import run_job

        return 0 if await run_job(args.job_id, settings) else 1

    return _run(body)


# -- model -----------------------------------------------------------------------------------------


def _cmd_model(args: argparse.Namespace) -> int:
    settings = get_settings()

    async def body() -> int:
        if args.model_command == "list":
            versions = await nlu_models.list_versions()
            if not versions:
                print("no model versions yet (a worker registers the one it serves at startup)")
            print(f"{'':2}{'version':40} {'created (UTC)':17} {'accuracy':>8} {'macro-F1':>8}")
            for v in versions:
                acc = f"{v.accuracy:.3f}" if v.accuracy is not None else "-"
                f1 = f"{v.macro_f1:.3f}" if v.macro_f1 is not None else "-"
                print(f"{'* ' if v.active else '  '}{v.version:40} {v.created_at:%Y-%m-%d %H:%M} {acc:>8} {f1:>8}")
            return 0
        redis = await _redis()
        try:
            if args.model_command == "activate":
                from bot.nlu_training import ensure_evaluated

                await ensure_evaluated(args.version, settings)
                await ensure_evaluated(await nlu_models.active_version(), settings)
                try:
                    gate = await nlu_models.activate(
                        args.version, _actor(), override_reason=args.override_reason, domain_intents=_domain_intents()
                    )
                except nlu_models.GateBlocked as exc:
                    print("refused by the quality gate:", file=sys.stderr)
                    for failure in exc.gate.failures:
                        print(f"  - {failure}", file=sys.stderr)
                    print("to activate anyway, give --override-reason 'why'", file=sys.stderr)
                    return 1
                version = args.version
                for warning in gate.warnings:
                    print(f"warning: {warning}", file=sys.stderr)
            else:
                version = await nlu_models.rollback(_actor())
            from bot.model_rollout import announce

            await announce(redis, version)
            print(f"{version} is now active; workers switch within seconds")
            return 0
        except nlu_models.ModelError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            if redis is not None:
                await redis.aclose()

    return _run(body)


# -- inbox -----------------------------------------------------------------------------------------


def _cmd_inbox(args: argparse.Namespace) -> int:
    async def body() -> int:
        if args.inbox_command == "list":
            groups = await nlu_inbox.groups(status=args.status)
            if not groups:
                print(f"no {args.status} items")
            for g in groups:
                conf = f"{g.sample.confidence:.2f}" if g.sample.confidence is not None else "-"
                print(f"#{g.sample.id:<6} x{g.count:<3} {','.join(g.reasons):28} {g.predicted or '-':22} {conf:>5}  {g.sample.masked}")
            return 0
        rows = await nlu_inbox.export_rows(None if args.status == "all" else args.status, reveal_text=args.reveal, actor=_actor())
        out = io.StringIO()
        if args.format == "jsonl":
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["id"])
            writer.writeheader()
            writer.writerows(rows)
        if args.out:
            await asyncio.to_thread(Path(args.out).write_text, out.getvalue(), encoding="utf-8")
        else:
            sys.stdout.write(out.getvalue())
        if args.out:
            print(f"{len(rows)} items written to {args.out}", file=sys.stderr)
        return 0

    return _run(body)


def add_admin_commands(sub: Any) -> None:
    """Register `nlu`, `model` and `inbox` on the `python -m bot` parser."""
    p_nlu = sub.add_parser("nlu", help="training data in the database, retraining")
    nlu_sub = p_nlu.add_subparsers(dest="nlu_command", required=True)
    p_export = nlu_sub.add_parser("export", help="write the database's training data as Rasa YAML (data/nlu.yml, ...)")
    p_export.add_argument("--out", help="folder to write (default: data/)")
    p_import = nlu_sub.add_parser("import", help="replace the database's training data with data/*.yml")
    p_import.add_argument("--data", help="folder to read (default: data/)")
    nlu_sub.add_parser("retrain", help="train a new version on the database's data and evaluate it")
    p_job = nlu_sub.add_parser("train-job", help=argparse.SUPPRESS)
    p_job.add_argument("job_id", type=int)
    for p in (p_export, p_import, p_job):
        p.set_defaults(func=_cmd_nlu)
    nlu_sub.choices["retrain"].set_defaults(func=_cmd_nlu)

    p_model = sub.add_parser("model", help="NLU model versions: list, activate, roll back")
    model_sub = p_model.add_subparsers(dest="model_command", required=True)
    model_sub.add_parser("list", help="versions with their held-out scores; * marks the active one").set_defaults(func=_cmd_model)
    p_activate = model_sub.add_parser("activate", help="serve VERSION on every worker (quality gate applies)")
    p_activate.add_argument("version")
    p_activate.add_argument("--override-reason", help="activate despite the quality gate, for this recorded reason")
    p_activate.set_defaults(func=_cmd_model)
    model_sub.add_parser("rollback", help="serve the version that served before the current one").set_defaults(func=_cmd_model)

    p_inbox = sub.add_parser("inbox", help="the NLU inbox: messages the bot may have misunderstood")
    inbox_sub = p_inbox.add_subparsers(dest="inbox_command", required=True)
    p_list = inbox_sub.add_parser("list", help="groups of near-duplicate messages, largest first (masked)")
    p_list.add_argument("--status", default="open", choices=nlu_inbox.STATUSES)
    p_list.set_defaults(func=_cmd_inbox)
    p_iexport = inbox_sub.add_parser("export", help="items as CSV or JSON lines (masked unless --reveal, which is audited)")
    p_iexport.add_argument("--out", help="file to write (default: stdout)")
    p_iexport.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    p_iexport.add_argument("--status", default="open", choices=(*nlu_inbox.STATUSES, "all"))
    p_iexport.add_argument("--reveal", action="store_true", help="the original texts with phone numbers and codes")
    p_iexport.set_defaults(func=_cmd_inbox)


__all__ = ["add_admin_commands", "NluDataError"]
