"""Assembles the runtime from the project files: domain.yml, data/rules.yml, config.yml,
endpoints.yml, the NLU model. Any broken file stops startup naming the file and the key."""

from __future__ import annotations

from dataclasses import dataclass

from backend.settings import Settings
from bot.agent import Agent
from bot.config_files import ConfigFileError, read_yaml
from bot.domain import DEFAULT_ACTIONS, Domain
from bot.endpoints import Endpoints, build_endpoints
from bot.nlu_service import NLUService
from bot.rules import RulePolicy, load_rules
from nlu import NLUModel


@dataclass
class Runtime:
    agent: Agent
    endpoints: Endpoints

    async def close(self) -> None:
        await self.endpoints.close()


def _core_fallback_action(settings: Settings) -> str:
    path = settings.project_dir / "config.yml"
    config = read_yaml(path)
    policies = config.get("policies") or []
    if not isinstance(policies, list):
        raise ConfigFileError(path, "policies", "must be a list")
    for policy in policies:
        if isinstance(policy, dict) and policy.get("name") == "RulePolicy":
            return str(policy.get("core_fallback_action_name", "action_default_fallback"))
    return "action_default_fallback"


def build_runtime(settings: Settings, model: NLUModel | None = None) -> Runtime:
    """The runtime for these settings; `model` skips loading (or training) the NLU from disk."""
    root = settings.project_dir
    domain = Domain.load(root / "domain.yml")
    domain.template_defaults["hotline"] = settings.hotline
    rules = load_rules(root / "data" / "rules.yml", domain)
    fallback = _core_fallback_action(settings)
    if not domain.knows_action(fallback):
        raise ConfigFileError(root / "config.yml", "policies.RulePolicy.core_fallback_action_name", f"unknown action {fallback!r}")
    endpoints = build_endpoints(root / "endpoints.yml", settings)
    known = endpoints.action_runner.action_names()
    if known is not None:
        for action in domain.actions:
            if action not in known and action not in DEFAULT_ACTIONS and not action.startswith("utter_"):
                raise ConfigFileError(domain.path, "actions", f"{action!r} has no implementation in actions/")
    if model is None:
        nlu = NLUService.load_or_train(root, settings.models_dir, set(domain.intents))
    else:
        nlu = NLUService(model, set(domain.intents))
    agent = Agent(domain, RulePolicy(rules, domain, fallback), nlu, endpoints.action_runner, endpoints.tracker_store, endpoints.lock_store)
    return Runtime(agent, endpoints)
