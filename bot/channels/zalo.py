"""Zalo Official Account (Open API v3): webhook events in, customer-service messages out.

Webhook `POST /webhooks/zalo`. Zalo signs each event: `X-ZEvent-Signature` is
`mac=` + SHA-256(app_id + raw body + timestamp + OA secret key), where timestamp is the event's
own `timestamp` field (so the body is read as JSON to check it; an unreadable body cannot be
verified and gets 401). After the edge (`middleware.WebhookEdge`: dedupe on msg_id, 200 at
once, processing in the background):

* `user_send_text` -> the text (a button press comes back as its payload, as text);
* `user_send_location` -> the outage report for the nearest demo ward (`places.py`);
* `user_send_image` / `_sticker` / `_file` / `_gif` / `_audio` / `_video` -> "I can read text";
* `follow` -> the welcome (greeting with the menu); `unfollow` -> noted in the log;
* anything else (delivery and seen receipts, the OA's own messages) is acknowledged and ignored.

Sending (`ZaloSender`, by the outbox worker): `POST {api}/v3.0/oa/message/cs` with the
`access_token` header. Zalo answers HTTP 200 with `"error": <code>`; only 0 is success.
Expired or invalid token -> refresh (once per send) and resend; rate limited or a transient
failure -> retry later; outside the interaction window, not a follower, invalid message ->
give up with the reason. Tokens: `ZaloTokens` (refresh protocol in
`backend.services.channel_tokens`: one refresh at a time across all workers, the new pair
stored before it is used).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
from aiohttp import web

from backend.clock import utcnow
from backend.services import channel_tokens
from backend.services.channel_tokens import Busy, Tokens
from backend.services.notifications import OutboxItem
from backend.settings import Settings
from backend.token_crypto import encrypting
from bot.channels.base import (
    MAX_MESSAGE_CHARS,
    ChannelHost,
    InputChannel,
    Message,
    UserMessage,
    valid_unicode,
)
from bot.channels.middleware import (
    TEXT_ONLY_REPLY,
    BadUpdate,
    GiveUp,
    KeyValueStore,
    RateLimiter,
    RetryLater,
    TaskSet,
    TurnRelay,
    WebhookEdge,
    is_public_https,
    parse_json_object,
    split_text,
)
from bot.channels.places import coordinates, location_text
from bot.config_files import ConfigFileError

log = logging.getLogger(__name__)

NAME = "zalo"
SIGNATURE_HEADER = "X-ZEvent-Signature"
MAX_TEXT = 2000  # characters in one customer-service message
MAX_BUTTONS = 5
NON_TEXT_EVENTS = {
    "user_send_image",
    "user_send_sticker",
    "user_send_file",
    "user_send_gif",
    "user_send_audio",
    "user_send_video",
    "user_send_link",
    "user_send_business_card",
}
# Zalo's error codes (https://developers.zalo.me, "Mã lỗi"): what each means for a send.
TOKEN_ERRORS = {-216: "access token is invalid", -220: "access token is expired or removed", -124: "access token is invalid"}
RETRY_ERRORS = {-32: "rate limited", -200: "send failed", -214: "being processed"}
GIVE_UP_ERRORS = {
    -201: "invalid parameter",
    -210: "parameter exceeds the allowed limit",
    -211: "out of quota",
    -213: "the user does not follow the OA",
    -227: "the user is banned or inactive",
    -230: "outside the interaction window (no interaction in 7 days)",
    -232: "outside the interaction window",
    -233: "message type not supported",
    -244: "the user restricted this message type",
}
RATE_LIMIT_RETRY_SECONDS = 30.0  # Zalo's limit is counted per minute
REFRESH_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class ZaloConfig:
    app_id: str | None
    app_secret: str | None
    oa_secret_key: str | None
    access_token: str | None
    refresh_token: str | None
    api_base_url: str
    oauth_base_url: str

    @property
    def enabled(self) -> bool:
        return bool(self.access_token or self.refresh_token)

    @classmethod
    def from_settings(cls, settings: Settings, credentials: dict[str, Any], path: str = "credentials.yml") -> ZaloConfig:
        """Settings (environment) first, then credentials.yml; an enabled channel without what
        it needs to verify webhooks stops startup with an error naming the key."""

        def pick(field: str, key: str) -> str | None:
            value = getattr(settings, field)
            value = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            if field in settings.model_fields_set and value:
                return str(value)
            return str(credentials[key]) if credentials.get(key) else (str(value) if value else None)

        config = cls(
            app_id=pick("zalo_app_id", "app_id"),
            app_secret=pick("zalo_app_secret", "app_secret"),
            oa_secret_key=pick("zalo_oa_secret_key", "oa_secret_key"),
            access_token=pick("zalo_access_token", "access_token"),
            refresh_token=pick("zalo_refresh_token", "refresh_token"),
            api_base_url=(pick("zalo_api_base_url", "api_base_url") or "https://openapi.zalo.me").rstrip("/"),
            oauth_base_url=(pick("zalo_oauth_base_url", "oauth_base_url") or "https://oauth.zaloapp.com").rstrip("/"),
        )
        if config.enabled:
            for key, value, variable in (("app_id", config.app_id, "ZALO_APP_ID"), ("oa_secret_key", config.oa_secret_key, "ZALO_OA_SECRET_KEY")):
                if not value:
                    raise ConfigFileError(path, f"zalo.{key}", f"{variable} is needed when a Zalo token is set (it verifies webhooks)")
        return config

    def __repr__(self) -> str:
        return f"ZaloConfig(enabled={self.enabled}, app_id={self.app_id!r}, api_base_url={self.api_base_url!r})"


def signature(app_id: str, raw: bytes, timestamp: str, oa_secret_key: str) -> str:
    """Zalo's event MAC: hex SHA-256 of app_id + body + timestamp + OA secret key."""
    return hashlib.sha256(app_id.encode() + raw + timestamp.encode() + oa_secret_key.encode()).hexdigest()


class ZaloTokens:
    """This process's view of the OA tokens: the database holds the truth (shared by every
    worker); we cache it, refresh it before it expires, and refresh at most once at a time."""

    def __init__(self, config: ZaloConfig, http: aiohttp.ClientSession, owner: str, reread_seconds: float = 60.0) -> None:
        self.config = config
        self.http = http
        self.owner = owner
        self.reread_seconds = reread_seconds
        self._cached: Tokens | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def seed(self) -> None:
        """Put the configured tokens in the database (kept if they are already there)."""
        self._cached = await channel_tokens.seed(NAME, self.config.access_token or "", self.config.refresh_token)
        self._read_at = time.monotonic()

    async def get(self) -> Tokens:
        """A usable access token: from the cache, re-read from the database now and then (another
        worker may have refreshed), refreshed first if empty or about to expire."""
        if self._cached is None or time.monotonic() - self._read_at > self.reread_seconds:
            stored = await channel_tokens.current(NAME)
            if stored is None:
                await self.seed()
            else:
                self._cached, self._read_at = stored, time.monotonic()
        tokens = self._cached
        assert tokens is not None
        expiring = tokens.access_expires_at is not None and tokens.access_expires_at - utcnow() < REFRESH_MARGIN
        if not tokens.access_token or expiring:
            return await self.refresh(tokens)
        return tokens

    async def refresh(self, stale: Tokens) -> Tokens:
        """New tokens replacing `stale`: ours if we win the refresh, else the winner's."""
        async with self._lock:
            if self._cached is not None and self._cached.version > stale.version:
                return self._cached  # refreshed by another coroutine of this process meanwhile
            deadline = time.monotonic() + 60
            while True:
                outcome = await channel_tokens.claim_refresh(NAME, stale.version, self.owner)
                if outcome is None:
                    raise RetryLater("zalo: no tokens stored")
                if isinstance(outcome, Busy):
                    if time.monotonic() > deadline:
                        raise RetryLater("zalo: another worker's token refresh is taking too long")
                    await asyncio.sleep(0.1)
                    continue
                if outcome.version != stale.version:
                    log.info("zalo: using tokens version %d refreshed by another worker", outcome.version)
                    self._cached, self._read_at = outcome, time.monotonic()
                    return outcome
                break
            try:
                access, refresh, expires_in = await self._oauth_refresh(outcome.refresh_token)
            except BaseException:
                await channel_tokens.abandon_refresh(NAME, self.owner)
                raise
            expires_at = utcnow() + timedelta(seconds=expires_in) if expires_in else None
            stored = await channel_tokens.store_refresh(NAME, outcome.version, access, refresh, expires_at)
            log.info("zalo: tokens refreshed (version %d)", stored.version)
            self._cached, self._read_at = stored, time.monotonic()
            return stored

    async def _oauth_refresh(self, refresh_token: str | None) -> tuple[str, str, float | None]:
        if not refresh_token:
            raise RetryLater("zalo: the access token was refused and there is no refresh token; re-authorise the OA")
        if not self.config.app_secret or not self.config.app_id:
            raise RetryLater("zalo: ZALO_APP_ID and ZALO_APP_SECRET are needed to refresh the access token")
        url = f"{self.config.oauth_base_url}/v4/oa/access_token"
        form = {"refresh_token": refresh_token, "app_id": self.config.app_id, "grant_type": "refresh_token"}
        try:
            async with self.http.post(url, data=form, headers={"secret_key": self.config.app_secret}) as response:
                if response.status >= 500 or response.status == 429:
                    raise RetryLater(f"zalo oauth: HTTP {response.status}")
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            raise RetryLater(f"zalo oauth: {type(exc).__name__}") from None
        if not isinstance(body, dict) or not body.get("access_token") or not body.get("refresh_token"):
            code = body.get("error") if isinstance(body, dict) else None
            name = body.get("error_name") or body.get("message") if isinstance(body, dict) else None
            log.error("zalo: token refresh refused (error %s %s); re-authorise the OA (README, Zalo)", code, name)
            raise RetryLater(f"zalo oauth: refresh refused (error {code})")
        try:
            expires_in = float(body.get("expires_in") or 0) or None
        except (TypeError, ValueError):
            expires_in = None
        return str(body["access_token"]), str(body["refresh_token"]), expires_in


class ZaloSender:
    """Customer-service messages to a Zalo user (the outbox worker's side)."""

    channel = NAME

    def __init__(self, config: ZaloConfig, tokens: ZaloTokens, http: aiohttp.ClientSession, limiter: RateLimiter) -> None:
        self.config = config
        self.tokens = tokens
        self.http = http
        self.limiter = limiter

    async def deliver(self, item: OutboxItem, messages: list[Message]) -> None:
        for message in messages:
            await self.send(item.recipient_id, message)

    async def send(self, user_id: str, message: Message) -> None:
        text = str(message.get("text") or "")
        buttons = self.buttons(message.get("buttons") or [])
        image = str(message.get("image") or "")
        if image:
            if is_public_https(image):
                await self._post(user_id, self._media(image, text))
                return
            text = f"{text}\n{image}".strip()  # Zalo fetches images itself: a private URL as a link
        if not text and not buttons:
            return
        parts = split_text(text or "👇", MAX_TEXT)
        for part in parts[:-1]:
            await self._post(user_id, {"text": part})
        chunks = [buttons[i : i + MAX_BUTTONS] for i in range(0, len(buttons), MAX_BUTTONS)] or [[]]
        await self._post(user_id, self._with_buttons(parts[-1], chunks[0]))
        for chunk in chunks[1:]:
            await self._post(user_id, self._with_buttons("…", chunk))

    @staticmethod
    def buttons(buttons: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rasa buttons as Zalo buttons: a payload comes back as the user's message text
        (`oa.query.hide`: the chat shows the title, not the payload); public https URLs open."""
        out: list[dict[str, Any]] = []
        for button in buttons:
            title, payload = str(button.get("title") or "")[:100], str(button.get("payload") or "")
            if not title or not payload:
                continue
            if payload.startswith(("http://", "https://")):
                if is_public_https(payload):
                    out.append({"title": title, "type": "oa.open.url", "payload": {"url": payload}})
                continue  # the link is in the text already
            out.append({"title": title, "type": "oa.query.hide", "payload": payload[:1000]})
        return out

    @staticmethod
    def _with_buttons(text: str, buttons: list[dict[str, Any]]) -> dict[str, Any]:
        if not buttons:
            return {"text": text}
        return {"text": text, "attachment": {"type": "template", "payload": {"buttons": buttons}}}

    @staticmethod
    def _media(url: str, caption: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "attachment": {"type": "template", "payload": {"template_type": "media", "elements": [{"media_type": "image", "url": url}]}}
        }
        if caption:
            message["text"] = caption[:MAX_TEXT]
        return message

    async def _post(self, user_id: str, message: dict[str, Any]) -> None:
        await self.limiter.wait(user_id)
        tokens = await self.tokens.get()
        body = {"recipient": {"user_id": user_id}, "message": message}
        for attempt in (1, 2):
            code, description = await self._request(tokens.access_token, body)
            if code == 0:
                return
            if code in TOKEN_ERRORS and attempt == 1:
                log.info("zalo: access token refused (%s); refreshing", code)
                tokens = await self.tokens.refresh(tokens)
                continue
            break
        reason = f"zalo error {code}: {description}"
        if code in TOKEN_ERRORS:
            raise RetryLater(reason)
        if code in GIVE_UP_ERRORS:
            raise GiveUp(reason)
        if code == -32:
            raise RetryLater(reason, after=RATE_LIMIT_RETRY_SECONDS)
        raise RetryLater(reason)  # known transient codes, and unknown ones (max_attempts bounds them)

    async def _request(self, access_token: str, body: dict[str, Any]) -> tuple[int, str]:
        url = f"{self.config.api_base_url}/v3.0/oa/message/cs"
        try:
            async with self.http.post(url, json=body, headers={"access_token": access_token}) as response:
                if response.status == 429:
                    after = response.headers.get("Retry-After")
                    raise RetryLater("zalo: HTTP 429", after=float(after) if after and after.isdigit() else RATE_LIMIT_RETRY_SECONDS)
                if response.status >= 500:
                    raise RetryLater(f"zalo: HTTP {response.status}")
                if response.status != 200:
                    raise GiveUp(f"zalo: HTTP {response.status}")
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryLater(f"zalo: {type(exc).__name__}") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RetryLater("zalo: unreadable answer") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("error"), int):
            raise RetryLater("zalo: unexpected answer")
        code = answer["error"]
        known = TOKEN_ERRORS.get(code) or RETRY_ERRORS.get(code) or GIVE_UP_ERRORS.get(code)
        return code, known or str(answer.get("message") or "")[:200]


class ZaloChannel(InputChannel):
    """The webhook and its events; `tokens` and `sender()` for the outbox worker."""

    name = NAME

    def __init__(self, config: ZaloConfig, *, store: Callable[[], KeyValueStore], tasks: TaskSet, dedupe_ttl: int) -> None:
        self.config = config
        self.store = store
        self.tasks = tasks
        self.dedupe_ttl = dedupe_ttl
        self._relay: TurnRelay | None = None
        self.edge: WebhookEdge[dict[str, Any]] | None = None
        self.http: aiohttp.ClientSession | None = None
        self.tokens: ZaloTokens | None = None

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def register(self, app: web.Application, host: Callable[[], ChannelHost]) -> None:
        self._relay = TurnRelay(NAME, host)
        edge: WebhookEdge[dict[str, Any]] = WebhookEdge(
            channel=NAME,
            enabled=lambda: self.enabled,
            verify=self._verify,
            parse=self._parse,
            update_id=self._update_id,
            process=self._process,
            dedupe=self.store,
            tasks=self.tasks,
            dedupe_ttl=self.dedupe_ttl,
            sender=self._sender,
            relay=self._relay,
            journal=True,
        )
        self.edge = edge
        app.router.add_post("/webhooks/zalo", edge.handle)

    async def start(self, owner: str) -> None:
        if not self.enabled:
            return
        if not self.config.app_secret:
            log.warning("zalo: ZALO_APP_SECRET is unset; the access token cannot be refreshed when it expires")
        if not encrypting():
            log.warning("zalo: TOKEN_ENCRYPTION_KEY is unset; the OA's tokens are stored in the database unencrypted")
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15, connect=5), connector=aiohttp.TCPConnector(limit=100))
        self.tokens = ZaloTokens(self.config, self.http, owner)
        await self.tokens.seed()

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None

    def sender(self, limiter: RateLimiter) -> ZaloSender:
        assert self.http is not None and self.tokens is not None
        return ZaloSender(self.config, self.tokens, self.http, limiter)

    # -- the edge -------------------------------------------------------------------------------

    def _verify(self, request: web.Request, raw: bytes) -> bool:
        given = request.headers.get(SIGNATURE_HEADER, "").strip()
        if given.lower().startswith("mac="):
            given = given[4:].strip()
        if not given or not self.config.app_id or not self.config.oa_secret_key:
            return False
        try:
            timestamp = json.loads(raw).get("timestamp")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            return False  # the timestamp is part of the MAC: an unreadable body cannot be verified
        if isinstance(timestamp, bool) or not isinstance(timestamp, str | int):
            return False
        expected = signature(self.config.app_id, raw, str(timestamp), self.config.oa_secret_key)
        return hmac.compare_digest(given.lower().encode(), expected.encode())

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any]:
        event = parse_json_object(raw)
        name = event.get("event_name")
        if not isinstance(name, str) or not name:
            raise BadUpdate("'event_name' is required")
        if name.startswith("user_send_"):
            if not isinstance(event.get("sender"), dict) or not isinstance(event["sender"].get("id"), str | int):
                raise BadUpdate("'sender.id' is required")
            if not isinstance(event.get("message"), dict):
                raise BadUpdate("'message' must be an object")
        if name in ("follow", "unfollow") and not (isinstance(event.get("follower"), dict) and event["follower"].get("id")):
            raise BadUpdate("'follower.id' is required")
        return event

    @staticmethod
    def _update_id(event: dict[str, Any]) -> str | None:
        name = event["event_name"]
        message = event.get("message")
        if isinstance(message, dict) and message.get("msg_id"):
            return f"{name}:{message['msg_id']}"
        if name in ("follow", "unfollow"):
            return f"{name}:{event['follower']['id']}:{event.get('timestamp')}"
        return None

    @staticmethod
    def _sender(event: dict[str, Any]) -> str | None:
        """The user whose rate limit an event spends: what users send and follows; receipts and
        the OA's own messages spend nothing."""
        name = event["event_name"]
        if name.startswith("user_send_"):
            return str(event["sender"]["id"])
        return str(event["follower"]["id"]) if name == "follow" else None

    # -- events ---------------------------------------------------------------------------------

    async def _process(self, event: dict[str, Any]) -> None:
        assert self._relay is not None
        name = event["event_name"]
        key = self._update_id(event) or f"{name}:{event.get('timestamp')}"
        if name in ("user_send_text", "user_send_location") or name in NON_TEXT_EVENTS:
            user_id = str(event["sender"]["id"])
            message = event["message"]
            msg_id = str(message.get("msg_id") or "") or None
            if name == "user_send_text" and isinstance(message.get("text"), str):
                text = valid_unicode(message["text"])[:MAX_MESSAGE_CHARS]
                await self._relay.turn(UserMessage(user_id, text, NAME, msg_id, {"event": name}), dedupe_prefix=f"zalo:{key}")
                return
            point = _location(message) if name == "user_send_location" else None
            if point is not None:
                metadata = {"event": name, "location": {"latitude": point[0], "longitude": point[1]}}
                await self._relay.turn(UserMessage(user_id, location_text(*point), NAME, msg_id, metadata), dedupe_prefix=f"zalo:{key}")
                return
            await self._relay.say(user_id, [{"text": TEXT_ONLY_REPLY}], dedupe_prefix=f"zalo:{key}")
        elif name == "follow":
            user_id = str(event["follower"]["id"])
            await self._relay.turn(UserMessage(user_id, "/greet", NAME, None, {"event": name}), dedupe_prefix=f"zalo:{key}")
        elif name == "unfollow":
            log.info("zalo: user %s unfollowed the OA", event["follower"]["id"])
        else:
            log.debug("zalo: event %s ignored", name)


def _location(message: dict[str, Any]) -> tuple[float, float] | None:
    """Zalo puts the point in `attachments[].payload.coordinates` (some payloads also in
    `message.location`)."""
    for attachment in message.get("attachments") or []:
        if isinstance(attachment, dict) and isinstance(attachment.get("payload"), dict):
            point = attachment["payload"].get("coordinates")
            if isinstance(point, dict):
                found = coordinates(point.get("latitude"), point.get("longitude"))
                if found:
                    return found
    point = message.get("location")
    if isinstance(point, dict):
        return coordinates(point.get("latitude"), point.get("longitude"))
    return None
