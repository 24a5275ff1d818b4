"""Broken project files stop startup with a message naming the file and the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from backend.settings import Settings
from bot.config_files import ConfigFileError, read_yaml_with_env
from bot.domain import Domain
from bot.rules import load_rules
from bot.runtime import build_runtime
from tests.conftest import PROJECT_DIR


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("domain.yml", "config.yml", "endpoints.yml", "credentials.yml"):
        shutil.copy(PROJECT_DIR / name, tmp_path / name)
    shutil.copytree(PROJECT_DIR / "data", tmp_path / "data")
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_project_files_load(project: Path) -> None:
    domain = Domain.load(project / "domain.yml")
    assert "lookup_bill" in domain.intents and "verify_form" in domain.forms
    assert load_rules(project / "data" / "rules.yml", domain)


def test_bad_yaml_names_the_file_and_line(project: Path) -> None:
    _edit(project / "domain.yml", "intents:\n", "intents:\n  - [unclosed\n")
    with pytest.raises(ConfigFileError) as error:
        Domain.load(project / "domain.yml")
    assert "domain.yml" in str(error.value) and "line" in str(error.value)


def test_unknown_slot_type_names_the_key(project: Path) -> None:
    _edit(project / "domain.yml", "    type: categorical", "    type: colour")
    with pytest.raises(ConfigFileError, match=r"domain\.yml: slots\.language\.type"):
        Domain.load(project / "domain.yml")


def test_form_with_unknown_slot_is_refused(project: Path) -> None:
    _edit(project / "domain.yml", "      - customer_code\n      - phone\n", "      - customer_code\n      - favourite_colour\n")
    with pytest.raises(ConfigFileError, match=r"forms\.verify_form\.required_slots.*favourite_colour"):
        Domain.load(project / "domain.yml")


def test_rule_with_unknown_action_names_the_rule(project: Path) -> None:
    _edit(project / "data" / "rules.yml", "action: utter_greet", "action: utter_nonexistent")
    domain = Domain.load(project / "domain.yml")
    with pytest.raises(ConfigFileError) as error:
        load_rules(project / "data" / "rules.yml", domain)
    message = str(error.value)
    assert "rules.yml" in message and "Greet and show what the bot can do" in message and "utter_nonexistent" in message


def test_rule_with_unknown_intent_is_refused(project: Path) -> None:
    _edit(project / "data" / "rules.yml", "intent: greet", "intent: greeet")
    with pytest.raises(ConfigFileError, match="greeet"):
        load_rules(project / "data" / "rules.yml", Domain.load(project / "domain.yml"))


def test_domain_action_without_implementation_stops_startup(project: Path, trained_models_dir: Path) -> None:
    _edit(project / "domain.yml", "  - action_fallback\n", "  - action_fallback\n  - action_does_not_exist\n")
    settings = Settings(project_dir=project, models_dir=trained_models_dir)
    with pytest.raises(ConfigFileError, match="action_does_not_exist"):
        build_runtime(settings)


def test_env_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "endpoints.yml"
    path.write_text("tracker_store:\n  url: ${SOME_URL}\n  type: ${KIND:-memory}\n", encoding="utf-8")
    monkeypatch.setenv("SOME_URL", "redis://example")
    assert read_yaml_with_env(path)["tracker_store"] == {"url": "redis://example", "type": "memory"}
    monkeypatch.delenv("SOME_URL")
    with pytest.raises(ConfigFileError, match=r"endpoints\.yml: tracker_store\.url: environment variable SOME_URL"):
        read_yaml_with_env(path)


def test_bad_store_type_in_endpoints(project: Path, trained_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_STORE", "mongo")
    with pytest.raises(ConfigFileError, match=r"tracker_store\.type"):
        build_runtime(Settings(project_dir=project, models_dir=trained_models_dir))
