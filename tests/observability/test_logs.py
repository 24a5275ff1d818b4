"""Structured logs: a whole conversation at DEBUG, in JSON, as production writes them. Every
record of a turn names the conversation; none holds the phone, the customer's name or what
the customer wrote."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.observability import PAYLOAD_LOGGERS, RedactingFilter, configure_logging
from tests.e2e.conftest import Chat

Records = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def json_logs() -> Iterator[Records]:
    """The process's logging set up as `LOG_LEVEL=DEBUG LOG_JSON=true` does, into a buffer."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {name: logging.getLogger(name).level for name in PAYLOAD_LOGGERS})
    buffer = io.StringIO()
    configure_logging("DEBUG", json_lines=True, stream=buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]  # every line is JSON
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


async def test_a_conversation_leaves_no_personal_data_in_the_logs(client: TestClient, json_logs: Records) -> None:
    sender = "log-test-1"
    chat = Chat(client, sender)
    said = [
        "xin chào",
        "tra cứu hóa đơn",
        "PE0400012345",
        "0912345678",
        "thanh toán tiền điện",
        "mất điện ở phường Bến Thành quận 1",
    ]
    replies = [await chat.say(text) for text in said]
    assert "Nguyễn Văn An" in replies[3]  # the bill was shown: the name was in play
    assert "/payments/" in replies[4]
    assert "sự cố đường dây trung thế" in replies[5]

    records = json_logs()
    text = json.dumps(records, ensure_ascii=False)
    for secret in ("0912345678", "912345678", "Nguyễn Văn An", "Nguyen Van An", "12 Nguyễn Trãi"):
        assert secret not in text, secret
    for message in said:
        if message != "PE0400012345":  # customer codes are ids, allowed in logs
            assert message not in text, message

    turns = [r for r in records if r["message"].startswith("turn handled")]
    assert len(turns) == len(said)
    # Records written while a request is handled (the access line comes after) name the
    # conversation: the turn's own, and the actions' (rasa_sdk) too.
    handled = [r for r in records if r.get("request_id")]
    assert all(r.get("conversation_id") == sender and r.get("channel") == "rest" for r in handled), handled
    assert {r["logger"] for r in handled} >= {"bot.metrics", "rasa_sdk.executor"}
    assert len({r["request_id"] for r in turns}) == len(said)  # one id per request

def test_phone_numbers_and_sql_values_are_redacted_but_ids_kept() -> None:
    def filtered(message: str, *args: Any, exc: BaseException | None = None) -> logging.LogRecord:
        exc_info = (type(exc), exc, None) if exc else None
        record = logging.LogRecord("t", logging.INFO, __file__, 1, message, args, exc_info)
        RedactingFilter().filter(record)
        return record

    record = filtered("verify %s for %s then 0912 345 678, +84 912.345.678 and 84912345678", "PE0400012345", "0987654321")
    assert record.getMessage() == "verify PE0400012345 for [phone] then [phone], [phone] and [phone]"
    kept = "ticket YC20261126001, order 20261126093012, chat 123456789, 842076 VND, took 0.0123456789 s"
    assert filtered(kept).getMessage() == kept
    error = RuntimeError(
        "(IntegrityError) duplicate key\nDETAIL:  Key (phone)=(0912345678) already exists.\n"
        "[SQL: INSERT INTO customers (name, phone) VALUES ($1, $2)]\n[parameters: ('Nguyễn Văn An', '0912345678')]"
    )
    record = filtered("insert failed", exc=error)
    assert "Nguyễn Văn An" not in record.exc_text and "0912345678" not in record.exc_text  # type: ignore[operator]
    assert "Key (phone)=(hidden) already exists" in record.exc_text  # type: ignore[operator]
    assert "[SQL: INSERT INTO customers" in record.exc_text  # type: ignore[operator]
