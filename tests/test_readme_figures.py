"""bench/readme_figures.py on a tiny fixture: the block comes from what the commands wrote."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from matting_deploy.optional import unavailable
from tests.fixtures import make_clip, make_ppm_data, official_rvm_like

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "readme_figures.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("readme_figures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regenerates_the_marked_block_from_the_commands(script, tmp_path, capsys):
    onnx = tmp_path / "rvm.onnx"
    official_rvm_like(onnx)
    data = make_ppm_data(tmp_path / "data", n=4)
    make_clip(data / "clip", frames=3)
    stems = sorted(p.stem for p in (data / "image").iterdir())
    (data / "manifest.csv").write_text("name,person_photo\n" + "".join(
        f"{s},{'ann' if i % 2 else 'bob'}\n" for i, s in enumerate(stems)))  # two persons: leave-people-out
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{script.START}\nold figures\n{script.END}\n\nafter\n")
    work = tmp_path / "work"
    code = script.main(["--onnx", str(onnx), "--data", str(data), "--work", str(work), "--height", "64",
                        "--width", "48", "--iters", "2", "--warmup", "0", "--holdout", "--folds", "2",
                        "--hd", "96", "64", "--write", str(readme)])
    assert code == 0
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n\n" + script.START) and text.endswith(script.END + "\n\nafter\n")
    assert "old figures" not in text
    report = json.loads((work / "report" / "report.json").read_text())
    fp32 = next(r for r in report["results"] if r["artifact"] == "fp32")
    assert f"| FP32 | {fp32['metrics']['mse']:.6f} |" in text  # the table is what validate measured
    int8 = next(r for r in report["results"] if r["artifact"] == "int8")
    ratio = next(d for d in int8["drift"] if d["metric"] == "mse")["ratio"]
    assert f"| {ratio:.3f}x |" in text
    assert "| artifact (clips) |" in text and "held out for scoring" in text
    lpo = {r["artifact"]: r for r in json.loads((work / "leave-people-out.json").read_text())["rows"]}
    first = text.index("INT8 on people it was not calibrated on")
    calibration_set = text.index("Calibration-set figures")
    assert first < calibration_set and f"| {ratio:.3f}x |" in text[calibration_set:]
    assert f"| {lpo['int8 (cpu)']['ratio']:.3f}x | {lpo['int8 (cpu)']['drop']:.4f} |" in text[first:]
    assert "python bench/int8_fidelity.py" in text and "--folds 2" in text
    bench = json.loads((work / "bench.json").read_text())
    assert f"| FP32 | {bench['rows'][0]['p50_ms']:.1f} |" in text
    for command in ("matting-deploy export --model rvm --from-onnx", "matting-deploy calibrate --int8",
                    "matting-deploy validate", "matting-deploy bench"):
        assert command in text
    assert script.START in capsys.readouterr().out
    if unavailable("openvino"):
        assert "OpenVINO rows: not measured" in text
        return
    row = lpo["int8 (openvino)"]  # the same INT8 file on OpenVINO, on the same folds
    hint = script.openvino_hint("int8")
    assert f"on OpenVINO (CPU, {hint} hint) | {row['ratio']:.3f}x | {row['drop']:.4f} |" in text[first:]
    ov = json.loads((work / "report-openvino" / "report.json").read_text())
    bf16 = next(r for r in ov["results"] if r["artifact"] == "bf16" and r["backend"] == "openvino")
    mse = next(d for d in bf16["drift"] if d["metric"] == "mse")["ratio"]
    assert f"| bf16 | {mse:.3f}x |" in text  # OpenVINO fidelity as validate measured it
    assert "| rvm 64x48 |" in text and "| rvm1080 96x64 |" in text and "python bench/bench_openvino.py" in text
    assert ("| modnet 64x64 |" in text) != unavailable("torch")


def test_refuses_a_readme_without_markers(script, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="needs one"):
        script.rewrite(readme, "x")
    assert readme.read_text() == "no markers\n"


def test_the_block_names_the_machine_s_gpu_or_says_none(script, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi on the path
    assert script.gpu_text() == "no GPU"
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200'\n")
    smi.chmod(0o755)
    assert script.gpu_text() == "NVIDIA H200"
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed: no driver' >&2\nexit 9\n")
    assert script.gpu_text() == "no GPU"
