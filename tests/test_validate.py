"""`matting-deploy validate` end to end on tiny generated bundles and PPM-layout folders."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from matting_deploy.bundle import Bundle
from matting_deploy.cli import main
from matting_deploy.data.imaging import load_image, load_matte
from matting_deploy.data.pairs import Pair, load_dataset
from matting_deploy.data.preprocess import alpha_to_source, to_model_input
from matting_deploy.errors import MattingDeployError
from matting_deploy.runtimes.onnxruntime_runner import OrtRunner
from matting_deploy.validate import metrics as M
from matting_deploy.validate.gates import Gates, drift, load_reference
from matting_deploy.validate.panels import LEGEND_HEIGHT
from matting_deploy.validate.scoring import Scorer
from tests.fixtures import make_bundle, make_clip, make_ppm_data


def validate(*args):
    return CliRunner().invoke(main, ["validate", *map(str, args)], catch_exceptions=False)


@pytest.fixture()
def data(tmp_path):
    root = make_ppm_data(tmp_path / "data", n=4)
    make_clip(root / "clip", frames=5)
    return root


def _read(report):
    return json.loads((report / "report.json").read_text())


def _row(rep, artifact, backend="cpu"):
    return next(r for r in rep["results"] if r["artifact"] == artifact and r["backend"] == backend)


def test_end_to_end_modnet(tmp_path, data):
    bundle = make_bundle(tmp_path / "bundle")
    Image.new("RGB", (64, 48)).save(data / "image" / "lonely.png")  # no matte: a note
    res = validate("--bundle", bundle, "--data", data, "--backends", "cpu")
    assert res.exit_code == 0, res.output
    assert "| Model" in res.output and "| MSE" in res.output and "| Shape" in res.output
    assert "lonely.png: no matching image or matte, skipped" in res.output
    assert "total time" in res.output and "all drift gates hold" in res.output

    out = bundle / "report"
    rep = _read(out)
    assert rep["ok"] and rep["failures"] == []
    assert rep["protocol"]["n_images"] == 4 and rep["protocol"]["n_clip_frames"] == 5
    assert [(r["artifact"], r["backend"]) for r in rep["results"]] == [
        ("fp32", "cpu"),
        ("fp16", "cpu"),
        ("int8", "cpu"),
    ]
    fp32, fp16, int8 = (_row(rep, a) for a in ("fp32", "fp16", "int8"))
    assert fp32["reference"] and not fp16["reference"]
    assert set(fp32["metrics"]) == set(M.METRICS) and fp32["n_images"] == 4
    assert fp32["clip"]["n_frames"] == 5 and fp32["clip"]["dtssd"] > 0
    assert fp16["metrics"] == fp32["metrics"]  # the same graph
    mse = next(e for e in int8["drift"] if e["metric"] == "mse")
    assert set(mse) >= {"metric", "fp32", "value", "ratio", "limit", "ok"}
    assert mse["ratio"] == pytest.approx(mse["value"] / mse["fp32"]) and mse["limit"] == 1.10
    assert {e["metric"] for e in int8["drift"]} >= {"mse", "miou", "clip_mse", "clip_dtssd"}

    with open(out / "per_image.csv") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 3 * (4 + 5)
    assert (out / "report.md").read_text().count("| fp16 (cpu)") == 2  # still + clip tables
    for artifact in ("fp16", "int8"):
        assert len(list((out / "worst" / f"{artifact}-cpu").glob("*.png"))) == 3
    assert not (out / "worst" / "fp32-cpu").exists()
    panel = Image.open(next((out / "worst" / "int8-cpu").glob("*.png")))
    assert panel.height == 320 + LEGEND_HEIGHT and panel.width > 6 * 320  # six tiles of 64x48 scaled up

    # The protocol by hand for one image: preprocess -> run -> back to the matte size -> metrics.
    pair = Pair("002", data / "image" / "002.png", data / "matte" / "002.png")
    src, geo = to_model_input(load_image(pair.image), *Bundle.open(bundle).input_hw)
    pha = OrtRunner(bundle / "model.onnx").run(src)["pha"]
    want = M.all_metrics(alpha_to_source(pha, geo), load_matte(pair.matte))
    got = next(r for r in lines if r["artifact"] == "fp32" and r["name"] == "002")
    for metric in M.METRICS:
        assert float(got[metric]) == pytest.approx(want[metric], rel=1e-6, abs=1e-9)


def test_damaged_artifact_fails_gate(tmp_path, data):
    bundle = make_bundle(tmp_path / "b", artifacts={"fp32": {}, "fp16": {}, "int8": {"scale": 0.7}})
    out = tmp_path / "report"
    res = validate("--bundle", bundle, "--data", data, "--report", out)
    assert res.exit_code == 1, res.output
    assert "FAILED: drift gate failed: int8 (cpu): MSE" in res.output
    assert "FAIL" in res.output.split("Still images")[1]
    rep = _read(out)  # the report is written before the exit
    assert not rep["ok"] and rep["failures"]
    assert _row(rep, "fp16")["ok"] and not _row(rep, "int8")["ok"]
    gated = {e["metric"]: e["ok"] for e in _row(rep, "int8")["drift"] if "gate" in e}
    assert gated["mse"] is False and gated["clip_mse"] is False


def test_noisy_artifact_fails_miou_gate_only_when_tight(tmp_path, data):
    bundle = make_bundle(tmp_path / "b", artifacts={"fp32": {}, "int8": {"noise": 0.2, "seed": 3}})
    loose = validate(
        "--bundle",
        bundle,
        "--data",
        data,
        "--report",
        tmp_path / "r1",
        "--max-mse-ratio",
        "1e9",
        "--max-miou-drop",
        "1",
    )
    assert loose.exit_code == 0, loose.output
    tight = validate(
        "--bundle",
        bundle,
        "--data",
        data,
        "--report",
        tmp_path / "r2",
        "--max-mse-ratio",
        "1e9",
        "--max-miou-drop",
        "0",
    )
    int8 = _row(_read(tmp_path / "r2"), "int8")
    miou = next(e for e in int8["drift"] if e["metric"] == "miou")
    assert (tight.exit_code == 1) == (miou["drop"] > 0)
    assert miou["drop"] > 0, "noise this strong should cost some mIoU"


def test_reference_from_previous_report(tmp_path, data):
    bundle = make_bundle(tmp_path / "b", artifacts={"fp32": {}, "fp16": {}, "int8": {"scale": 0.7}})
    desk = tmp_path / "desktop"
    assert (
        validate(
            "--bundle", bundle, "--data", data, "--artifacts", "fp32", "--report", desk
        ).exit_code
        == 0
    )
    ref = desk / "report.json"
    res = validate(
        "--bundle",
        bundle,
        "--data",
        data,
        "--artifacts",
        "fp16",
        "--reference",
        ref,
        "--report",
        tmp_path / "dev",
    )
    assert res.exit_code == 0, res.output
    rep = _read(tmp_path / "dev")
    assert [r["artifact"] for r in rep["results"]] == ["fp16"]  # FP32 not re-run
    assert rep["reference"]["source"] == str(ref)
    assert rep["reference"]["metrics"] == _row(_read(desk), "fp32")["metrics"]
    bad = validate(
        "--bundle",
        bundle,
        "--data",
        data,
        "--artifacts",
        "int8",
        "--reference",
        ref,
        "--report",
        tmp_path / "dev2",
    )
    assert bad.exit_code == 1 and (tmp_path / "dev2" / "report.json").is_file()
    other = validate(
        "--bundle",
        bundle,
        "--data",
        data,
        "--artifacts",
        "fp16",
        "--reference",
        ref,
        "--resize",
        "letterbox",
        "--report",
        tmp_path / "dev3",
    )
    assert other.exit_code == 2 and "resize=stretch (this run: letterbox)" in other.output
    assert "rerun with the reference's --resize" in other.output
    assert not (tmp_path / "dev3").exists()
    fewer = validate(
        "--bundle",
        bundle,
        "--data",
        data,
        "--artifacts",
        "fp16",
        "--reference",
        ref,
        "--limit",
        "2",
        "--report",
        tmp_path / "dev4",
    )
    assert fewer.exit_code == 2 and "limit=None (this run: 2)" in fewer.output
    assert "n_images=4 (this run: 2)" in fewer.output and "digest" in fewer.output
    assert "--limit" in fewer.output and len(fewer.output.strip().splitlines()) == 1


def test_rvm_warmup_frames_and_clip_states(tmp_path, data):
    bundle = make_bundle(tmp_path / "rvm", model="rvm", artifacts={"fp32": {}})
    runs = {}
    for k in (1, 4):
        res = validate(
            "--bundle", bundle, "--data", data, "--warmup-frames", k, "--report", tmp_path / f"r{k}"
        )
        assert res.exit_code == 0, res.output
        runs[k] = _read(tmp_path / f"r{k}")
        assert runs[k]["protocol"]["frames_per_image"] == k
    # From zero state the tiny recurrent graph needs frames to settle: more frames, better score.
    assert runs[4]["results"][0]["metrics"]["mse"] < runs[1]["results"][0]["metrics"]["mse"]

    # Still images: reset before each image, K runs, the last scored -- order does not matter.
    b = Bundle.open(bundle)
    scorer = Scorer(b, frames=4)
    runner = OrtRunner.from_bundle(b)
    dataset = load_dataset(data)
    first = [scorer.score_image(runner, p, b.root).metrics for p in dataset.images]
    again = [scorer.score_image(runner, p, b.root).metrics for p in reversed(dataset.images)]
    assert first == again[::-1]
    runner.reset()
    src, geo = scorer.model_input(dataset.images[0].image)
    for _ in range(4):
        pha = runner.run(src)["pha"]
    assert np.allclose(
        alpha_to_source(pha, geo), alpha_to_source(*scorer.alpha(runner, dataset.images[0], b.root))
    )

    # Clip: one pass with the state carried, dtSSD over the frames.
    runner.reset()
    alphas, gts = [], []
    for p in dataset.clips[0].frames:
        s, g = scorer.model_input(p.image)
        alphas.append(alpha_to_source(runner.run(s)["pha"], g))
        gts.append(load_matte(p.matte))
    clip = runs[4]["results"][0]["clip"]
    assert clip["dtssd"] == pytest.approx(M.dtssd(alphas, gts))
    assert clip["mse"] == pytest.approx(
        np.mean([M.mse(a, g) for a, g in zip(alphas, gts, strict=True)])
    )


def test_letterbox_and_limit(tmp_path, data):
    bundle = make_bundle(tmp_path / "b", artifacts={"fp32": {}})
    res = validate(
        "--bundle",
        bundle,
        "--data",
        data,
        "--resize",
        "letterbox",
        "--limit",
        2,
        "--report",
        tmp_path / "lb",
    )
    assert res.exit_code == 0, res.output
    rep = _read(tmp_path / "lb")
    assert rep["protocol"]["resize"] == "letterbox"
    assert rep["protocol"]["n_images"] == 2 and rep["protocol"]["n_clip_frames"] == 2
    assert (
        validate(
            "--bundle", bundle, "--data", data, "--limit", 2, "--report", tmp_path / "st"
        ).exit_code
        == 0
    )
    assert _read(tmp_path / "st")["results"][0]["metrics"] != rep["results"][0]["metrics"]


def test_report_dir_refused_without_force(tmp_path, data):
    bundle = make_bundle(tmp_path / "b", artifacts={"fp32": {}})
    out = tmp_path / "report"
    out.mkdir()
    (out / "old.txt").write_text("x")
    res = validate("--bundle", bundle, "--data", data, "--report", out)
    assert res.exit_code == 2 and "already exists" in res.output
    assert (out / "old.txt").exists() and not (out / "report.json").exists()
    assert validate("--bundle", bundle, "--data", data, "--report", out, "--force").exit_code == 0
    assert (out / "report.json").is_file() and not (out / "old.txt").exists()
    assert not list(tmp_path.glob(".staging-*")) and not list(tmp_path.glob(".report.old-*"))


def test_missing_backends_are_skipped_with_a_note(tmp_path, data):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    bundle = make_bundle(tmp_path / "b", artifacts={"fp32": {}, "fp16": {}})
    (bundle / "model.fp16.engine").write_bytes(b"not an engine")
    res = validate("--bundle", bundle, "--data", data, "--report", tmp_path / "r")
    assert res.exit_code == 0, res.output
    notes = [line for line in res.output.splitlines() if line.startswith("note: tensorrt: skipped")]
    assert len(notes) == 1 and "not importable" in notes[0]
    from matting_deploy.runtimes.onnxruntime_runner import available_backends

    if "cuda" not in available_backends():
        named = validate(
            "--bundle",
            bundle,
            "--data",
            data,
            "--backends",
            "cpu,cuda",
            "--report",
            tmp_path / "r2",
        )
        assert named.exit_code == 0 and "note: cuda: skipped" in named.output
        assert {r["backend"] for r in _read(tmp_path / "r2")["results"]} == {"cpu"}


def _no_pairs(data):
    for p in (data / "matte").iterdir():
        p.rename(p.with_name("x" + p.name))
    return "no image/matte pairs"


def _size_mismatch(data):
    Image.new("L", (40, 40)).save(data / "matte" / "001.png")
    return "matte/001.png: matte is 40x40 but image 001.png is 64x48"


def _unreadable_matte(data):
    (data / "matte" / "002.png").write_bytes(b"this is not a png")
    return "matte/002.png: cannot read image"


def _no_data(data):
    import shutil

    shutil.rmtree(data)
    return "data folder does not exist"


@pytest.mark.parametrize("breaker", [_no_pairs, _size_mismatch, _unreadable_matte, _no_data])
def test_bad_data_exit_2_without_report(tmp_path, data, breaker):
    bundle = make_bundle(tmp_path / "b", artifacts={"fp32": {}})
    want = breaker(data)
    res = validate("--bundle", bundle, "--data", data)
    assert res.exit_code == 2, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and want in last
    assert "Traceback" not in res.output
    assert not (bundle / "report").exists() and not list(bundle.glob(".staging-*"))


def test_bad_options_exit_2(tmp_path, data):
    bundle = make_bundle(tmp_path / "b", artifacts={"fp32": {}})
    res = validate("--bundle", bundle, "--data", data, "--artifacts", "int4")
    assert res.exit_code == 2 and "bundle has no 'int4' artifact" in res.output
    res = validate("--bundle", bundle, "--data", data, "--backends", "gpu")
    assert res.exit_code == 2 and "unknown backend 'gpu'" in res.output
    res = validate("--bundle", tmp_path / "nothing", "--data", data)
    assert res.exit_code == 2 and "bundle folder does not exist" in res.output
    (bundle / "model.onnx").write_bytes(b"changed")
    res = validate("--bundle", bundle, "--data", data)
    assert res.exit_code == 2 and "sha256 differs" in res.output
    assert not (bundle / "report").exists()


def test_gate_arithmetic():
    gates = Gates(max_mse_ratio=1.1, max_miou_drop=0.003)
    ref = {"mse": 0.01, "miou": 0.9}
    at_limit = {e["metric"]: e for e in drift({"mse": 0.011, "miou": 0.897}, ref, gates)}
    assert at_limit["mse"]["ok"] and at_limit["miou"]["ok"]
    over = {e["metric"]: e for e in drift({"mse": 0.0111, "miou": 0.8969}, ref, gates)}
    assert not over["mse"]["ok"] and not over["miou"]["ok"]
    assert over["miou"]["drop"] == pytest.approx(0.0031)
    zero = drift({"mse": 0.001}, {"mse": 0.0}, gates)[0]
    assert zero["ratio"] is None and not zero["ok"]


def test_reference_without_fp32_row(tmp_path):
    protocol = {
        "model": "modnet",
        "input": [32, 48],
        "resize": "stretch",
        "frames_per_image": 1,
        "digest": "d",
    }
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"protocol": protocol, "results": [{"artifact": "int8"}]}))
    with pytest.raises(MattingDeployError, match="no fp32 row"):
        load_reference(path, protocol)
    path.write_text("{")
    with pytest.raises(MattingDeployError, match="not a validate report.json"):
        load_reference(path, protocol)


def test_command_module_imports_no_heavy_libraries():
    code = (
        "import sys, matting_deploy.commands.validate; "
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'torch', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

