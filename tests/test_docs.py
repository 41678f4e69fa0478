"""The README stays true to the product: its set-up block, every command, every setting."""

from __future__ import annotations

import argparse
import re

from pipeline.cli import build_parser
from pipeline.settings import Settings
from tests.conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_first_code_block_has_the_two_setup_commands() -> None:
    block = re.search(r"```\w*\n(.*?)```", README, re.DOTALL)
    assert block is not None
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.MULTILINE) and re.search(r"^test:", makefile, re.MULTILINE)


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    names = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                names.append(f"{prefix}{name}")
                names.extend(_subcommands(sub, f"{prefix}{name} "))
    return names


def test_every_command_is_documented() -> None:
    commands = _subcommands(build_parser())
    assert {"init", "run", "import", "classify", "articles", "coverage", "digest", "feeds", "demo"} <= set(
        commands
    )
    for command in commands:
        assert f"summitwatch {command.split()[0]}" in README, f"`summitwatch {command}` is not in README"
        if " " in command:
            assert command.split()[1] in README


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`{name}" in README, f"setting {name!r} is not in README"
    for variable in (
        "SUMMITWATCH_DB_URL",
        "SUMMITWATCH_CONFIG_DIR",
        "SUMMITWATCH_ALLOW_PRIVATE_NETWORKS",
        "SLACK_BOT_TOKEN",
        "SLACK_CHANNEL",
        "SLACK_WEBHOOK_URL",
        "SLACK_API_URL",
    ):
        assert variable in README


def test_every_view_is_documented() -> None:
    views = re.findall(r"CREATE VIEW (\w+)", (REPO_ROOT / "sql" / "views.sql").read_text())
    assert len(views) >= 8
    for view in views:
        assert view in README, f"view {view} is not in README"
