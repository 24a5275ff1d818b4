"""Structured logs: what every record carries, and what no record may carry.

Every record emitted while an HTTP request or a customer turn is handled names the request id,
the conversation id and the channel. They live in context variables, set by the HTTP
middleware (`bot.metrics.observe_requests`) and around each turn (`bot.metrics.TurnScope`);
asyncio tasks inherit them, so the background turn of a Telegram update carries the request id
of the webhook call that brought it.

Records never carry phone numbers, customer names or message texts: log calls pass ids (the
conversation id, customer codes, ticket and order references), never what the customer wrote
or who they are. `RedactingFilter` is the safety net behind that rule for what a pattern can
recognise: phone numbers, and the SQL parameters and key values that database errors quote.
Libraries that dump request payloads at DEBUG (aiosqlite, python-telegram-bot) are held at
INFO by `configure_logging`.
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar, Token
from typing import IO, Any

_request_id: ContextVar[str | None] = ContextVar("log_request_id", default=None)
_conversation_id: ContextVar[str | None] = ContextVar("log_conversation_id", default=None)
_channel: ContextVar[str | None] = ContextVar("log_channel", default=None)
CONTEXT_FIELDS = (("request_id", _request_id), ("conversation_id", _conversation_id), ("channel", _channel))

# Vietnamese phone numbers as customers write them: 0912345678, 0912 345 678, 0912.345.678,
# +84 912 345 678, 84912345678, and 11-digit landlines (024 3825 1234). Not inside a longer
# word or number (or after a decimal point), so customer codes (PE0400012345), ticket ids, order
# references and decimals stay.
PHONE_RE = re.compile(
    r"(?<![\w+.])(?:0[1-9](?:[ .-]?\d){8,9}|\+84[ .-]?[1-9](?:[ .-]?\d){7,9}|84[35789]\d{8})(?!\w)"
)
# What database errors quote from the statement: SQLAlchemy's "[parameters: (...)]" line and
# PostgreSQL's "Key (column)=(value)" detail.
SQL_PARAMETERS_RE = re.compile(r"\[parameters: [^\n]*")
KEY_DETAIL_RE = re.compile(r"(Key \([^)]*\))=\(.*?\)( already exists| is not present|\.|$)", re.MULTILINE)
# Loggers that write payloads (SQL parameters, chat messages with the sender's name) at DEBUG.
PAYLOAD_LOGGERS = ("aiosqlite", "telegram")


def redact(text: str) -> str:
    """`text` with phone numbers and quoted SQL values replaced by placeholders."""
    if "parameters: " in text:
        text = SQL_PARAMETERS_RE.sub("[parameters: hidden]", text)
    if "Key (" in text:
        text = KEY_DETAIL_RE.sub(r"\1=(hidden)\2", text)
    return PHONE_RE.sub("[phone]", text)


ConversationTokens = tuple[Token[str | None], Token[str | None]]


def bind_request(request_id: str) -> Token[str | None]:
    """Records from here on (in this task, and tasks it starts) carry `request_id`."""
    return _request_id.set(request_id)


def unbind_request(token: Token[str | None]) -> None:
    _request_id.reset(token)


def bind_conversation(conversation_id: str, channel: str) -> ConversationTokens:
    """Records from here on (in this task, and tasks it starts) name the conversation."""
    return _conversation_id.set(conversation_id), _channel.set(channel)


def unbind_conversation(tokens: ConversationTokens) -> None:
    _channel.reset(tokens[1])
    _conversation_id.reset(tokens[0])


class ContextFilter(logging.Filter):
    """Copies the request id, conversation id and channel onto each record (None when unset)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in CONTEXT_FIELDS:
            if not hasattr(record, name):  # an explicit `extra=` wins
                setattr(record, name, var.get())
        return True


class RedactingFilter(logging.Filter):
    """Removes phone numbers and quoted SQL values from the message and the exception text.

    The message is formatted here once and frozen (`args` cleared), so every handler after
    this one sees the redacted text; the traceback is formatted here too, for the same reason.
    """

    _exceptions = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exceptions.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the context fields that are set,
    and `exc` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record), "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        for name, _ in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def build_log_handler(json_lines: bool, stream: IO[str] | None = None) -> logging.Handler:
    """The service's log handler: context fields added, personal data redacted, JSON lines
    (production) or plain text."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def configure_logging(level: str, json_lines: bool, stream: IO[str] | None = None) -> logging.Handler:
    """Route every record of the process through `build_log_handler` at `level`; returns the
    handler. Libraries that log payloads at DEBUG stay at INFO (or `level`, if higher)."""
    handler = build_log_handler(json_lines, stream)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    floor = max(logging.getLogger().level, logging.INFO)
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(floor)
    return handler
