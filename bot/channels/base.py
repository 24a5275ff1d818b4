"""The channel seam: every input channel turns its wire format into a `UserMessage`;
every reply is a Rasa-shaped message dict (`text`, `buttons`, `image`, `custom`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
