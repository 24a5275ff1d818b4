"""Channels: where a platform's wire format becomes a `UserMessage` and replies go back out."""

from bot.channels.base import UserMessage

__all__ = ["UserMessage"]
