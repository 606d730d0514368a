"""``matting-deploy`` command line: export, calibrate, validate, build, check, bench, infer."""

from __future__ import annotations

import importlib
import sys

import click

from . import __version__
from .errors import GateFailed, MattingDeployError

# Subcommand -> "module:attribute"; imported only when that subcommand runs (fast --help).
COMMANDS = {name: f"matting_deploy.commands.{name}:{name}"
            for name in ("export", "calibrate", "validate", "build", "check", "bench", "infer", "demo")}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GateFailed as e:
            click.echo(f"FAILED: {e}", err=True)
            sys.exit(1)
        except MattingDeployError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="matting-deploy")
def main() -> None:
    """Portrait matting (MODNet, RVM) from PyTorch to verified ONNX, INT8/FP16 and TensorRT."""
