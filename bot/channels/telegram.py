"""Telegram, through python-telegram-bot (v22) inside the project's own aiohttp server.

Webhook: `POST /webhooks/telegram`. PTB's `Application` is built without an updater; each
update that passes the edge (secret header checked in constant time, JSON, dedupe on
update_id, see `middleware.WebhookEdge`) is fed to `Application.process_update` in the
background while Telegram gets its 200. The handlers turn messages into `UserMessage`s:

* text (and commands other than the three below) as typed; `/start` -> greeting,
  `/help` and `/menu` -> the help menu with its buttons;
* an inline-keyboard press (`callback_query`) -> the button's payload; the query is answered;
* a shared location -> the outage report for the nearest demo ward (`places.py`);
* stickers, photos, voice, documents... -> a polite "I can read text" reply.

Only private chats are served: a bill or a linked customer code must never show in a group.
The agent's replies are written to the outbox; the outbox worker sends them with
`TelegramSender` (text split at 4,096 UTF-16 units on word boundaries, buttons as inline
keyboards, images with captions), within Telegram's limits (about 30 messages/s overall, one
per second per chat after a short burst). A "typing" action shows while the agent works.

Long-polling (`python -m bot telegram poll`) feeds `getUpdates` results to the same edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.constants import ChatAction, ChatType
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import BaseRequest, RequestData

from backend.services.notifications import OutboxItem
from backend.settings import Settings
from bot.channels.base import ChannelHost, InputChannel, Message, UserMessage, valid_unicode
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
    utf16_len,
)
from bot.channels.places import coordinates, location_text

log = logging.getLogger(__name__)
# httpx logs every request URL at INFO, and Telegram's URLs contain the bot token.
logging.getLogger("httpx").setLevel(logging.WARNING)
# PTB warns from inside RetryAfter's constructor that retry_after will become a timedelta;
# `retry_after_seconds` reads either form.
warnings.filterwarnings("ignore", message=r".*attribute `retry_after` will be of type", category=DeprecationWarning)

NAME = "telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message", "callback_query"]
MAX_TEXT = 4096  # UTF-16 code units per message
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64  # bytes
MAX_IMAGE_BYTES = 10 * 1024 * 1024
PAYLOAD_TTL = 30 * 24 * 3600
COMMANDS = {"start": "/greet", "help": "/help", "menu": "/help"}


@dataclass(frozen=True)
class TelegramConfig:
    """Where the settings (environment) and credentials.yml meet; the settings win."""

    token: str | None
    webhook_secret: str | None
    base_url: str

    @property
    def enabled(self) -> bool:
        return bool(self.token)

    @property
    def base_file_url(self) -> str:
        base = self.base_url.rstrip("/")
        return base[: -len("/bot")] + "/file/bot" if base.endswith("/bot") else base + "/file/bot"

    @classmethod
    def from_settings(cls, settings: Settings, credentials: dict[str, Any]) -> TelegramConfig:
        def pick(field: str, key: str) -> str | None:
            value = getattr(settings, field)
            value = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            if field in settings.model_fields_set and value:
                return str(value)
            return str(credentials[key]) if credentials.get(key) else (str(value) if value else None)

        return cls(
            token=pick("telegram_bot_token", "access_token"),
            webhook_secret=pick("telegram_webhook_secret", "webhook_secret"),
            base_url=pick("telegram_api_base_url", "base_url") or "https://api.telegram.org/bot",
        )

    def __repr__(self) -> str:
        return f"TelegramConfig(enabled={self.enabled}, base_url={self.base_url!r})"


class AiohttpRequest(BaseRequest):
    """PTB's networking backend on aiohttp, the HTTP library the rest of the service uses.

    PTB's default backend (httpx) spends several milliseconds of CPU per call in its connection
    pool, which capped the outbox at about 150 messages/s on a 2-core machine; this one sends
    the same requests (form-encoded parameters, multipart for uploads, PTB's timeouts and
    errors) for a fraction of that. `telegram.request.BaseRequest` is PTB's documented way to
    plug in another HTTP client. Error messages never include the URL (it holds the token).
    """

    def __init__(
        self,
        pool_size: int = 128,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        write_timeout: float = 15.0,
        pool_timeout: float = 10.0,
    ) -> None:
        self._pool_size = pool_size
        self._timeouts = (connect_timeout, read_timeout, write_timeout, pool_timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._timeouts[1]

    async def initialize(self) -> None:
        self._open()

    async def shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        # Opened on first use as well: the outbox worker may send before getMe ever succeeded.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=self._pool_size)
            self._session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": self.USER_AGENT})
        return self._session

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        connect, read, write, pool = (
            default if isinstance(value, DefaultValue) or value is None else float(value)
            for value, default in zip((connect_timeout, read_timeout, write_timeout, pool_timeout), self._timeouts, strict=True)
        )
        timeout = aiohttp.ClientTimeout(total=connect + read + write + pool, connect=pool + connect, sock_connect=connect, sock_read=read)
        data: aiohttp.FormData | dict[str, str] | None = None
        if request_data is not None:
            files = request_data.multipart_data if request_data.contains_files else None
            if files:
                form = aiohttp.FormData()
                for name, value in request_data.json_parameters.items():
                    form.add_field(name, value)
                for name, (filename, content, mimetype) in files.items():
                    form.add_field(name, content, filename=filename, content_type=mimetype)
                data = form
            else:
                data = request_data.json_parameters
        try:
            async with self._open().request(method, url, data=data, timeout=timeout) as response:
                return response.status, await response.read()
        except TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}") from exc


# The request objects of each Application: PTB only shuts down what it initialised itself
# (getMe), ours also open on first use, so `close_application` closes them explicitly.
_REQUESTS: weakref.WeakKeyDictionary[Any, tuple[AiohttpRequest, AiohttpRequest]] = weakref.WeakKeyDictionary()


def build_application(config: TelegramConfig) -> Application:  # type: ignore[type-arg]
    """PTB's Application for webhook mode: no updater (our server receives the updates)."""
    assert config.token
    requests = (AiohttpRequest(), AiohttpRequest(pool_size=1, read_timeout=40.0))
    application = (
        Application.builder()
        .token(config.token)
        .base_url(config.base_url)
        .base_file_url(config.base_file_url)
        .updater(None)
        .request(requests[0])
        .get_updates_request(requests[1])
        .build()
    )
    _REQUESTS[application] = requests
    return application


async def close_application(application: Application, initialized: bool = False) -> None:  # type: ignore[type-arg]
    """Shut PTB's Application down (if it was initialised) and close its HTTP sessions."""
    if initialized:
        await application.shutdown()
    for request in _REQUESTS.get(application, ()):
        await request.shutdown()


def operator_bot(config: TelegramConfig) -> Bot:
    """A plain Bot for the operator commands (webhook registration)."""
    assert config.token
    return Bot(config.token, base_url=config.base_url, base_file_url=config.base_file_url, request=AiohttpRequest(pool_size=4))


class ButtonPayloads:
    """Telegram's callback_data holds 64 bytes; longer payloads (e.g. a service request with
    its type) are stored under a short key in the shared store and looked up on the press."""

    PREFIX = "~"

    def __init__(self, store: Callable[[], KeyValueStore]) -> None:
        self.store = store

    async def encode(self, payload: str) -> str:
        if len(payload.encode()) <= MAX_CALLBACK_DATA and not payload.startswith(self.PREFIX):
            return payload
        key = self.PREFIX + hashlib.sha256(payload.encode()).hexdigest()[:32]
        await self.store().put(f"tg-button:{key}", payload, PAYLOAD_TTL)
        return key

    async def decode(self, data: str) -> str | None:
        if not data.startswith(self.PREFIX):
            return data
        return await self.store().get(f"tg-button:{data}")


def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def retry_after_seconds(error: RetryAfter) -> float:
    """RetryAfter.retry_after is an int or a timedelta depending on PTB_TIMEDELTA (v22.2+)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _seconds(error.retry_after)


class TelegramSender:
    """Sends rendered bot messages to a chat through the Bot API (the outbox worker's side)."""

    channel = NAME

    def __init__(self, bot: Bot, limiter: RateLimiter, payloads: ButtonPayloads, http: aiohttp.ClientSession | None = None) -> None:
        self.bot = bot
        self.limiter = limiter
        self.payloads = payloads
        self.http = http

    async def deliver(self, item: OutboxItem, messages: list[Message]) -> None:
        for message in messages:
            await self.send(item.recipient_id, message)

    async def send(self, recipient_id: str, message: Message) -> None:
        chat_id: int | str = int(recipient_id) if recipient_id.lstrip("-").isdigit() else recipient_id
        text = str(message.get("text") or "")
        markup = await self.keyboard(message.get("buttons") or [])
        if message.get("image"):
            await self._send_photo(chat_id, str(message["image"]), text, markup)
            return
        if not text and markup is None:
            return  # e.g. a `custom` payload for another platform
        await self._send_text(chat_id, text or "👇", markup)

    async def keyboard(self, buttons: list[dict[str, Any]]) -> InlineKeyboardMarkup | None:
        """One button per row (titles are long in Vietnamese). URL payloads become URL buttons
        when Telegram can open them (public https); other URLs stay in the text only."""
        rows = []
        for button in buttons:
            title, payload = str(button.get("title") or "")[:64], str(button.get("payload") or "")
            if not title or not payload:
                continue
            if payload.startswith(("http://", "https://")):
                if is_public_https(payload):
                    rows.append([InlineKeyboardButton(title, url=payload)])
                continue
            rows.append([InlineKeyboardButton(title, callback_data=await self.payloads.encode(payload))])
        return InlineKeyboardMarkup(rows) if rows else None

    async def _send_text(self, chat_id: int | str, text: str, markup: InlineKeyboardMarkup | None) -> None:
        parts = split_text(text, MAX_TEXT, utf16_len)
        for n, part in enumerate(parts):
            last = n == len(parts) - 1
            await self._call(chat_id, self.bot.send_message, chat_id=chat_id, text=part, reply_markup=markup if last else None)

    async def _send_photo(self, chat_id: int | str, image: str, text: str, markup: InlineKeyboardMarkup | None) -> None:
        photo: str | bytes | None = image if is_public_https(image) else await self._download(image)
        if photo is None:  # Telegram cannot fetch it and neither could we: the link in words
            await self._send_text(chat_id, f"{text}\n{image}".strip(), markup)
            return
        caption_fits = utf16_len(text) <= MAX_CAPTION
        await self._call(
            chat_id,
            self.bot.send_photo,
            chat_id=chat_id,
            photo=photo,
            caption=text if caption_fits and text else None,
            reply_markup=markup if caption_fits else None,
        )
        if not caption_fits:
            await self._send_text(chat_id, text, markup)

    async def _download(self, url: str) -> bytes | None:
        """Images on a non-public URL (a development server) are uploaded instead."""
        if self.http is None or not url.startswith(("http://", "https://")):
            return None
        try:
            async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=15)) as response:
                if response.status != 200 or (response.content_length or 0) > MAX_IMAGE_BYTES:
                    log.warning("telegram: image download answered %s", response.status)
                    return None
                body = await response.content.read(MAX_IMAGE_BYTES + 1)
                return body if len(body) <= MAX_IMAGE_BYTES else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("telegram: image download failed (%s)", type(exc).__name__)
            return None

    async def _call(self, limit_key: int | str, method: Callable[..., Any], /, **kwargs: Any) -> Any:
        """One Bot API call within the rate limits, its errors mapped for the outbox worker."""
        await self.limiter.wait(str(limit_key))
        try:
            return await method(**kwargs)
        except RetryAfter as exc:
            seconds = retry_after_seconds(exc)
            raise RetryLater(f"telegram 429: retry after {seconds:g} s", after=seconds) from None
        except ChatMigrated as exc:
            raise GiveUp(f"telegram: the group moved to chat {exc.new_chat_id}") from None
        except Forbidden as exc:  # blocked by the user, kicked...
            raise GiveUp(f"telegram 403: {exc.message}") from None
        except BadRequest as exc:  # chat not found, message malformed... (before NetworkError: a subclass)
            raise GiveUp(f"telegram 400: {exc.message}") from None
        except InvalidToken:  # the token was revoked: every message waits for the operator
            raise RetryLater("telegram: the bot token was refused") from None
        except TimedOut:
            raise RetryLater("telegram: timed out") from None
        except NetworkError as exc:  # connection errors, 5xx
            raise RetryLater(f"telegram: {exc.message}") from None
        except TelegramError as exc:
            raise RetryLater(f"telegram: {exc.message}") from None


def _private_chat(update: Update) -> str | None:
    """The chat whose rate limit an update spends: private chats only (the others are not
    served, and a slow-down notice must never go to a group)."""
    chat = update.effective_chat
    return str(chat.id) if chat is not None and chat.type == ChatType.PRIVATE else None


class TelegramChannel(InputChannel):
    """The webhook, PTB's Application and its handlers; `bot` and `payloads` are shared with
    the outbox worker's `TelegramSender` (built in platforms.py)."""

    name = NAME

    def __init__(self, config: TelegramConfig, *, store: Callable[[], KeyValueStore], tasks: TaskSet, dedupe_ttl: int) -> None:
        self.config = config
        self.store = store
        self.tasks = tasks
        self.dedupe_ttl = dedupe_ttl
        self.payloads = ButtonPayloads(store)
        self.application: Application | None = build_application(config) if config.enabled else None  # type: ignore[type-arg]
        self.edge: WebhookEdge[Update] | None = None
        self._relay: TurnRelay | None = None
        self._init_lock = asyncio.Lock()
        self._init_failed_at = 0.0
        self._ready = False
        if self.application is not None:
            self._add_handlers(self.application)

    @property
    def enabled(self) -> bool:
        return self.application is not None

    @property
    def bot(self) -> Bot:
        assert self.application is not None
        return self.application.bot

    # -- lifecycle ------------------------------------------------------------------------------

    def register(self, app: web.Application, host: Callable[[], ChannelHost]) -> None:
        self._relay = TurnRelay(NAME, host)
        self.edge = WebhookEdge(
            channel=NAME,
            enabled=lambda: self.enabled,
            verify=self._verify,
            parse=self._parse,
            update_id=lambda update: str(update.update_id),
            process=self._process,
            dedupe=self.store,
            tasks=self.tasks,
            dedupe_ttl=self.dedupe_ttl,
            sender=_private_chat,
            relay=self._relay,
            journal=True,
        )
        app.router.add_post("/webhooks/telegram", self._webhook)

    async def start(self) -> None:
        if self.enabled and not self.config.webhook_secret:
            log.warning("telegram: TELEGRAM_WEBHOOK_SECRET is unset; webhook requests are refused (long polling still works)")
        await self.ready()

    async def stop(self) -> None:
        if self.application is not None:
            await close_application(self.application, initialized=self._ready)
        self._ready = False

    async def ready(self) -> bool:
        """PTB needs `initialize()` (a getMe call) before it processes updates. If Telegram is
        unreachable at startup the webhook answers 503 (Telegram retries) and we try again,
        at most every 5 s."""
        application = self.application
        if application is None:
            return False
        if self._ready:
            return True
        async with self._init_lock:
            if self._ready:
                return True
            if time.monotonic() - self._init_failed_at < 5:
                return False
            try:
                await application.initialize()
            except Exception as exc:  # PTB's InvalidToken message contains the token: type only
                self._init_failed_at = time.monotonic()
                log.error("telegram: initialisation (getMe) failed: %s", type(exc).__name__)
                return False
            self._ready = True
            log.info("telegram: ready as bot id %s", application.bot.id)
            return True

    # -- the edge -------------------------------------------------------------------------------

    async def _webhook(self, request: web.Request) -> web.Response:
        assert self.edge is not None
        if self.enabled and self._verify(request, b"") and not await self.ready():
            return web.json_response({"error": "not ready, retry"}, status=503, headers={"Retry-After": "5"})
        return await self.edge.handle(request)

    def _verify(self, request: web.Request, raw: bytes) -> bool:
        expected = self.config.webhook_secret
        given = request.headers.get(SECRET_HEADER)
        if not expected or given is None:
            return False
        return hmac.compare_digest(given.encode(), expected.encode())

    def _parse(self, raw: bytes) -> Update:
        body = parse_json_object(raw)
        if not isinstance(body.get("update_id"), int):
            raise BadUpdate("'update_id' is required and must be an integer")
        try:
            update = Update.de_json(body, self.bot)
        except Exception as exc:
            raise BadUpdate(f"not a Telegram update ({type(exc).__name__})") from None
        if update is None:
            raise BadUpdate("not a Telegram update")
        return update

    async def _process(self, update: Update) -> None:
        assert self.application is not None
        await self.application.process_update(update)

    async def accept(self, update: Update) -> None:
        """Long-polling entry: the same dedupe and processing as the webhook."""
        assert self.edge is not None
        await self.edge.accept(update)

    # -- PTB handlers ---------------------------------------------------------------------------

    def _add_handlers(self, application: Application) -> None:  # type: ignore[type-arg]
        # New messages in private chats only: an edit is not a new turn, and a group must never
        # see a customer's bill.
        private = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE
        application.add_handler(CommandHandler(list(COMMANDS), self._on_command, filters=private))
        application.add_handler(CallbackQueryHandler(self._on_button))
        application.add_handler(MessageHandler(private & filters.LOCATION, self._on_location))
        application.add_handler(MessageHandler(private & filters.TEXT, self._on_text))
        application.add_handler(MessageHandler(private & ~filters.StatusUpdate.ALL, self._on_other))
        application.add_error_handler(self._on_error)

    def _user_message(self, update: Update, text: str, **extra: Any) -> UserMessage:
        chat, user, message = update.effective_chat, update.effective_user, update.effective_message
        assert chat is not None
        metadata: dict[str, Any] = {"update_id": update.update_id, **extra}
        if user is not None and user.language_code:
            metadata["language_code"] = user.language_code
        message_id = str(message.message_id) if message is not None else None
        return UserMessage(str(chat.id), valid_unicode(text)[:MAX_TEXT], NAME, message_id, metadata)

    async def _turn(self, update: Update, text: str, **extra: Any) -> None:
        assert self._relay is not None
        message = self._user_message(update, text, **extra)
        chat_id = int(message.sender_id)

        async def typing() -> None:
            await self.bot.send_chat_action(chat_id=chat_id, action=ChatAction.TYPING)

        await self._relay.turn(message, dedupe_prefix=f"tg:{update.update_id}", while_working=typing)

    async def _on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        text = update.effective_message.text if update.effective_message else ""
        command = (text or "").split()[0].lstrip("/").split("@")[0].lower()
        await self._turn(update, COMMANDS.get(command, "/help"))

    async def _on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        await self._turn(update, message.text if message and message.text else "")

    async def _on_location(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None and message.location is not None
        point = coordinates(message.location.latitude, message.location.longitude)
        if point is None:
            await self._on_other(update, context)
            return
        await self._turn(update, location_text(*point), location={"latitude": point[0], "longitude": point[1]})

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        chat = update.effective_chat
        if chat is None or chat.type != ChatType.PRIVATE:
            return
        payload = await self.payloads.decode(query.data or "")
        with contextlib.suppress(TelegramError):  # stops the button's spinner; only a courtesy
            await query.answer(text=None if payload else "Nút này đã hết hạn. / This button has expired.")
        if payload:
            await self._turn(update, payload, button=True)

    async def _on_other(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Stickers, photos, voice, documents, contacts...: we read text only."""
        assert self._relay is not None
        chat = update.effective_chat
        if chat is None:
            return
        await self._relay.say(str(chat.id), [{"text": TEXT_ONLY_REPLY}], dedupe_prefix=f"tg:{update.update_id}")

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        update_id = update.update_id if isinstance(update, Update) else None
        error = context.error
        log.error("telegram update %s: handler failed", update_id, exc_info=(type(error), error, error.__traceback__) if error else None)


# -- operator commands (python -m bot telegram ...) --------------------------------------------


async def set_webhook(config: TelegramConfig, url: str, max_connections: int = 40) -> bool:
    """Register `url` with Telegram: our secret token, the updates we handle, pending dropped."""
    if not config.token:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    if not config.webhook_secret:
        raise ValueError("TELEGRAM_WEBHOOK_SECRET is not set: the webhook would accept anyone's updates")
    if not url.startswith("https://"):
        raise ValueError("Telegram only calls https:// webhooks")
    async with operator_bot(config) as bot:
        return await bot.set_webhook(
            url,
            secret_token=config.webhook_secret,
            allowed_updates=ALLOWED_UPDATES,
            drop_pending_updates=True,
            max_connections=max_connections,
        )


async def delete_webhook(config: TelegramConfig, drop_pending: bool = False) -> bool:
    if not config.token:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    async with operator_bot(config) as bot:
        return await bot.delete_webhook(drop_pending_updates=drop_pending)


async def poll(channel: TelegramChannel, stop: asyncio.Event, wait_seconds: int = 25) -> None:
    """Long polling for local development: getUpdates in a loop, each update through the same
    edge as the webhook. Removes a registered webhook first (Telegram allows one or the other)."""
    bot = channel.bot
    await bot.delete_webhook(drop_pending_updates=False)
    offset: int | None = None
    while not stop.is_set():
        try:
            updates = await bot.get_updates(
                offset=offset, timeout=wait_seconds, allowed_updates=ALLOWED_UPDATES, read_timeout=wait_seconds + 10
            )
        except RetryAfter as exc:
            await asyncio.sleep(retry_after_seconds(exc))
            continue
        except (NetworkError, TimedOut) as exc:
            log.warning("telegram polling: %s; retrying", type(exc).__name__)
            await asyncio.sleep(2)
            continue
        for update in updates:
            offset = update.update_id + 1
            await channel.accept(update)
