"""Dialogue runtime semantics on a small sample domain: rules, forms, slot mappings,
fallback, session expiry, response conditions. Button payloads ("/intent{...}") drive it."""

from __future__ import annotations

import time

import pytest

from bot.action_runner import InProcessActionRunner
from bot.agent import Agent
from bot.channels.base import UserMessage
from bot.domain import Domain
from bot.nlu_service import NLUService
from bot.rules import RulePolicy, load_rules
from bot.stores import InMemoryLockStore, InMemoryTrackerStore
from bot.tracker import DialogueStateTracker
from tests.bot.conftest import SAMPLE


@pytest.fixture
def agent(sample_nlu: NLUService) -> Agent:
    domain = Domain.load(SAMPLE / "domain.yml")
    rules = load_rules(SAMPLE / "rules.yml", domain)
    return Agent(
        domain,
        RulePolicy(rules, domain),
        sample_nlu,
        InProcessActionRunner("tests.bot.sample_actions"),
        InMemoryTrackerStore(),
        InMemoryLockStore(),
    )


async def say(agent: Agent, text: str, sender: str = "alice") -> list[str]:
    replies = await agent.handle_message(UserMessage(sender, text))
    return [r.get("text", "") for r in replies]


async def events_of(agent: Agent, sender: str = "alice") -> list[dict]:
    return await agent.tracker_store.retrieve(sender)


async def test_conversation_start_rule_only_applies_to_the_first_message(agent: Agent) -> None:
    assert await say(agent, "/greet") == ["Chào mừng lần đầu"]
    assert await say(agent, "/greet") == ["Xin chào"]


async def test_form_asks_each_slot_then_submits(agent: Agent) -> None:
    assert await say(agent, "/order") == ["Which size?"]
    assert await say(agent, '/inform{"size": "m"}') == ["Your name, size M?"]
    assert await say(agent, "Lan") == ["Ordered M for Lan."]
    events = await events_of(agent)
    loops = [e["name"] for e in events if e["event"] == "active_loop"]
    assert loops == ["order_form", None]


async def test_form_validation_rejects_a_bad_value_and_asks_again(agent: Agent) -> None:
    await say(agent, "/order")
    assert await say(agent, '/inform{"size": "XXL"}') == ["No such size XXL.", "Which size?"]
    assert await say(agent, '/inform{"size": "L"}') == ["Your name, size L?"]


async def test_slots_given_with_the_trigger_are_used_by_the_form(agent: Agent) -> None:
    assert await say(agent, '/order{"size": "s"}') == ["Your name, size S?"]


async def test_deny_inside_the_form_cancels_it(agent: Agent) -> None:
    await say(agent, "/order")
    assert await say(agent, "/deny") == ["Cancelled."]
    assert await say(agent, "/greet") == ["Xin chào"]  # the form is no longer active


async def test_interruption_is_answered_then_the_form_asks_again(agent: Agent) -> None:
    await say(agent, "/order")
    await say(agent, '/inform{"size": "M"}')
    # `name` is from_text with not_intent help: the form rejects, the help rule answers, the form re-asks.
    assert await say(agent, "/help") == ["help text", "Your name, size M?"]
    assert await say(agent, "Minh") == ["Ordered M for Minh."]


async def test_from_text_mapping_only_fills_inside_its_form(agent: Agent) -> None:
    await say(agent, "/greet")
    await say(agent, "some words")
    tracker_events = await events_of(agent)
    assert not any(e["event"] == "slot" and e["name"] == "name" for e in tracker_events)


async def test_from_intent_mapping_sets_its_value(agent: Agent) -> None:
    await say(agent, "/greet")
    events = await events_of(agent)
    assert {"name": "greeted", "value": True}.items() <= next(e for e in events if e.get("name") == "greeted").items()


async def test_low_confidence_message_triggers_fallback_and_is_reverted(agent: Agent) -> None:
    assert await say(agent, "qwertyuiop asdf zxcv") == ["Sorry?"]
    events = await events_of(agent)
    assert any(e["event"] == "rewind" for e in events)


async def test_response_variation_follows_the_language_slot(agent: Agent) -> None:
    await say(agent, "/greet")
    agent.domain.slots["language"] = agent.domain.slots["language"].__class__("language", "categorical", "en", ())
    assert await say(agent, "/greet", sender="bob") == ["Chào mừng lần đầu"]
    assert await say(agent, "/greet", sender="bob") == ["Hello"]


async def test_expired_session_starts_a_new_one_and_carries_slots_over(agent: Agent) -> None:
    await say(agent, '/order{"size": "L"}')
    await say(agent, "/deny")
    stored = await events_of(agent)
    old = [dict(e, timestamp=e["timestamp"] - 2 * 3600) for e in stored]
    await agent.tracker_store.delete("alice")
    await agent.tracker_store.append("alice", old, 0)
    assert await say(agent, "/greet") == ["Chào mừng lần đầu"]  # a new session: conversation start again
    events = await events_of(agent)
    starts = [i for i, e in enumerate(events) if e["event"] == "session_started"]
    assert len(starts) == 2
    carried = [e for e in events[starts[1] :] if e["event"] == "slot" and e["name"] == "size"]
    assert carried and carried[0]["value"] == "L"


async def test_events_are_rasa_event_dicts_with_timestamps(agent: Agent) -> None:
    before = time.time()
    await say(agent, "/greet")
    events = await events_of(agent)
    kinds = [e["event"] for e in events]
    assert kinds[:4] == ["action", "session_started", "action", "user"]
    assert "bot" in kinds and kinds[-1] == "action" and events[-1]["name"] == "action_listen"
    assert all(e["timestamp"] >= before - 1 for e in events)


async def test_a_long_history_gives_the_same_state_as_applying_every_event(agent: Agent) -> None:
    """Trackers apply only the events since the latest session start or restart; the state is
    the one every event applied in order gives (carried-over slots, forms, restarts)."""
    await say(agent, '/order{"size": "L"}')
    await say(agent, "/deny")
    aged = [dict(e, timestamp=e["timestamp"] - 2 * 3600) for e in await events_of(agent)]
    await agent.tracker_store.delete("alice")
    await agent.tracker_store.append("alice", aged, 0)
    await say(agent, "/greet")  # a new session, the size carried over
    await say(agent, "/order")  # the form opens in the new session
    events = await events_of(agent)
    assert [e["event"] for e in events].count("session_started") == 2

    one_by_one = DialogueStateTracker("alice", agent.domain.initial_slots())
    for e in events:
        one_by_one.update(e)
    built = DialogueStateTracker("alice", agent.domain.initial_slots(), events)
    assert built.events == events
    for view in ("slots", "active_loop", "paused", "latest_message", "latest_action_name", "followup_action"):
        assert getattr(built, view) == getattr(one_by_one, view), view
    assert built.tokens() == one_by_one.tokens()
    assert built.slots["size"] == "L" and built.active_loop is not None
