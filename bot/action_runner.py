"""Running custom actions written with rasa_sdk: in-process, or over HTTP at an action endpoint.

Both speak Rasa's action-server protocol: a call carries `next_action`, `sender_id`, the
tracker state and the domain; the answer carries `events` and `responses`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import rasa_sdk
from rasa_sdk.executor import ActionExecutor
from rasa_sdk.interfaces import ActionExecutionRejection, ActionNotFoundException


class ActionError(RuntimeError):
    """A custom action failed or could not be reached."""


class ActionRejected(RuntimeError):
    """The action refused to run on this message (rasa_sdk ActionExecutionRejection)."""


@dataclass
class ActionResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)


class ActionRunner(Protocol):
    async def run(self, action_name: str, tracker_state: dict[str, Any], domain: dict[str, Any]) -> ActionResult: ...

    def action_names(self) -> set[str] | None:
        """Names it can run, or None when unknown until called (remote server)."""


def _call(action_name: str, tracker_state: dict[str, Any], domain: dict[str, Any]) -> dict[str, Any]:
    return {
        "next_action": action_name,
        "sender_id": tracker_state["sender_id"],
        "tracker": tracker_state,
        "domain": domain,
        "version": rasa_sdk.__version__,
    }


class InProcessActionRunner:
    """Runs the actions of a Python package (default `actions`) inside the service process."""

    def __init__(self, package: str = "actions") -> None:
        self.executor = ActionExecutor()
        self.executor.register_package(importlib.import_module(package))

    def action_names(self) -> set[str] | None:
        return set(self.executor.actions)

    async def run(self, action_name: str, tracker_state: dict[str, Any], domain: dict[str, Any]) -> ActionResult:
        try:
            result = await self.executor.run(_call(action_name, tracker_state, domain))
        except ActionExecutionRejection as exc:
            raise ActionRejected(str(exc)) from exc
        except ActionNotFoundException as exc:
            raise ActionError(f"no custom action named {action_name!r}") from exc
        if result is None:
            return ActionResult()
        return ActionResult(list(result.events), list(result.responses))


class HttpActionRunner:
    """Calls a rasa_sdk action server (`python -m rasa_sdk --actions actions`) over HTTP."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def action_names(self) -> set[str] | None:
        return None

    async def run(self, action_name: str, tracker_state: dict[str, Any], domain: dict[str, Any]) -> ActionResult:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.post(self.url, json=_call(action_name, tracker_state, domain)) as response:
                body = await response.json(content_type=None)
                if response.status == 400 and isinstance(body, dict) and body.get("action_name"):
                    raise ActionRejected(str(body.get("error")))
                if response.status != 200:
                    raise ActionError(f"action server answered {response.status} for {action_name!r}: {body}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ActionError(f"action server unreachable for {action_name!r}: {exc}") from exc
        return ActionResult(list(body.get("events") or []), list(body.get("responses") or []))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
