"""Production load benchmark: thousands of customers over the REST channel against several bot
workers on PostgreSQL + Redis, then a check in the tracker store that nothing was lost.

Setup (all on this machine): `python -m bot db upgrade` and `python -m bot seed` on DATABASE_URL,
then --customers generated customers (code `PK8…`, a phone on file, a ward of their own among
twelve, three months of bills with the latest unpaid) inserted by this script, a trained model
(models/ or one trained now into a temporary folder), and --workers bot workers on Redis
(REDIS_URL): `--mode ports` starts that many `python -m bot serve` processes on ports of their
own and spreads customers over them; `--mode reuseport` starts one `python -m bot serve
--workers N` (one port, SO_REUSEPORT) where that option exists.

The load: --concurrency simulated people at a time, each taking the next customer off a queue
and making one visit (a scenario) before putting the customer back, for --duration seconds
(each sends its next message as soon as it has the answer, or, with --rate R, the turns of
all of them are paced to R per second: an offered load, the way a latency target is stated):

* bill lookup: "tra cứu hóa đơn" -> code -> phone on file (the ownership check) -> the bill,
  then "tiền điện tháng trước"; once the chat is linked the bill comes at once;
* payment: "thanh toán tiền điện" (-> code -> phone when not linked) -> a payment link, thanks;
* outage report for the customer's ward, thanks (visits end with thanks: the same request three
  times in a row is handed to a person);
* small talk: greeting, help, a tariff question (the table or an estimate), thanks.

Beside it, a burst: --burst reports of an outage in one ward (Phường Đa Kao, Quận 1) from as
many new chats, evenly spread over --burst-window seconds from --burst-at, whatever the
concurrency (the way an outage really arrives).

A turn is an error when the status is not 200, the request fails or times out, or the answer is
empty or lacks what was asked for (a bill shows kWh, a link /payments/, a report its BC number).
After the run every conversation is read back from Redis: each message sent must be in its
conversation's tracker exactly once and in the order sent (lost, duplicated, out of order), and
each must have been followed by a bot message (unanswered). The burst must have made reports
for one incident only, one report per successful message. Also reported: PostgreSQL
transactions per turn, the most connections open / waiting for a row lock / idle in a
transaction (sampled each second), and the CPU the workers and this script used (on a shared
machine, how much of it the workers actually got); --profile adds py-spy hotspots.

    DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/bench_load REDIS_URL=redis://127.0.0.1:6379/6 \\
    python benchmarks/load.py                      # 2,000 customers, 2 workers, 120 s, burst 1,000 in 60 s
    python benchmarks/load.py --quick              # 20-second smoke run (burst of 200 in 12 s)
    python benchmarks/load.py --profile            # also py-spy every worker and print the hotspots
    python benchmarks/load.py --rate 400 --concurrency 64 --mode reuseport   # the issue's target, offered

Point DATABASE_URL and REDIS_URL at a database and a Redis database number used by nothing else.
Target (the Production issue): 400 turns/s, p99 under 150 ms, no errors, nothing lost, 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import random
import re
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run as `python benchmarks/load.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (  # noqa: E402
    BenchmarkError,
    cpu_seconds,
    hotspots,
    machine_line,
    markdown_table,
    peak_rss_mb,
    percentile,
    production_environment,
    profile_report,
    profiled,
    require_production_env,
    run_bot_command,
    serve_supports_workers,
    started_servers,
    trained_models,
)

WEBHOOK_PATH = "/webhooks/rest/webhook"

# Wards of the generated customers (none of them the demo's); the first one gets the burst.
# Their keys (ward name without diacritics and unit words) are distinct words, so a message
# naming one can only mean that one.
WARDS = [
    ("Phường Đa Kao", "Quận 1", "TP. Hồ Chí Minh"),
    ("Phường Tân Định", "Quận 1", "TP. Hồ Chí Minh"),
    ("Phường Võ Thị Sáu", "Quận 3", "TP. Hồ Chí Minh"),
    ("Phường Thảo Điền", "Quận 2", "TP. Hồ Chí Minh"),
    ("Phường Tân Thuận Đông", "Quận 7", "TP. Hồ Chí Minh"),
    ("Phường Tân Kiểng", "Quận 7", "TP. Hồ Chí Minh"),
    ("Phường Bình Thuận", "Quận 7", "TP. Hồ Chí Minh"),
    ("Phường Dịch Vọng", "Quận Cầu Giấy", "Hà Nội"),
    ("Phường Láng Hạ", "Quận Đống Đa", "Hà Nội"),
    ("Phường Kim Mã", "Quận Ba Đình", "Hà Nội"),
    ("Phường Tràng Tiền", "Quận Hoàn Kiếm", "Hà Nội"),
    ("Phường Quán Thánh", "Quận Ba Đình", "Hà Nội"),
]
BURST_MESSAGES = [
    "mất điện ở phường Đa Kao quận 1",
    "nhà tôi bị cúp điện, P. Đa Kao Q1",
    "phuong da kao q1 mat dien roi",
    "khu phường Đa Kao, quận 1 mất điện từ nãy",
]
REPORT_REF = re.compile(r"BC\d{9,}")
SCENARIOS = {"bill": 40, "smalltalk": 30, "outage": 15, "pay": 15}  # weights


# ----------------------------------------------------------------------------- customers


@dataclass(frozen=True)
class Persona:
    index: int
    code: str
    phone: str
    ward: tuple[str, str, str]

    @property
    def name(self) -> str:
        return f"Khách hàng tải {self.index:05d}"


def personas(count: int) -> list[Persona]:
    """The generated customers: stable codes and phones, so runs can share a database."""
    return [Persona(i, f"PK{8_000_000_000 + i}", f"096{i:07d}", WARDS[i % len(WARDS)]) for i in range(count)]


async def insert_customers(database_url: str, people: list[Persona]) -> int:
    """Customers, contracts and three months of bills (the latest unpaid) for `people` that are
    not in the database yet, priced on the seeded residential tariff. Returns how many were added."""
    from sqlalchemy import insert, select

    from backend import db
    from backend.clock import today_vn, vn_datetime
    from backend.models import Bill, Contract, Customer
    from backend.periods import Period
    from backend.tariffs import compute_amount, load_tariff

    db.configure(database_url)
    try:
        today = today_vn()
        current = Period.containing(today)
        async with db.session_scope() as session:
            existing = set(await session.scalars(select(Customer.code).where(Customer.code.like("PK8%"))))
            missing = [p for p in people if p.code not in existing]
            if not missing:
                return 0
            rows = [
                {"code": p.code, "name": p.name, "phone": p.phone, "address": f"{1 + p.index % 300} Đường Số {1 + p.index % 40}",
                 "ward": p.ward[0], "district": p.ward[1], "province": p.ward[2], "tariff_code": "residential"}
                for p in missing
            ]
            for start in range(0, len(rows), 1000):
                await session.execute(insert(Customer), rows[start : start + 1000])
            ids = dict((await session.execute(select(Customer.code, Customer.id).where(Customer.code.in_([p.code for p in missing])))).all())
            await session.execute(
                insert(Contract),
                [{"customer_id": ids[p.code], "contract_number": f"HD-PK-{p.index:07d}", "meter_serial": f"MTPK{p.index:08d}",
                  "tariff_code": "residential", "start_date": today.replace(year=today.year - 3, day=1)} for p in missing],
            )
            bills = []
            for months_back in (3, 2, 1):
                period = current.shift(-months_back)
                tariff = await load_tariff(session, "residential", period.last_day)
                for p in missing:
                    kwh = 120 + (p.index * 37 + months_back * 11) % 300
                    amount = compute_amount(kwh, tariff.tiers, tariff.vat_percent)
                    unpaid = months_back == 1
                    bills.append({
                        "customer_id": ids[p.code], "period": str(period), "kwh": kwh, "amount_before_vat": amount.subtotal,
                        "vat_amount": amount.vat, "amount": amount.total,
                        "due_date": period.shift(1).first_day.replace(day=20), "status": "unpaid" if unpaid else "paid",
                        "paid_at": None if unpaid else vn_datetime(period.shift(1).first_day.replace(day=5), 10),
                        "issued_at": vn_datetime(period.shift(1).first_day, 8),
                    })
            for start in range(0, len(bills), 2000):
                await session.execute(insert(Bill), bills[start : start + 2000])
            return len(missing)
    finally:
        await db.dispose()


# ----------------------------------------------------------------------------- scenarios

Turn = tuple[str, str]  # (message, what the reply must contain; "re:" + a pattern for a regex)


def scenario_turns(kind: str, person: Persona, linked: bool, rng: random.Random) -> list[Turn]:
    """What `person` says in a visit of this kind (and what each answer must contain); a chat
    that is not linked yet goes through the ownership check (code, then phone) first."""
    ward, district, _ = person.ward

    def after_check(message: str, expected: str) -> list[Turn]:
        if linked:
            return [(message, expected)]
        return [(message, "mã khách hàng"), (person.code, "số điện thoại"), (person.phone, expected)]

    if kind == "bill":
        return [*after_check("tra cứu hóa đơn", "kWh"), ("tiền điện tháng trước", "kWh")]
    # Visits end with thanks: the same request three times in a row is handed to a person.
    thanks = ("cảm ơn", "không có gì")
    if kind == "pay":
        return [*after_check("thanh toán tiền điện", "/payments/"), thanks]
    if kind == "outage":
        return [(f"mất điện ở {ward.lower()} {district.lower()}", "re:" + REPORT_REF.pattern), thanks]
    tariff = rng.choice([("giá điện sinh hoạt", "Biểu giá"), (f"{rng.randrange(80, 600)} số hết bao nhiêu tiền", "Ước tính")])
    return [("xin chào", "Xin chào"), ("giúp tôi với", "Tôi có thể giúp"), tariff, thanks]


def reply_problem(message: str, expected: str, replies: Any) -> str | None:
    if not isinstance(replies, list) or not replies:
        return f"empty or malformed reply to {message!r}: {str(replies)[:120]}"
    text = " ".join(f"{r.get('text') or ''} {r.get('image') or ''}" for r in replies if isinstance(r, dict))
    found = re.search(expected[3:], text) if expected.startswith("re:") else expected in text
    if not found:
        return f"reply to {message!r} lacks {expected!r}: {text[:160]!r}"
    return None


# ----------------------------------------------------------------------------- the run


@dataclass
class Sent:
    message: str
    answered: bool  # 200 with a reply (it must then be in the tracker, exactly once)


@dataclass
class Stats:
    turns: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # successful turns


@dataclass
class Run:
    run_id: str
    started: float = 0.0
    wall_seconds: float = 0.0
    by_kind: dict[str, Stats] = field(default_factory=lambda: defaultdict(Stats))
    conversations: dict[str, list[Sent]] = field(default_factory=lambda: defaultdict(list))
    burst_senders: list[str] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    transactions: int = 0  # PostgreSQL transactions in the benchmark's database during the run
    workers_user: float = 0.0  # CPU seconds the bot workers used during the run, in Python...
    workers_system: float = 0.0  # ... and in the kernel
    client_cpu: float = 0.0  # CPU seconds this load generator used
    peak_rss_mb: list[float] = field(default_factory=list)  # each server process's peak resident memory
    db_connections: int = 0  # most connections to the benchmark database at once (sampled each second)
    db_lock_waits: int = 0  # most of them waiting for a row lock at once
    db_idle_in_transaction: int = 0  # most of them in a transaction, waiting for their worker

    def record(self, kind: str, sender: str, message: str, elapsed_ms: float, problem: str | None, status: str) -> None:
        stats = self.by_kind[kind]
        stats.turns += 1
        self.statuses[status] += 1
        self.conversations[sender].append(Sent(message, problem is None or status == "200"))
        if problem is None:
            stats.latencies_ms.append(elapsed_ms)
            return
        stats.errors += 1
        if len(self.error_samples) < 8:
            self.error_samples.append(f"{kind} {sender}: {problem}")


async def send(session: aiohttp.ClientSession, url: str, sender: str, message: str, expected: str) -> tuple[str | None, str]:
    """(problem or None, status) for one message."""
    try:
        async with session.post(url + WEBHOOK_PATH, json={"sender": sender, "message": message}) as response:
            if response.status != 200:
                return f"HTTP {response.status} for {message!r}: {(await response.text())[:120]}", str(response.status)
            replies = await response.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        return f"{type(exc).__name__} for {message!r}: {exc}", type(exc).__name__
    return reply_problem(message, expected, replies), "200"


async def turn(run: Run, session: aiohttp.ClientSession, url: str, kind: str, sender: str, message: str, expected: str) -> bool:
    started = time.perf_counter()
    problem, status = await send(session, url, sender, message, expected)
    run.record(kind, sender, message, (time.perf_counter() - started) * 1000, problem, status)
    return problem is None


class Pacer:
    """Spaces turns 1/rate apart over all visitors (an offered load); rate 0 = no pacing."""

    def __init__(self, rate: float) -> None:
        self.interval = 1 / rate if rate > 0 else 0.0
        self.next = time.monotonic()

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        at = max(now, self.next)
        self.next = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)


async def visitor(run: Run, session: aiohttp.ClientSession, urls: list[str], queue: deque[Persona], linked: set[str],
                  deadline: float, rng: random.Random, pacer: Pacer) -> None:
    """One simulated person: takes a customer, makes one visit, gives the customer back."""
    kinds, weights = list(SCENARIOS), list(SCENARIOS.values())
    while time.monotonic() < deadline and queue:
        person = queue.popleft()
        sender = f"load-{run.run_id}-{person.index}"
        url = urls[person.index % len(urls)]
        kind = rng.choices(kinds, weights)[0]
        for message, expected in scenario_turns(kind, person, sender in linked, rng):
            await pacer.wait()
            if not await turn(run, session, url, kind, sender, message, expected):
                break  # a person whose answer went wrong does not carry on as if it had not
            if expected in ("kWh", "/payments/"):
                linked.add(sender)
        queue.append(person)


async def burst(run: Run, session: aiohttp.ClientSession, urls: list[str], count: int, at: float, window: float) -> None:
    """`count` new chats report the outage in the burst ward, evenly spread over `window` s."""

    async def one(k: int) -> None:
        await asyncio.sleep(max(0.0, run.started + at + k * window / count - time.monotonic()))
        sender = f"load-{run.run_id}-burst-{k}"
        run.burst_senders.append(sender)
        await turn(run, session, urls[k % len(urls)], "burst", sender, BURST_MESSAGES[k % len(BURST_MESSAGES)], "re:" + REPORT_REF.pattern)

    await asyncio.gather(*(one(k) for k in range(count)))


async def watch_database(database_url: str, run: Run, stop: asyncio.Event) -> None:
    """Once a second: the benchmark database's connections, and how many wait for a lock."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    # Autocommit: inside one transaction pg_stat_activity would show the same snapshot each time.
    engine = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
    query = text(
        "SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock'), count(*) FILTER (WHERE state = 'idle in transaction') "
        "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    try:
        async with engine.connect() as conn:
            while not stop.is_set():
                total, waiting, idle_in_transaction = (await conn.execute(query)).one()
                run.db_connections = max(run.db_connections, int(total))
                run.db_lock_waits = max(run.db_lock_waits, int(waiting))
                run.db_idle_in_transaction = max(run.db_idle_in_transaction, int(idle_in_transaction))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        await engine.dispose()


async def drive(urls: list[str], people: list[Persona], args: argparse.Namespace, database_url: str) -> Run:
    run = Run(run_id=f"{time.strftime('%H%M%S')}{uuid.uuid4().hex[:4]}")
    rng = random.Random(args.seed)
    queue = deque(rng.sample(people, len(people)))
    linked: set[str] = set()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for n, url in enumerate(urls):  # warm-up, not counted: first model use, connection pools
            for message in ("xin chào", "giúp tôi với", "giá điện sinh hoạt", "cảm ơn"):
                await send(session, url, f"load-{run.run_id}-warmup-{n}", message, "")
        run.started = time.monotonic()
        deadline = run.started + args.duration
        pacer = Pacer(args.rate)
        tasks = [visitor(run, session, urls, queue, linked, deadline, random.Random(rng.random()), pacer) for _ in range(args.concurrency)]
        if args.burst:
            tasks.append(burst(run, session, urls, args.burst, args.burst_at, args.burst_window))
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_database(database_url, run, stop))
        try:
            async with asyncio.timeout(args.duration + args.request_timeout + 30):
                await asyncio.gather(*tasks)
        except TimeoutError:
            run.error_samples.append("the run did not finish in time; the figures cover what was done")
        run.wall_seconds = time.monotonic() - run.started
        stop.set()
        with contextlib.suppress(Exception):
            await watcher
    return run


# ----------------------------------------------------------------------------- verification


@dataclass
class Verdict:
    conversations: int = 0
    messages: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unanswered: int = 0
    samples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.samples) < 8:
            self.samples.append(text)


def check_conversation(sender: str, sent: list[Sent], events: list[dict[str, Any]], verdict: Verdict) -> None:
    """Compare what was sent with the user events of the tracker: each answered message exactly
    once, in order (a message that errored may be there or not), and a bot event after each."""
    users = [i for i, e in enumerate(events) if e.get("event") == "user"]
    texts = [str(events[i].get("text") or "") for i in users]
    for n, i in enumerate(users):
        end = users[n + 1] if n + 1 < len(users) else len(events)
        if not any(e.get("event") == "bot" for e in events[i + 1 : end]):
            verdict.unanswered += 1
            verdict.note(f"{sender}: no bot message after {texts[n]!r}")
    required = Counter(s.message for s in sent if s.answered)
    allowed = Counter(s.message for s in sent)
    present = Counter(texts)
    lost = sum((required - present).values())
    extra = sum((present - allowed).values())
    verdict.lost += lost
    verdict.duplicated += extra
    if lost or extra:
        verdict.note(f"{sender}: sent {[s.message for s in sent]}, tracker has {texts}")
        return
    if not in_sent_order(sent, texts):
        verdict.out_of_order += 1
        verdict.note(f"{sender}: order differs: sent {[x.message for x in sent]}, tracker has {texts}")


def in_sent_order(sent: list[Sent], texts: list[str]) -> bool:
    """Whether the tracker's user texts are the messages sent, in order, with some of the
    unanswered ones (errors) left out. Not greedy: an errored "hi" followed by an answered "hi"
    must be able to match the tracker's one "hi" to the second."""

    @functools.cache
    def fits(i: int, j: int) -> bool:
        if i == len(sent):
            return j == len(texts)
        matches = j < len(texts) and texts[j] == sent[i].message and fits(i + 1, j + 1)
        return matches if sent[i].answered else matches or fits(i + 1, j)

    return fits(0, 0)


async def verify_trackers(redis_url: str, run: Run) -> Verdict:
    import json

    from redis.asyncio import Redis

    verdict = Verdict()
    redis = Redis.from_url(redis_url)
    try:
        senders = list(run.conversations)
        for start in range(0, len(senders), 500):
            chunk = senders[start : start + 500]
            async with redis.pipeline(transaction=False) as pipe:
                for sender in chunk:
                    pipe.lrange(f"tracker:{sender}", 0, -1)
                results = await pipe.execute()
            for sender, raw in zip(chunk, results, strict=True):
                events = [json.loads(r) for r in raw]
                verdict.conversations += 1
                verdict.messages += len(run.conversations[sender])
                check_conversation(sender, run.conversations[sender], events, verdict)
    finally:
        await redis.aclose()
    return verdict


async def burst_reports(database_url: str, run: Run) -> tuple[int, int]:
    """(reports recorded for the burst's chats, distinct incidents they joined)."""
    from sqlalchemy import func, select

    from backend import db
    from backend.models import OutageReport

    if not run.burst_senders:
        return 0, 0
    db.configure(database_url)
    try:
        async with db.read_scope() as session:
            row = (await session.execute(
                select(func.count(), func.count(func.distinct(OutageReport.incident_id)))
                .where(OutageReport.channel == "rest", OutageReport.recipient_id.in_(run.burst_senders))
            )).one()
            return int(row[0]), int(row[1])
    finally:
        await db.dispose()


async def database_transactions(database_url: str) -> int:
    """Transactions committed or rolled back in the benchmark's database so far (pg_stat_database)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            value = await conn.scalar(
                text("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
            )
            return int(value or 0)
    finally:
        await engine.dispose()


# ----------------------------------------------------------------------------- the report


def stats_row(label: str, stats: Stats, seconds: float) -> list[str]:
    values = sorted(stats.latencies_ms)
    rate = len(values) / seconds if seconds > 0 else math.nan
    return [label, str(stats.turns), str(stats.errors), f"{rate:.1f}", *(f"{percentile(values, p):.0f}" for p in (50, 95, 99)),
            f"{values[-1]:.0f}" if values else "nan"]


def report(run: Run, verdict: Verdict, burst: tuple[int, int], args: argparse.Namespace, setup: str) -> tuple[str, bool]:
    total = Stats()
    for stats in run.by_kind.values():
        total.turns += stats.turns
        total.errors += stats.errors
        total.latencies_ms += stats.latencies_ms
    header = ["turns", "count", "errors", "turns/s", "p50 ms", "p95 ms", "p99 ms", "max ms"]
    rows = [stats_row("all", total, run.wall_seconds)]
    rows += [stats_row(kind, run.by_kind[kind], run.wall_seconds) for kind in [*SCENARIOS, "burst"] if kind in run.by_kind]
    offered = f", offered {args.rate:g} turns/s" if args.rate else ""
    lines = [
        f"{setup}; {args.customers} customers, concurrency {args.concurrency}{offered}, {run.wall_seconds:.1f} s",
        "",
        markdown_table(header, rows, right=range(1, len(header))),
        "",
    ]
    workers_cpu, turns = run.workers_user + run.workers_system, max(1, total.turns)
    burst_sent = run.by_kind["burst"].turns if args.burst else 0
    burst_ok = len(run.by_kind["burst"].latencies_ms) if args.burst else 0
    burst_good = not args.burst or (burst[0] >= burst_ok and burst[1] == 1)
    checks = [
        ("conversations checked in Redis", str(verdict.conversations), True),
        ("messages sent", str(verdict.messages), True),
        ("lost (sent, answered, not in the tracker)", str(verdict.lost), verdict.lost == 0),
        ("duplicated in the tracker", str(verdict.duplicated), verdict.duplicated == 0),
        ("out of order", str(verdict.out_of_order), verdict.out_of_order == 0),
        ("unanswered (no bot event after the message)", str(verdict.unanswered), verdict.unanswered == 0),
        ("burst: reports recorded / answered / sent", f"{burst[0]} / {burst_ok} / {burst_sent}", burst_good),
        ("burst: incidents the reports joined", str(burst[1]), burst_good),
        ("HTTP statuses", ", ".join(f"{k}: {v}" for k, v in sorted(run.statuses.items())), True),
        ("PostgreSQL transactions per turn", f"{run.transactions / max(1, total.turns):.1f}", True),
        ("PostgreSQL connections: most open / waiting for a lock / idle in transaction",
         f"{run.db_connections} / {run.db_lock_waits} / {run.db_idle_in_transaction}", True),
        ("CPU: workers / load generator (cores busy)", f"{workers_cpu / run.wall_seconds:.2f} / {run.client_cpu / run.wall_seconds:.2f}", True),
        ("worker CPU per turn (user + system)",
         f"{1000 * workers_cpu / turns:.1f} ms ({1000 * run.workers_user / turns:.1f} + {1000 * run.workers_system / turns:.1f})", True),
    ]
    if run.peak_rss_mb:
        checks.append(("peak memory (RSS) of the server processes: largest / all", f"{max(run.peak_rss_mb):.0f} / {sum(run.peak_rss_mb):.0f} MiB", True))
    lines.append(markdown_table(["check", "result", "ok"], [[c, v, "yes" if ok else "NO"] for c, v, ok in checks]))
    p99 = percentile(sorted(total.latencies_ms), 99)
    rate = len(total.latencies_ms) / run.wall_seconds if run.wall_seconds else 0.0
    lines.append("")
    lines.append(
        f"target: >= 400 turns/s ({rate:.0f}), p99 < 150 ms ({p99:.0f}), 0 errors ({total.errors}), 0 lost ({verdict.lost}): "
        + ("MET" if rate >= 400 and p99 < 150 and total.errors == 0 and verdict.lost == 0 else "not met")
    )
    for sample in run.error_samples + verdict.samples:
        lines.append(f"  - {sample}")
    correct = total.errors == 0 and all(ok for _, _, ok in checks)
    return "\n".join(lines), correct


# ----------------------------------------------------------------------------- the CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/load.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=2000, help="generated customers (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=32, help="customers in a conversation at once (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="offer this many turns/s (paced over the visitors; 0: each visitor sends as soon as it has its answer)")
    parser.add_argument("--workers", type=int, default=2, help="bot worker processes (default: %(default)s)")
    parser.add_argument("--mode", choices=["ports", "reuseport"], default="ports",
                        help="ports: one `bot serve` per worker, customers spread over them; reuseport: `bot serve --workers N`")
    parser.add_argument("--burst", type=int, default=1000, help="outage reports for one ward (0: none; default: %(default)s)")
    parser.add_argument("--burst-window", type=float, default=60.0, help="seconds the burst is spread over (default: %(default)s)")
    parser.add_argument("--burst-at", type=float, default=5.0, help="seconds into the run the burst starts (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="20-second smoke run: 300 customers, concurrency 16, burst of 200 in 12 s")
    parser.add_argument("--models", help="models folder to use (default: models/, or train one into a temporary folder)")
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds before a turn counts as an error (default: %(default)s)")
    parser.add_argument("--profile", action="store_true", help="sample every worker with py-spy during the run and print the hotspots")
    parser.add_argument("--measure-rate-limiter", action="store_true",
                        help="do not exempt loopback from the inbound rate limiter (set generously), so its cost is in the turns")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the scenario mix (default: %(default)s)")
    return parser


@contextlib.contextmanager
def run_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="bench-load-"))
    yield folder
    print(f"server logs and profiles: {folder}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.customers, args.duration, args.concurrency = min(args.customers, 300), 20.0, min(args.concurrency, 16)
        args.burst, args.burst_window, args.burst_at = min(args.burst, 200), 12.0, 3.0
    if args.concurrency > args.customers:
        args.concurrency = args.customers  # a customer is in one conversation at a time
    try:
        database_url, redis_url = require_production_env()
        if args.mode == "reuseport" and not serve_supports_workers():
            raise BenchmarkError("--mode reuseport needs `python -m bot serve --workers N`, which this checkout does not have")
        people = personas(args.customers)
        with trained_models(args.models) as models_dir, run_folder() as folder:
            extra = {}
            if args.measure_rate_limiter:
                extra = {"RATE_LIMIT_EXEMPT": "192.0.2.1/32", "RATE_LIMIT_PER_SENDER": "1000/s", "RATE_LIMIT_PER_IP": "1000000/s"}
            env = production_environment(database_url, redis_url, models_dir, **extra)
            print("migrating and seeding ...", file=sys.stderr)
            run_bot_command(["db", "upgrade"], env, timeout=300)
            run_bot_command(["seed"], env, timeout=300)
            added = asyncio.run(insert_customers(database_url, people))
            print(f"{added} customers added ({args.customers - added} were there); starting {args.workers} workers ({args.mode}) ...", file=sys.stderr)
            with started_servers(env, args.workers, args.mode, folder) as servers:
                print(f"load: {args.duration:g} s against {', '.join(servers.urls)} ...", file=sys.stderr)
                profile = contextlib.nullcontext([])
                if args.profile:
                    profile = profiled(servers.pids, args.duration + 5, folder, subprocesses=args.mode == "reuseport")
                transactions_before = asyncio.run(database_transactions(database_url))
                (user, system), client_cpu = cpu_seconds(servers.pids), time.process_time()
                with profile as profiles:
                    run = asyncio.run(drive(servers.urls, people, args, database_url))
                user_after, system_after = cpu_seconds(servers.pids)
                run.peak_rss_mb = peak_rss_mb(servers.pids)
                run.workers_user, run.workers_system = user_after - user, system_after - system
                run.client_cpu = time.process_time() - client_cpu
                time.sleep(1.5)  # PostgreSQL publishes its counters about once a second
                run.transactions = asyncio.run(database_transactions(database_url)) - transactions_before - 2
            verdict = asyncio.run(verify_trackers(redis_url, run))
            burst_result = asyncio.run(burst_reports(database_url, run))
            setup = f"{args.workers} workers ({args.mode}), PostgreSQL + Redis"
            text, correct = report(run, verdict, burst_result, args, setup)
            print()
            print(machine_line())
            print(text)
            if args.profile:
                print()
                print(profile_report(hotspots(profiles)))
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
