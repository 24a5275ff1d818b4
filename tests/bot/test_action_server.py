"""The same rasa_sdk actions run over HTTP in a real rasa_sdk action server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from bot.action_runner import HttpActionRunner
from bot.agent import Agent
from bot.channels.base import UserMessage
from bot.domain import Domain
from bot.nlu_service import NLUService
from bot.rules import RulePolicy, load_rules
from bot.stores import InMemoryLockStore, InMemoryTrackerStore
from tests.bot.conftest import SAMPLE
from tests.conftest import PROJECT_DIR
from tests.servers import free_port


@pytest.fixture(scope="module")
def action_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "rasa_sdk", "--actions", "tests.bot.sample_actions", "--port", str(port)],
        cwd=PROJECT_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so its workers stop with it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail("the rasa_sdk action server exited")
                time.sleep(0.2)
        else:
            pytest.fail("the rasa_sdk action server did not start")
        yield f"{url}/webhook"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


async def test_form_validation_and_custom_action_over_http(action_server: str, sample_nlu: NLUService) -> None:
    domain = Domain.load(SAMPLE / "domain.yml")
    runner = HttpActionRunner(action_server)
    agent = Agent(
        domain, RulePolicy(load_rules(SAMPLE / "rules.yml", domain), domain), sample_nlu, runner, InMemoryTrackerStore(), InMemoryLockStore()
    )
    try:
        async def say(text: str) -> list[str]:
            return [r.get("text") for r in await agent.handle_message(UserMessage("remote", text))]

        assert await say("/order") == ["Which size?"]
        assert await say('/inform{"size": "XL"}') == ["No such size XL.", "Which size?"]
        assert await say('/inform{"size": "s"}') == ["Your name, size S?"]
        assert await say("Hoa") == ["Ordered S for Hoa."]
    finally:
        await runner.close()


async def test_unreachable_action_server_gets_an_apology_not_a_crash(sample_nlu: NLUService) -> None:
    domain = Domain.load(SAMPLE / "domain.yml")
    domain.responses["utter_error"] = [{"text": "Sorry, try later."}]
    runner = HttpActionRunner(f"http://127.0.0.1:{free_port()}/webhook", timeout=2)
    agent = Agent(
        domain, RulePolicy(load_rules(SAMPLE / "rules.yml", domain), domain), sample_nlu, runner, InMemoryTrackerStore(), InMemoryLockStore()
    )
    try:
        replies = await agent.handle_message(UserMessage("x", "/order"))
        assert [r["text"] for r in replies] == ["Sorry, try later."]
        # The conversation goes on: rules that need no action server still answer.
        assert [r["text"] for r in await agent.handle_message(UserMessage("x", "/help"))] == ["help text"]
    finally:
        await runner.close()


