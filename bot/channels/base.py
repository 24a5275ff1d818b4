"""The channel seam.

An `InputChannel` owns its webhook routes and is the one place where a platform's wire format
becomes a `UserMessage`. The agent answers with Rasa-shaped message dicts (`text`, `buttons`,
`image`, `custom`), and an `OutputChannel` delivers them in the platform's terms.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from backend.services.notifications import OutboxItem

MAX_MESSAGE_CHARS = 4096


def valid_unicode(value: Any) -> Any:
    """Replace lone surrogates (invalid UTF-8) in strings, keys included, so every store can
    encode what a customer sent; the rest of the text is kept as it was."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8") if not value.isascii() else value
    if isinstance(value, dict):
        return {valid_unicode(k): valid_unicode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [valid_unicode(v) for v in value]
    return value


@dataclass(frozen=True)
class UserMessage:
    sender_id: str
    text: str
    channel: str = "rest"
    message_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def conversation_id(self) -> str:
        """Conversations are kept per channel, so a Telegram and a Zalo id never collide."""
        return self.sender_id if self.channel == "rest" else f"{self.channel}:{self.sender_id}"


Message = dict[str, Any]


class ChannelHost(Protocol):
    """What channels need from the running bot (the agent provides it)."""

    async def handle_message(self, message: UserMessage) -> list[Message]: ...

    def render_notification(self, item: OutboxItem) -> list[Message]: ...


class InputChannel(ABC):
    """A platform the customers write from; `register` adds its webhook routes to the app.
    `host` returns the running bot (it exists once the app has started)."""

    name: str

    @abstractmethod
    def register(self, app: web.Application, host: Callable[[], ChannelHost]) -> None: ...


class OutputChannel(ABC):
    """Delivers the bot's messages to one platform. Channels without buttons or images get
    readable fallbacks from the defaults here."""

    name: str

    async def send(self, recipient_id: str, message: Message) -> None:
        text = message.get("text") or ""
        if message.get("image"):
            await self.send_image(recipient_id, message["image"], text)
        elif message.get("buttons"):
            await self.send_buttons(recipient_id, text, message["buttons"])
        elif message.get("custom"):
            await self.send_custom(recipient_id, message["custom"])
        elif text:
            await self.send_text(recipient_id, text)

    @abstractmethod
    async def send_text(self, recipient_id: str, text: str) -> None: ...

    async def send_buttons(self, recipient_id: str, text: str, buttons: list[dict[str, Any]]) -> None:
        lines = [text] + [f"{i}. {b.get('title', '')}" for i, b in enumerate(buttons, start=1)]
        await self.send_text(recipient_id, "\n".join(line for line in lines if line))

    async def send_image(self, recipient_id: str, image: str, caption: str = "") -> None:
        await self.send_text(recipient_id, f"{caption}\n{image}".strip())

    async def send_custom(self, recipient_id: str, custom: dict[str, Any]) -> None:  # noqa: B027 - optional
        """Platform-specific payloads; ignored by channels that do not know them."""


class CollectingOutputChannel(OutputChannel):
    """Keeps the messages for a synchronous answer (REST, tests), in Rasa's REST shape."""

    name = "collector"

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def send(self, recipient_id: str, message: Message) -> None:
        out: Message = {"recipient_id": recipient_id}
        for key in ("text", "buttons", "image", "attachment", "custom"):
            if message.get(key):
                out[key] = message[key]
        self.messages.append(out)

    async def send_text(self, recipient_id: str, text: str) -> None:
        self.messages.append({"recipient_id": recipient_id, "text": text})
