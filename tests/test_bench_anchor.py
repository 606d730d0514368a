"""``bench --anchor torch`` and ``bench/bench_gpu_sweep.py`` on CPU (eager PyTorch anchor)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from matting_deploy.cli import main
from tests.fixtures import NEEDS_TORCH, make_runtime_bundle

SWEEP = Path(__file__).resolve().parents[1] / "bench" / "bench_gpu_sweep.py"


def _sweep_module():
    spec = importlib.util.spec_from_file_location("bench_gpu_sweep", SWEEP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The sweep on CPU at one small size, all three models: its output and its bundle folder."""
    pytest.importorskip("torch", reason=NEEDS_TORCH)  # the sweep exports its bundles from PyTorch
    work = tmp_path_factory.mktemp("sweep")
    out = work / "rows.json"
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        rc = _sweep_module().main(["--backend", "cpu", "--sizes", "64x64@0.5", "--iters", "2",
                                   "--models", "rvm,modnet,bgm",
                                   "--warmup", "1", "--threads", "1", "--work", str(work),
                                   "--json", str(out)])
    return rc, text.getvalue(), json.loads(out.read_text()), work


def test_sweep_runs_on_cpu_and_prints_the_table(sweep):
    rc, text, rows, _ = sweep
    assert rc == 0, text
    assert [(r["model"], r["size"], r["artifact"]) for r in rows] == [
        ("rvm", "64x64@0.5", "fp32"), ("rvm", "64x64@0.5", "fp16"),
        ("modnet", "64x64", "fp32"), ("modnet", "64x64", "fp16"),
        ("bgm", "64x64", "fp32"), ("bgm", "64x64", "fp16")]
    for r in rows:
        assert r["p50_ms"] > 0 and r["anchor"]["p50_ms"] > 0
        assert r["vs_anchor"] == pytest.approx(r["p50_ms"] / r["anchor"]["p50_ms"])
        assert "eager cpu fp32 (random weights: speed only)" in r["anchor"]["label"]
    assert "x anchor" in text and "rvm     64x64@0.5" in text
    assert "targets are for the CUDA backend; cpu figures shown, not judged" in text


def test_bench_anchor_torch_on_cpu(sweep, tmp_path):
    work = sweep[3]
    out = tmp_path / "b.json"
    res = CliRunner().invoke(main, ["bench", "--bundle", str(work / "rvm-64x64@0.5"), "--iters", "3",
                                    "--warmup", "1", "--threads", "1", "--artifacts", "fp32",
                                    "--anchor", "torch", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "anchor p50 ms" in res.output and "fp32 anchor: torch" in res.output
    row = json.loads(out.read_text())["rows"][0]
    assert row["anchor"]["p50_ms"] > 0 and "eager cpu" in row["anchor"]["label"]
    assert "device_vs_anchor" not in row  # no device-only figures on CPU's session.run path


def test_anchor_refuses_a_graph_that_is_not_our_network(tmp_path):
    root = make_runtime_bundle(tmp_path / "rvm", "rvm")
    res = CliRunner().invoke(main, ["bench", "--bundle", str(root), "--iters", "2",
                                    "--anchor", "torch"])
    assert res.exit_code == 2
    assert "error: --anchor torch: " in res.output and "no PyTorch twin to time" in res.output
    assert "Traceback" not in res.output


def test_anchor_without_torch_is_one_line(tmp_path, monkeypatch):
    root = make_runtime_bundle(tmp_path / "modnet", "modnet")
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**manifest, "source": "pytorch"}))  # one of ours
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    res = CliRunner().invoke(main, ["bench", "--bundle", str(root), "--iters", "2",
                                    "--anchor", "torch"])
    assert res.exit_code == 2
    assert res.output.startswith("error: --anchor torch: PyTorch is not installed here")
    assert res.output.count("\n") == 1
