"""The channel seam: every input channel turns its wire format into a `UserMessage`;
every reply is a Rasa-shaped message dict (`text`, `buttons`, `image`, `custom`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_MESSAGE_CHARS = 4096


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
