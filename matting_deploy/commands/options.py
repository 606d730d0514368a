"""What several commands parse the same way: examples, comma lists, and the backend and artifact
options (each accepts both spellings, ``--backend``/``--backends`` and ``--artifact``/``--artifacts``;
help shows the command's canonical one; the names come from ``runtimes.BACKENDS`` and
``bundle.layout``, so a new backend or artifact appears without editing the commands)."""

from __future__ import annotations

from collections.abc import Callable

import click

from .. import runtimes


def examples(*lines: str) -> str:
    """A click epilog listing example command lines, kept as written (click's ``\\b`` marker)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def split_list(text: str | None) -> list[str] | None:
    """``"fp32, int8,fp32"`` -> ``["fp32", "int8"]`` (order kept, duplicates dropped); None if empty."""
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    return list(dict.fromkeys(items)) or None


class AliasedOption(click.Option):
    """An option with extra spellings that the help leaves out (it shows the first name only);
    ``help_names``: a function whose names fill ``{names}`` in the help when it is shown (so
    defining a command imports nothing heavy)."""

    def __init__(self, *args, help_names: Callable[[], tuple[str, ...]] | None = None, **kw):
        super().__init__(*args, **kw)
        self.help_names = help_names

    def get_help_record(self, ctx: click.Context):
        opts, text = self.opts, self.help
        self.opts = opts[:1]
        if self.help_names is not None and text:
            self.help = text.replace("{names}", ", ".join(self.help_names()))
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts, self.help = opts, text


def backend_names() -> tuple[str, ...]:
    """Every backend a runner opens (``runtimes.BACKENDS``, read when a command is defined)."""
    return tuple(runtimes.BACKENDS)


def artifact_names() -> tuple[str, ...]:
    """Every artifact name (``bundle.layout.ARTIFACTS``: the ONNX files and OpenVINO's hinted ``bf16``;
    imported when asked: the bundle package pulls numpy, which a command's definition must not)."""
    from ..bundle import layout

    return tuple(layout.ARTIFACTS)


def _spellings(singular: str, many: bool) -> tuple[str, str]:
    return (f"--{singular}s", f"--{singular}") if many else (f"--{singular}", f"--{singular}s")


def _checked_list(allowed: tuple[str, ...] | None, what: str) -> Callable:
    def check(ctx, param, value):
        items = split_list(value)
        bad = [x for x in items or [] if allowed is not None and x not in allowed]
        if bad:
            raise click.BadParameter(f"unknown {what} '{bad[0]}' (choose from {', '.join(allowed)})")
        return items
    return check


def _one(ctx, param, value):
    if value is not None and "," in value:
        raise click.BadParameter(f"one artifact here, got the list '{value}'")
    return value


def backend_option(*, many: bool, help: str = "", **kw) -> Callable:
    """``--backend`` (one, a choice) or ``--backends`` (a comma list, each checked; the command gets a
    list or None); either spelling is accepted."""
    names = backend_names()
    if many:
        return click.option(*_spellings("backend", True), "backends", cls=AliasedOption,
                            callback=_checked_list(names, "backend"), metavar="LIST",
                            help=f"Comma list of {', '.join(names)}{help}", **kw)
    return click.option(*_spellings("backend", False), "backend", cls=AliasedOption,
                        type=click.Choice(names), help=help, **kw)


def artifact_option(*, many: bool, help: str = "", **kw) -> Callable:
    """``--artifact`` (one name) or ``--artifacts`` (a comma list, given to the command as a list or
    None); either spelling is accepted. Names are checked against the bundle by the stage (engines
    may be named by precision or ``trt-<precision>``)."""
    if many:
        return click.option(*_spellings("artifact", True), "artifacts", cls=AliasedOption,
                            callback=_checked_list(None, "artifact"), metavar="LIST",
                            help="Comma list of {names}" + help, help_names=artifact_names, **kw)
    return click.option(*_spellings("artifact", False), "artifact", cls=AliasedOption, callback=_one,
                        metavar="NAME", help="One of {names}" + help, help_names=artifact_names, **kw)
