"""Small pieces of the console: canned responses, the cancel phrase, transcripts, business
hours, escalation reasons."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from actions.handoff import escalation_reason
from backend.services.handoff import within_business_hours
from backend.settings import get_settings
from bot.console.conversation import transcript_lines
from bot.console.hook import wants_the_bot
from bot.console.views import expand_canned

CANNED = {"chao": {"vi": "Xin chào anh/chị", "en": "Hello"}}


def test_canned_responses_expand_in_the_customers_language() -> None:
    assert expand_canned("/chao", CANNED, "vi") == "Xin chào anh/chị"
    assert expand_canned("/chao Minh", CANNED, "en") == "Hello Minh"
    assert expand_canned("/unknown", CANNED, "vi") == "/unknown"
    assert expand_canned("plain", CANNED, "vi") == "plain"


@pytest.mark.parametrize(
    ("text", "intent", "status", "expected"),
    [
        ("thôi, để bot trả lời", None, "active", True),
        ("THOI DE BOT TRA LOI", "nlu_fallback", "waiting", True),
        ("back to the bot please", None, "active", True),
        ("/deny", "deny", "waiting", True),
        ("không", "deny", "active", False),  # an answer to the agent, not a cancel
        ("mất điện rồi", "report_outage", "waiting", False),
    ],
)
def test_what_sends_the_customer_back_to_the_bot(text: str, intent: str | None, status: str, expected: bool) -> None:
    assert wants_the_bot(text, intent, status) is expected


def test_transcript_has_intents_bot_and_agent_lines() -> None:
    events = [
        {"event": "user", "text": "hi", "timestamp": 1.0, "parse_data": {"intent": {"name": "greet", "confidence": 0.93}}},
        {"event": "bot", "text": "Xin chào", "timestamp": 2.0, "data": {"buttons": [{"title": "A", "payload": "/a"}]}},
        {"event": "pause", "timestamp": 3.0},
        {"event": "bot", "text": "Em đây", "timestamp": 4.0, "metadata": {"staff": "Lan"}},
        {"event": "slot", "name": "x", "value": 1, "timestamp": 5.0},
    ]
    lines = transcript_lines(events)
    assert [(line.role, line.intent, line.author) for line in lines] == [
        ("customer", "greet", None), ("bot", None, None), ("system", None, None), ("agent", None, "Lan"),
    ]
    assert lines[0].confidence == pytest.approx(0.93)
    assert "[A]" in lines[1].text


def test_business_hours_on_the_vietnam_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANDOFF_HOURS", "08:00-17:00")
    monkeypatch.setenv("HANDOFF_DAYS", "0-4")
    get_settings.cache_clear()
    # 2026-11-26 is a Thursday; 02:00 UTC is 09:00 in Viet Nam
    assert within_business_hours(datetime(2026, 11, 26, 2, 0, tzinfo=UTC))
    assert not within_business_hours(datetime(2026, 11, 26, 11, 0, tzinfo=UTC))  # 18:00
    assert not within_business_hours(datetime(2026, 11, 28, 2, 0, tzinfo=UTC))  # Saturday


def test_escalation_reasons() -> None:
    def turns(*intents: str) -> list[dict[str, object]]:
        return [{"intent": i} for i in intents]

    assert escalation_reason(turns("greet", "talk_to_human")) == "customer_request"
    assert escalation_reason(turns("complain", "talk_to_human")) == "complaint"
    assert escalation_reason(turns("nlu_fallback", "out_of_scope", "talk_to_human")) == "misunderstood"
