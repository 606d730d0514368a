"""The backend and artifact options: both spellings everywhere, one in the help, names derived from
the code's constants (a new backend or artifact appears without editing a command)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from matting_deploy import runtimes
from matting_deploy.bundle import layout
from matting_deploy.cli import main
from matting_deploy.commands import options
from matting_deploy.commands.bench import bench
from matting_deploy.commands.infer import infer
from matting_deploy.commands.validate import validate

# command, canonical backend option, canonical artifact option, the other required arguments
COMMANDS = [
    (bench, "--backends", "--artifacts", ["--bundle", "b"]),
    (infer, "--backend", "--artifact", ["--bundle", "b", "--input", ".", "--out", "o"]),
    (validate, "--backends", "--artifacts", ["--bundle", "b", "--data", "d"]),
]


def params(cmd, args):
    return cmd.make_context(cmd.name, list(args)).params


@pytest.mark.parametrize("cmd, backend, artifact, base", COMMANDS, ids=lambda c: getattr(c, "name", None))
def test_both_spellings_parse_to_the_same_values(cmd, backend, artifact, base):
    for b in ("--backend", "--backends"):
        for a in ("--artifact", "--artifacts"):
            got = params(cmd, [*base, b, "cpu", a, "fp32"])
            key_b, key_a = backend.lstrip("-"), artifact.lstrip("-")
            assert got[key_b] == (["cpu"] if key_b.endswith("s") else "cpu")
            assert got[key_a] == (["fp32"] if key_a.endswith("s") else "fp32")


@pytest.mark.parametrize("cmd, backend, artifact, base", COMMANDS, ids=lambda c: getattr(c, "name", None))
def test_help_shows_one_canonical_spelling_and_every_name(cmd, backend, artifact, base):
    text = CliRunner().invoke(main, [cmd.name, "--help"]).output
    flags = set(text.replace(",", " ").split())
    other_b = "--backend" if backend == "--backends" else "--backends"
    other_a = "--artifact" if artifact == "--artifacts" else "--artifacts"
    assert backend in flags and artifact in flags
    assert other_b not in flags and other_a not in flags
    flat = " ".join(text.split())
    for name in runtimes.BACKENDS:
        assert name in flat
    for name in layout.ARTIFACT_FILES:  # infer --artifact lists int8-cpu too
        assert name in flat


def test_infer_help_lists_int8_cpu():
    assert "int8-cpu" in CliRunner().invoke(main, ["infer", "--help"]).output


def test_names_come_from_the_constants(monkeypatch):
    """A backend added to runtimes.BACKENDS and an artifact added to the layout are accepted and listed
    by any command defined afterwards (as h21's openvino and bf16 will be)."""
    monkeypatch.setattr(runtimes, "BACKENDS", (*runtimes.BACKENDS, "openvino"))
    monkeypatch.setitem(layout.ARTIFACT_FILES, "bf16", "model.bf16.onnx")

    @click.command()
    @options.backend_option(many=False, default="cpu")
    @options.artifact_option(many=True)
    def one(backend, artifacts):
        click.echo(f"{backend} {artifacts}")

    @click.command()
    @options.backend_option(many=True)
    def many(backends):
        click.echo(f"{backends}")

    res = CliRunner().invoke(one, ["--backends", "openvino", "--artifact", "bf16,fp32"])
    assert res.exit_code == 0 and res.output.strip() == "openvino ['bf16', 'fp32']"
    assert "openvino" in CliRunner().invoke(one, ["--help"]).output
    assert "bf16" in CliRunner().invoke(one, ["--help"]).output
    res = CliRunner().invoke(many, ["--backend", "cpu,openvino"])
    assert res.exit_code == 0 and res.output.strip() == "['cpu', 'openvino']"


def test_bad_values_are_one_line_errors():
    runner = CliRunner()
    res = runner.invoke(main, ["validate", "--bundle", "b", "--data", "d", "--backend", "cpu,tpu"])
    assert res.exit_code == 2 and "--backends: unknown backend 'tpu' (choose from" in res.output
    res = runner.invoke(main, ["infer", "--bundle", "b", "--input", ".", "--out", "o", "--artifacts", "fp32,int8"])
    assert res.exit_code == 2 and "--artifact: one artifact here" in res.output
    res = runner.invoke(main, ["bench", "--bundle", "b", "--backends", "tpu"])
    assert res.exit_code == 2 and res.output.startswith("error: --backend")
