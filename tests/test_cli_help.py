"""`--help`: every option of every command is described and every command shows an example."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from matting_deploy.cli import COMMANDS, main


def _command(name: str) -> click.Command:
    return main.get_command(click.Context(main), name)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_has_help_and_the_command_an_example(name):
    command = _command(name)
    missing = [p.opts[0] for p in command.params if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert not missing, f"{name}: options without help: {missing}"
    assert command.epilog and f"matting-deploy {name} " in command.epilog, f"{name}: no example in --help"
    text = CliRunner().invoke(main, [name, "--help"]).output
    assert "Example" in text and f"matting-deploy {name} " in text


def test_group_help_lists_commands_with_an_example():
    text = CliRunner().invoke(main, ["--help"]).output
    assert all(name in text for name in COMMANDS)
    assert "matting-deploy demo" in text
    assert "MODNet, RVM, Background Matting v1" in " ".join(text.split())  # every model, BGM included


def test_calibrate_int8_is_marked_required():
    text = CliRunner().invoke(main, ["calibrate", "--help"]).output
    assert "[required]" in text.split("--int8", 1)[1].split("--bundle", 1)[0]
    res = CliRunner().invoke(main, ["calibrate", "--bundle", "b", "--data", "d"])
    assert res.exit_code == 2 and "--int8" in res.output
