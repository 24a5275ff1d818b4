"""Notification storm: power is back in a ward and --subscribers Telegram chats must hear it,
through the outbox, within Telegram's rate limits, each exactly once.

Setup (all on this machine): `python -m bot db upgrade` and `python -m bot seed` on DATABASE_URL;
an incident of this run in Phường Bến Nghé, Quận 1, with --subscribers Telegram chats
subscribed to it (rows inserted here, as if each chat had reported the outage); the fake
Telegram Bot API (tests/fakes/telegram.py) in a process of its own, enforcing Telegram's limits
(30 messages/s over all chats, 1/s per chat after a burst of 3: 429 with retry_after beyond
that; --no-fake-limits turns that off); and --workers bot workers (`python -m bot serve`, as in
benchmarks/load.py) with Telegram on and pointed at the fake, each with TELEGRAM_RATE_LIMIT =
30 / workers, so their outbox workers share Telegram's budget.

Then staff mark the incident restored (`PATCH /api/outages/{ref}` {"status": "restored"}, the
staff API): one transaction writes a notice per subscriber to the outbox, and the workers'
outbox workers drain it into the fake. The run ends when every chat has its notice, when
nothing has moved for --stall-seconds, or after --max-seconds.

Reported: the time the restore call took (the outbox writes), the time to the last delivery,
messages/s, the most messages in any one second as Telegram saw them, 429s, duplicates (a chat
told twice) and lost (a chat never told), and the outbox rows' final states.

    DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/bench_load REDIS_URL=redis://127.0.0.1:6379/6 \\
    python benchmarks/storm.py                  # 10,000 chats: about 6 minutes at 30 messages/s
    python benchmarks/storm.py --quick          # 1,000 chats, under a minute
    python benchmarks/storm.py --profile        # also py-spy the workers while they drain

Telegram's 30 messages/s is the ceiling: 10,000 notices take at least 333 s however fast the
bot is. What the run shows is that the bot keeps to the limit, recovers from the 429s it does
get, and loses or repeats nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run as `python benchmarks/storm.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (  # noqa: E402
    FAKE_TELEGRAM_TOKEN,
    BenchmarkError,
    fake_calls,
    fake_stats,
    fake_telegram,
    hotspots,
    machine_line,
    markdown_table,
    max_in_window,
    production_environment,
    profile_report,
    profiled,
    require_production_env,
    run_bot_command,
    serve_supports_workers,
    started_servers,
    trained_models,
)

WARD = ("Phường Bến Nghé", "Quận 1", "TP. Hồ Chí Minh")
FIRST_CHAT_ID = 5_000_000_000  # private chats of the run: FIRST_CHAT_ID + n


async def subscribe(database_url: str, ref: str, chats: int) -> None:
    """An incident `ref` in WARD with `chats` Telegram chats subscribed to its restoration."""
    from sqlalchemy import insert, select

    from backend import db
    from backend.clock import utcnow
    from backend.models import OutageIncident, OutageSubscription
    from backend.services.outages import Area, add_incident

    db.configure(database_url)
    try:
        await add_incident(Area(*WARD), cause="sự cố trạm biến áp (benchmark)", expected_restore_at=None, ref=ref)
        async with db.session_scope() as session:
            incident_id = await session.scalar(select(OutageIncident.id).where(OutageIncident.ref == ref))
            now = utcnow()
            rows = [
                {"incident_id": incident_id, "channel": "telegram", "recipient_id": str(FIRST_CHAT_ID + n), "language": "vi", "created_at": now}
                for n in range(chats)
            ]
            for start in range(0, len(rows), 2000):
                await session.execute(insert(OutageSubscription), rows[start : start + 2000])
    finally:
        await db.dispose()


async def discard_pending(database_url: str) -> int:
    """Drop the storm notices an interrupted run left pending (they are this benchmark's only:
    dedupe keys of SCSTORM incidents), so that no later run's workers send them."""
    from sqlalchemy import delete

    from backend import db
    from backend.models import OutboxMessage

    db.configure(database_url)
    try:
        async with db.session_scope() as session:
            result = await session.execute(
                delete(OutboxMessage).where(OutboxMessage.status == "pending", OutboxMessage.dedupe_key.like("outage:SCSTORM%"))
            )
            return result.rowcount or 0
    finally:
        await db.dispose()


async def outbox_states(database_url: str, ref: str) -> Counter[str]:
    from sqlalchemy import func, select

    from backend import db
    from backend.models import OutboxMessage

    db.configure(database_url)
    try:
        async with db.read_scope() as session:
            rows = await session.execute(
                select(OutboxMessage.status, func.count())
                .where(OutboxMessage.dedupe_key.like(f"outage:{ref}:restored:%"))
                .group_by(OutboxMessage.status)
            )
            return Counter({status: int(count) for status, count in rows.all()})
    finally:
        await db.dispose()


def restore(url: str, ref: str, token: str) -> tuple[float, int]:
    """Staff mark the incident restored; (seconds the call took, chats notified)."""
    request = urllib.request.Request(
        f"{url}/api/outages/{ref}",
        data=json.dumps({"status": "restored"}).encode(),
        method="PATCH",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise BenchmarkError(f"PATCH /api/outages/{ref} answered {exc.code}: {exc.read()[:300]!r}") from exc
    return time.perf_counter() - started, int(body.get("notified", 0))


@dataclass
class Drain:
    subscribers: int
    restore_seconds: float = 0.0
    notified: int = 0
    triggered_at: float = 0.0  # time.monotonic(), the same clock as the fake's (one machine)
    stalled: bool = False
    timed_out: bool = False


def wait_for_delivery(port: int, drain: Drain, max_seconds: float, stall_seconds: float) -> None:
    last_change, last_sent = time.monotonic(), -1
    while True:
        stats = fake_stats(port)
        now = time.monotonic()
        if stats["sent"] != last_sent:
            last_change, last_sent = now, stats["sent"]
            print(f"  {now - drain.triggered_at:6.1f} s: {stats['sent']:>6} delivered, {stats['throttled']} answered 429", file=sys.stderr)
        if stats["sent"] >= drain.subscribers:
            time.sleep(3)  # anything sent twice would arrive now
            return
        if now - last_change > stall_seconds:
            drain.stalled = True
            return
        if now - drain.triggered_at > max_seconds:
            drain.timed_out = True
            return
        time.sleep(2 if drain.subscribers > 2000 else 1)


def report(drain: Drain, calls: list[dict], states: Counter[str], args: argparse.Namespace, setup: str) -> tuple[str, bool]:
    sends = [c for c in calls if c["method"] in ("sendMessage", "sendPhoto")]
    delivered = [c for c in sends if c["ok"]]
    throttled = sum(1 for c in sends if c.get("throttled"))
    per_chat = Counter(str(c["params"].get("chat_id")) for c in delivered)
    expected_chats = {str(FIRST_CHAT_ID + n) for n in range(drain.subscribers)}
    duplicates = sum(n - 1 for chat, n in per_chat.items() if n > 1)
    lost = len(expected_chats - set(per_chat))
    strangers = len(set(per_chat) - expected_chats)
    wrong_text = sum(1 for c in delivered if WARD[0] not in str(c["params"].get("text") or ""))
    times = sorted(c["at"] for c in delivered)
    total = (times[-1] - drain.triggered_at) if times else float("nan")
    sending = (times[-1] - times[0]) if len(times) > 1 else float("nan")
    by_second = Counter(int(t - drain.triggered_at) for t in times)
    rows = [
        ["subscribers", f"{drain.subscribers:,}"],
        ["restore call (writes the outbox)", f"{drain.restore_seconds:.2f} s ({drain.notified:,} notified)"],
        ["first delivery after the restore", f"{times[0] - drain.triggered_at:.2f} s" if times else "-"],
        ["total time (restore to last delivery)", f"{total:.1f} s"],
        ["messages/s (first to last delivery)", f"{len(times) / sending:.1f}" if len(times) > 1 else "-"],
        ["messages/s (overall)", f"{len(times) / total:.1f}" if times else "-"],
        ["most in any 1 s window (Telegram: 30)", str(max_in_window(times))],
        ["most in one whole second", str(max(by_second.values(), default=0))],
        ["429s answered by Telegram", str(throttled)],
        ["delivered", f"{len(delivered):,}"],
        ["duplicates (a chat told twice)", str(duplicates)],
        ["lost (a chat never told)", f"{lost:,}"],
        ["sent to a chat not subscribed / wrong text", f"{strangers} / {wrong_text}"],
        ["outbox rows", ", ".join(f"{k}: {v:,}" for k, v in sorted(states.items())) or "none"],
    ]
    limit_note = "the fake enforces Telegram's limits" if not args.no_fake_limits else "the fake's limits are off"
    lines = [f"{setup}; {limit_note}", "", markdown_table(["storm", "result"], rows, right=(1,))]
    if drain.stalled:
        lines.append(f"  - stopped: nothing was delivered for {args.stall_seconds:g} s")
    if drain.timed_out:
        lines.append(f"  - stopped after --max-seconds {args.max_seconds:g}")
    ok = duplicates == 0 and lost == 0 and strangers == 0 and wrong_text == 0 and not drain.stalled and not drain.timed_out
    return "\n".join(lines), ok


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/storm.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000, help="Telegram chats told power is back (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="bot worker processes (default: %(default)s)")
    parser.add_argument("--mode", choices=["ports", "reuseport"], default="ports", help="as in benchmarks/load.py")
    parser.add_argument("--quick", action="store_true", help="1,000 subscribers (under a minute)")
    parser.add_argument("--no-fake-limits", action="store_true", help="the fake Telegram accepts any rate (the bot's own limiter still applies)")
    parser.add_argument("--rate", type=float, default=30.0, help="Telegram messages/s shared by the workers (default: %(default)s)")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="give up after this long (default: %(default)s)")
    parser.add_argument("--stall-seconds", type=float, default=60.0, help="give up when nothing is delivered for this long (default: %(default)s)")
    parser.add_argument("--models", help="models folder to use (default: models/, or train one into a temporary folder)")
    parser.add_argument("--profile", action="store_true", help="sample the workers with py-spy while they drain and print the hotspots")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.subscribers = min(args.subscribers, 1000)
    ref = f"SCSTORM{secrets.token_hex(4).upper()}"
    token = secrets.token_urlsafe(24)
    try:
        database_url, redis_url = require_production_env()
        if args.mode == "reuseport" and not serve_supports_workers():
            raise BenchmarkError("--mode reuseport needs `python -m bot serve --workers N`, which this checkout does not have")
        limits = None if args.no_fake_limits else {"per_second": 30.0, "per_chat_per_second": 1.0, "chat_burst": 3.0}
        folder = Path(tempfile.mkdtemp(prefix="bench-storm-"))
        with trained_models(args.models) as models_dir, fake_telegram(FAKE_TELEGRAM_TOKEN, limits) as port:
            env = production_environment(
                database_url,
                redis_url,
                models_dir,
                TELEGRAM_BOT_TOKEN=FAKE_TELEGRAM_TOKEN,
                TELEGRAM_API_BASE_URL=f"http://127.0.0.1:{port}/bot",
                TELEGRAM_RATE_LIMIT=f"{args.rate / args.workers:g}",
                STAFF_API_TOKEN=token,
            )
            print("migrating and seeding ...", file=sys.stderr)
            run_bot_command(["db", "upgrade"], env, timeout=300)
            run_bot_command(["seed"], env, timeout=300)
            if discarded := asyncio.run(discard_pending(database_url)):
                print(f"discarded {discarded:,} notices an earlier run left pending", file=sys.stderr)
            asyncio.run(subscribe(database_url, ref, args.subscribers))
            print(f"incident {ref}: {args.subscribers:,} chats subscribed; starting {args.workers} workers ({args.mode}) ...", file=sys.stderr)
            drain = Drain(args.subscribers)
            with started_servers(env, args.workers, args.mode, folder) as servers:
                profile = contextlib.nullcontext([])
                if args.profile:
                    profile = profiled(servers.pids, args.max_seconds, folder, subprocesses=args.mode == "reuseport")
                with profile as profiles:
                    drain.triggered_at = time.monotonic()
                    drain.restore_seconds, drain.notified = restore(servers.urls[0], ref, token)
                    print(f"restored: {drain.notified:,} notices written in {drain.restore_seconds:.2f} s; draining ...", file=sys.stderr)
                    wait_for_delivery(port, drain, args.max_seconds, args.stall_seconds)
            calls = fake_calls(port)
            states = asyncio.run(outbox_states(database_url, ref))
            asyncio.run(discard_pending(database_url))
        setup = f"{args.workers} workers ({args.mode}), PostgreSQL + Redis, {args.rate:g} messages/s shared"
        text, ok = report(drain, calls, states, args, setup)
        print()
        print(machine_line())
        print(text)
        if args.profile:
            print()
            print(profile_report(hotspots(profiles)))
        print(f"server logs: {folder}", file=sys.stderr)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
