"""Rasa-compatible REST channel: POST /webhooks/rest/webhook with {"sender", "message", "metadata"},
answered with a JSON list of {"recipient_id", "text", "buttons", "image"}."""

from __future__ import annotations

import json
from collections.abc import Callable

from aiohttp import web

from backend.services import notifications
from bot.channels.base import (
    MAX_MESSAGE_CHARS,
    ChannelHost,
    CollectingOutputChannel,
    InputChannel,
    UserMessage,
    valid_unicode,
)
from bot.ratelimit import sender_verdict, too_many_requests
from bot.stores import LockTimeout

MAX_SENDER_CHARS = 128


def bad_request(field: str, problem: str) -> web.Response:
    return web.json_response({"error": problem, "field": field}, status=400)


def parse_rest_body(raw: bytes) -> UserMessage | web.Response:
    """Validate the request at the edge: a clear 400 naming the field, or a UserMessage."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return bad_request("body", "the body must be valid JSON")
    if not isinstance(body, dict):
        return bad_request("body", "the body must be a JSON object")
    sender = body.get("sender")
    if not isinstance(sender, str) or not sender.strip():
        return bad_request("sender", "'sender' is required and must be a non-empty string")
    if len(sender) > MAX_SENDER_CHARS:
        return bad_request("sender", f"'sender' must be at most {MAX_SENDER_CHARS} characters")
    message = body.get("message")
    if not isinstance(message, str):
        return bad_request("message", "'message' is required and must be a string")
    if len(message) > MAX_MESSAGE_CHARS:
        return bad_request("message", f"'message' must be at most {MAX_MESSAGE_CHARS} characters")
    metadata = {} if body.get("metadata") is None else body["metadata"]
    if not isinstance(metadata, dict):
        return bad_request("metadata", "'metadata' must be a JSON object")
    message_id = body.get("message_id")
    return UserMessage(
        valid_unicode(sender.strip()),
        valid_unicode(message),
        "rest",
        valid_unicode(str(message_id)) if message_id else None,
        valid_unicode(metadata),
    )


class RestInput(InputChannel):
    """`POST /webhooks/rest/webhook`; the answer is the list of replies to this message."""

    name = "rest"

    def register(self, app: web.Application, host: Callable[[], ChannelHost]) -> None:
        async def webhook(request: web.Request) -> web.Response:
            parsed = parse_rest_body(await request.read())
            if isinstance(parsed, web.Response):
                return parsed
            verdict = await sender_verdict(request, self.name, parsed.sender_id)
            if not verdict.allowed:
                return too_many_requests(verdict)
            try:
                replies = await host().handle_message(parsed)
            except LockTimeout:
                return web.json_response({"error": "conversation busy, retry shortly"}, status=503, headers={"Retry-After": "1"})
            output = CollectingOutputChannel()
            for reply in replies:
                await output.send(parsed.sender_id, reply)
            return web.json_response(output.messages)

        async def outbox(request: web.Request) -> web.Response:
            """Messages the bot has for this sender outside a reply (e.g. a payment confirmation);
            each is handed over once."""
            sender = request.query.get("sender", "")
            if not sender.strip() or len(sender) > MAX_SENDER_CHARS:
                return bad_request("sender", "'sender' query parameter is required (at most 128 characters)")
            items = await notifications.take_for_recipient(self.name, sender.strip())
            output = CollectingOutputChannel()
            for item in items:
                for message in host().render_notification(item):
                    await output.send(sender.strip(), message)
            return web.json_response(output.messages)

        app.router.add_post("/webhooks/rest/webhook", webhook)
        app.router.add_get("/webhooks/rest/outbox", outbox)
