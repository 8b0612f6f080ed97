"""Every `ems` command's help: a description, every argument explained, examples that parse."""

from __future__ import annotations

import argparse
import shlex

import pytest

from ems.cli import _parser
from ems.help import subcommands

COMMANDS = {" ".join(path): sub for path, sub in subcommands(_parser())}


def test_the_commands_are_all_there() -> None:
    assert {"run", "check-config", "tags", "sim", "events", "simulate-devices", "prequal", "cluster status",
            "cluster add", "status", "read", "write"} <= set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_a_description_and_an_example(command: str) -> None:
    parser = COMMANDS[command]
    assert parser.description and len(parser.description) > 20
    assert "examples:\n  ems " in (parser.epilog or "")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_argument_of_every_command_is_explained(command: str) -> None:
    undocumented = [action.option_strings or [action.dest] for action in COMMANDS[command]._actions
                    if not action.help and not isinstance(action, argparse._SubParsersAction)]
    assert undocumented == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_example_parses(command: str) -> None:
    block = (COMMANDS[command].epilog or "").split("examples:\n", 1)[1].split("\n\n", 1)[0]
    for line in block.splitlines():
        words = shlex.split(line.split("  #", 1)[0])
        assert words[0] == "ems"
        args = _parser().parse_args(words[1:])  # exits (SystemExit) on an unknown option or a bad value
        assert hasattr(args, "handler"), line


def test_an_options_default_is_shown_where_its_help_does_not_say_it() -> None:
    text = COMMANDS["prequal"].format_help()
    assert "(default 1)" in text  # --unit-id
    assert text.count("default the commercial one") == 1  # --io-map says it itself: not twice
