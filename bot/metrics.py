"""Prometheus metrics: what the service counts, and `GET /metrics` that exposes them.

The names are a contract with the Grafana dashboard; change them only together.

| metric | type | labels | |
|---|---|---|---|
| bot_turn_seconds | histogram | channel | one customer turn, lock wait included |
| bot_nlu_confidence | histogram | | top intent confidence of classified messages (not buttons) |
| bot_nlu_fallback_total | counter | | messages the NLU classed as nlu_fallback |
| bot_intent_total | counter | intent | messages per intent (buttons included) |
| bot_handoff_queue_length | gauge | | conversations waiting for an agent (database, at scrape) |
| bot_handoff_wait_seconds | histogram | | escalation to an agent's claim (callback tickets too) |
| bot_outbox_backlog | gauge | channel | outbox messages pending (database, at scrape) |
| bot_outbox_failures_total | counter | channel, outcome | failed sends: outcome retry, or failed (given up) |
| bot_model_info | gauge | version | 1, for the NLU model this process serves |
| bot_http_requests_total | counter | method, route, status | route is the pattern, e.g. /console/h/{id} |

Counters and histograms live in this process's registry, and each worker process is scraped
on its own. With several processes behind one port (`serve --workers N`), set
`PROMETHEUS_MULTIPROC_DIR` to an empty directory shared by them before they start:
prometheus_client then keeps the values in files there, and whichever process answers the
scrape adds up all of them (its multiprocess collector). The gauges are read when scraped
(the queues from the database, the model from the process), so they need no multiprocess mode.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from backend.services import handoff, monitoring
from backend.services.handoff import HandoffInfo
from backend.settings import Settings
from bot.observability import bind_conversation, bind_request, unbind_conversation, unbind_request

log = logging.getLogger(__name__)

TURN_SECONDS = Histogram(
    "bot_turn_seconds", "Time to handle one customer message, waiting for the conversation lock included.",
    ["channel"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
NLU_CONFIDENCE = Histogram(
    "bot_nlu_confidence", "Confidence of the top intent of classified messages (button payloads excluded).",
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
)
NLU_FALLBACK = Counter("bot_nlu_fallback", "Messages the NLU classed as nlu_fallback (below the confidence threshold).")
INTENTS = Counter("bot_intent", "Customer messages per predicted intent (button payloads included).", ["intent"])
HANDOFF_WAIT = Histogram(
    "bot_handoff_wait_seconds", "Time from escalation to an agent claiming the conversation.",
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400),
)
OUTBOX_FAILURES = Counter(
    "bot_outbox_failures", "Failed outbox sends: outcome=retry (sent again later) or failed (given up).", ["channel", "outcome"]
)
HTTP_REQUESTS = Counter("bot_http_requests", "HTTP requests by route pattern and status.", ["method", "route", "status"])

FALLBACK_INTENT = "nlu_fallback"
# Reported even when empty, so a dashboard shows 0 rather than no data.
OUTBOX_CHANNELS = ("rest", "telegram", "zalo")
SCRAPE_QUERY_SECONDS = 1.0
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")

# Labelled children cached per label value: `labels()` takes a lock and builds a key each time.
_turn_seconds: dict[str, Any] = {}
_intents: dict[str, Any] = {}


class TurnScope:
    """`with TurnScope(conversation_id, channel):` around one turn. Log records inside name the
    conversation and channel; the turn's duration goes into bot_turn_seconds."""

    __slots__ = ("conversation_id", "channel", "_tokens", "_started")

    def __init__(self, conversation_id: str, channel: str) -> None:
        self.conversation_id = conversation_id
        self.channel = channel

    def __enter__(self) -> TurnScope:
        self._tokens = bind_conversation(self.conversation_id, self.channel)
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        seconds = time.perf_counter() - self._started
        histogram = _turn_seconds.get(self.channel)
        if histogram is None:
            histogram = _turn_seconds[self.channel] = TURN_SECONDS.labels(self.channel)
        histogram.observe(seconds)
        log.debug("turn handled in %.1f ms", seconds * 1000)
        unbind_conversation(self._tokens)


def observe_parse(parse_data: dict[str, Any], text: str) -> None:
    """Count the intent of one message; its confidence too unless a button payload (which
    bypasses the classifier at confidence 1) was parsed."""
    intent = parse_data.get("intent") or {}
    name = str(intent.get("name") or "none")
    counter = _intents.get(name)
    if counter is None:
        counter = _intents[name] = INTENTS.labels(name)
    counter.inc()
    if name == FALLBACK_INTENT:
        NLU_FALLBACK.inc()
    if not (text.lstrip().startswith("/") and len(parse_data.get("intent_ranking") or ()) == 1):
        NLU_CONFIDENCE.observe(float(intent.get("confidence") or 0.0))


def outbox_send_failed(channel: str, gave_up: bool) -> None:
    """One failed send of an outbox message: to be retried, or given up for good."""
    OUTBOX_FAILURES.labels(channel, "failed" if gave_up else "retry").inc()


def observe_handoff_claim(info: HandoffInfo) -> None:
    """A claim listener (backend.services.handoff): how long the conversation waited."""
    if info.claimed_at is not None:
        HANDOFF_WAIT.observe(max(0.0, (info.claimed_at - info.created_at).total_seconds()))


# -- HTTP --------------------------------------------------------------------------------------


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    """Gives each request an id (the caller's `X-Request-ID` if it looks like one, else a new
    one; echoed in the response) that its log records carry, and counts the request by method,
    route pattern (not the raw path, which holds ids) and status."""
    request_id = request.headers.get("X-Request-ID", "")
    if not _REQUEST_ID_RE.fullmatch(request_id):
        request_id = uuid.uuid4().hex
    method = request.method if request.method in _METHODS else "OTHER"
    token = bind_request(request_id)
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects and the like, raised through json_errors
        exc.headers["X-Request-ID"] = request_id
        HTTP_REQUESTS.labels(method, _route(request), str(exc.status)).inc()
        raise
    except Exception:
        HTTP_REQUESTS.labels(method, _route(request), "500").inc()
        raise
    finally:
        unbind_request(token)
    if not response.prepared:  # a WebSocket or a stream has sent its headers already
        response.headers["X-Request-ID"] = request_id
    HTTP_REQUESTS.labels(method, _route(request), str(response.status)).inc()
    return response


class _Exposition:
    """What one scrape exposes: the counters and histograms, then the gauges read just now."""

    def __init__(self, source: Any, gauges: list[Metric]) -> None:
        self.source = source
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()
        yield from self.gauges


async def _gauges(model_version: str | None) -> list[Metric]:
    gauges: list[Metric] = []
    if model_version:
        info = GaugeMetricFamily("bot_model_info", "The NLU model this process serves (value 1).", labels=["version"])
        info.add_metric([model_version], 1)
        gauges.append(info)
    try:
        async with asyncio.timeout(SCRAPE_QUERY_SECONDS):
            queues = await monitoring.queue_lengths()
    except Exception as exc:  # the scrape still answers, without the database gauges
        log.warning("metrics: queue lengths not read (%s)", type(exc).__name__)
        return gauges
    gauges.append(
        GaugeMetricFamily("bot_handoff_queue_length", "Conversations waiting for an agent.", value=queues.handoffs_waiting)
    )
    backlog = GaugeMetricFamily("bot_outbox_backlog", "Outbox messages pending, per channel.", labels=["channel"])
    for channel in sorted(set(OUTBOX_CHANNELS) | set(queues.outbox_pending)):
        backlog.add_metric([channel], queues.outbox_pending.get(channel, 0))
    gauges.append(backlog)
    return gauges


def register_metrics(app: web.Application, settings: Settings, model_version: Callable[[], str | None]) -> None:
    """`GET /metrics` (Prometheus text format, or OpenMetrics when asked). With `METRICS_TOKEN`
    set it needs `Authorization: Bearer <token>`; unset, it is open."""
    handoff.add_claim_listener(observe_handoff_claim)
    token = settings.metrics_token.get_secret_value().encode() if settings.metrics_token else None
    source = MultiProcessCollector(None) if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else REGISTRY

    async def metrics(request: web.Request) -> web.Response:
        if token is not None:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip().encode()
            if not hmac.compare_digest(given, token):
                return web.json_response(
                    {"error": "a valid bearer token is required"}, status=401, headers={"WWW-Authenticate": "Bearer"}
                )
        gauges = await _gauges(model_version())
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(_Exposition(source, gauges)), headers={"Content-Type": content_type})

    app.router.add_get("/metrics", metrics)
