"""Wires NLU administration into a worker: the inbox collector on every turn, and the model
watcher that keeps the worker on the active model version (bot/model_rollout.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from backend.services import nlu_inbox
from backend.settings import Settings
from bot.agent import Agent
from bot.channels.base import UserMessage
from bot.model_rollout import ModelWatcher, register_serving

log = logging.getLogger(__name__)
WATCHER = web.AppKey("nlu_model_watcher", ModelWatcher)


class InboxCollector:
    """Sends a turn's message to the NLU inbox when the bot fell back, was unsure, or the turn
    ended in an escalation to a person. Replies to a form's question (a customer code, a
    phone number) are not collected: the form, not the classifier, understood those."""

    def __init__(self, agent: Agent, threshold: float) -> None:
        self.agent = agent
        self.threshold = threshold

    def reason(self, parse_data: dict[str, Any], *, escalated: bool, answering_form: bool) -> str | None:
        intent = parse_data.get("intent") or {}
        if escalated:
            return "escalation"
        if answering_form:
            return None
        if intent.get("name") == "nlu_fallback":
            return "fallback"
        if float(intent.get("confidence") or 0.0) < self.threshold:
            return "low_confidence"
        return None

    async def after_turn(self, message: UserMessage, parse_data: dict[str, Any], *, escalated: bool, answering_form: bool) -> None:
        reason = self.reason(parse_data, escalated=escalated, answering_form=answering_form)
        if reason is None:
            return
        try:
            await nlu_inbox.capture(
                message.text, channel=message.channel, conversation_id=message.conversation_id, reason=reason,
                parse_data=parse_data, model_version=self.agent.nlu.model.meta.id,
            )
        except Exception as exc:  # the customer's turn is done; losing an inbox row is not worth an error
            log.warning("could not add a message of %s to the NLU inbox: %s", message.conversation_id, exc)


def register_nlu_admin(app: web.Application, settings: Settings, agent: Callable[[], Agent], redis: Callable[[], Any]) -> None:
    """After the runtime starts: collect inbox items and follow the active model version."""

    async def start(app: web.Application) -> None:
        current = agent()
        current.inbox = InboxCollector(current, settings.nlu_inbox_threshold)
        try:
            await register_serving(current.nlu)
        except Exception as exc:
            log.warning("could not register the serving NLU model: %s", exc)
        watcher = ModelWatcher(current.nlu, redis(), settings.nlu_watch_seconds)
        await watcher.start()
        app[WATCHER] = watcher

    async def stop(app: web.Application) -> None:
        if WATCHER in app:
            await app[WATCHER].close()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)  # before cleanup closes Redis: a pub/sub read on a closed client never ends
