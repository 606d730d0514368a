"""``matting-deploy`` command line: export, calibrate, validate, build, check, bench,
infer, demo.

Every failure is one line on stderr: ``error: <file or option>: <problem>`` and exit code 2 for
bad input (usage errors included), ``FAILED: ...`` and 1 for a failed drift gate, ``error:
interrupted`` and 128 + signal for SIGINT/SIGTERM (both clean up the same way), and, as a last
resort for a bug, ``error: internal error ...`` and 70 -- never a traceback.
"""

from __future__ import annotations

import importlib
import signal
import sys

import click

from . import __version__
from .errors import EXIT_BAD_INPUT, EXIT_BUG, EXIT_GATE, GateFailed, MattingDeployError, Terminated, first_line

# Subcommand -> "module:attribute"; imported only when that subcommand runs (fast --help).
COMMANDS = {name: f"matting_deploy.commands.{name}:{name}"
            for name in ("export", "calibrate", "validate", "build", "check", "bench", "infer", "demo")}


def _usage_line(e: click.UsageError) -> str:
    """click's usage error as ``<option>: <problem>`` (or ``<command>: <problem>``)."""
    param = getattr(e, "param", None)
    where = getattr(e, "param_hint", None) or (param.opts[0] if getattr(param, "opts", None) else None)
    if isinstance(where, (list, tuple)):
        where = " / ".join(where)
    if where is None and getattr(e, "option_name", None):
        where = e.option_name
    if where is None:
        where = e.ctx.command_path if e.ctx else "matting-deploy"
    where = str(where).strip("'\"")
    plain = isinstance(e, click.BadParameter) and not isinstance(e, click.MissingParameter)
    text = e.message if plain and e.message else e.format_message()
    return f"{where}: {' '.join(text.split())}"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


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
            click.echo(f"FAILED: {_one_line(e)}", err=True)
            sys.exit(EXIT_GATE)
        except MattingDeployError as e:
            click.echo(f"error: {_one_line(e)}", err=True)
            sys.exit(EXIT_BAD_INPUT)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's main with one-line usage errors, SIGTERM handled like SIGINT, no tracebacks."""
        if not standalone_mode:  # nested call (demo): the outer main reports
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            sys.exit(code if isinstance(code, int) else 0)
        except click.UsageError as e:
            click.echo(f"error: {_usage_line(e)}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except (KeyboardInterrupt, click.Abort) as e:
            cause = e.__cause__ if isinstance(e, click.Abort) else e  # click wraps KeyboardInterrupt
            sig = signal.SIGTERM if isinstance(cause, Terminated) else signal.SIGINT
            click.echo(f"error: interrupted by {sig.name}; nothing half-written was kept", err=True)
            sys.exit(128 + sig)
        except (SystemExit, click.exceptions.Exit):
            raise
        except Exception as e:  # last resort: a bug, still one line (the known cases are fixed at source)
            click.echo(f"error: internal error: {type(e).__name__}: {first_line(e)} (this is a bug in "
                       f"matting-deploy {__version__}; please report it with the command you ran)",
                       err=True)
            sys.exit(EXIT_BUG)
        finally:
            signal.signal(signal.SIGTERM, previous)


@click.group(cls=LazyGroup, epilog="\b\nStart with:\n  matting-deploy demo   # the whole pipeline on the "
             "official RVM, nothing needed from you\n  matting-deploy COMMAND --help")
@click.version_option(__version__, prog_name="matting-deploy")
def main() -> None:
    """Portrait matting (MODNet, RVM, Background Matting v1) from PyTorch to verified ONNX, INT8/FP16
    and TensorRT."""


if __name__ == "__main__":  # python -m matting_deploy.cli
    main()
