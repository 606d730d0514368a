"""`demo`'s console note when a lower precision scores better than FP32 on its self-made data."""

from __future__ import annotations

import json

from matting_deploy.commands.demo import beats_fp32_notes


def _report(tmp_path, mses):
    results = [{"artifact": a, "backend": "cpu", "metrics": {"mse": m}} for a, m in mses.items()]
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"results": results}))
    return path


def test_a_row_better_than_fp32_gets_one_line_explaining_why(tmp_path):
    lines = beats_fp32_notes(_report(tmp_path, {"fp32": 0.01, "fp16": 0.0101, "int8": 0.00982}), tmp_path / "b")
    assert len(lines) == 1
    assert "INT8 (cpu)" in lines[0] and "x0.982" in lines[0]
    assert "made by the FP32 model" in lines[0] and "matting-deploy validate --bundle" in lines[0]


def test_no_line_when_fp32_is_best(tmp_path):
    assert beats_fp32_notes(_report(tmp_path, {"fp32": 0.01, "int8": 0.011}), tmp_path / "b") == []
