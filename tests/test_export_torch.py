"""`export` from PyTorch: MODNet and both RVM variants, parity over frames, weights, bad input."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.fixtures import NEEDS_TORCH

torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
from click.testing import CliRunner  # noqa: E402

from matting_deploy.bundle import Bundle  # noqa: E402
from matting_deploy.cli import main  # noqa: E402
from matting_deploy.runtimes.onnxruntime_runner import OrtRunner  # noqa: E402


def export(*args):
    return CliRunner().invoke(main, ["export", *args], catch_exceptions=False)


def test_modnet_export_fp16_and_parity(tmp_path):
    out = tmp_path / "modnet"
    res = export("--model", "modnet", "--height", "64", "--width", "96", "--fp16", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "WARNING" in res.output and "pipeline testing only" in res.output
    bundle = Bundle.open(out)
    assert bundle.manifest["parity"]["fp32"]["max_abs"] <= 1e-4
    assert bundle.manifest["parity"]["fp16"]["mean_abs"] < 0.02  # random weights: chaotic, so max is loose
    assert set(bundle.artifacts) == {"fp32", "fp16"}
    model = onnx.load(out / "model.onnx")
    assert [i.name for i in model.graph.input] == ["src"] and [o.name for o in model.graph.output] == ["pha"]
    # the fusion branch and the two high-resolution Convs read image + feature Concats: split
    assert sum(n.op_type == "Conv" and n.name.endswith("_pixels") for n in model.graph.node) == 3
    pha = OrtRunner.from_bundle(bundle, "fp16").run(np.full((1, 3, 64, 96), 0.5, np.float32))["pha"]
    assert pha.shape == (1, 1, 64, 96) and 0 <= pha.min() and pha.max() <= 1


@pytest.mark.parametrize("variant", ["mobilenetv3", "resnet50"])
def test_rvm_export_parity_over_frames(tmp_path, variant):
    out = tmp_path / variant
    res = export("--model", "rvm", "--variant", variant, "--height", "64", "--width", "48", "--out", str(out))
    assert res.exit_code == 0, res.output
    bundle = Bundle.open(out)
    parity = bundle.manifest["parity"]["fp32"]
    assert parity["frames"] >= 5 and parity["against"] == "pytorch"
    assert parity["max_abs_all"] <= 1e-4
    model = onnx.load(out / "model.onnx")
    assert {o.name for o in model.graph.output} == {"fgr", "pha", "r1o", "r2o", "r3o", "r4o"}
    # each decoder block's Conv reads Concat(features, skip, pooled src): split (parity above)
    assert sum(n.op_type == "Conv" and n.name.endswith("_pixels") for n in model.graph.node) == 4
    assert "4 Conv(s) reading image + feature Concats split" in res.output
    assert bundle.states[3].shape == ((1, 64, 4, 3) if variant == "mobilenetv3" else (1, 128, 4, 3))


def test_rvm_downsample_ratio_is_baked(tmp_path):
    out = tmp_path / "rvm"
    res = export("--model", "rvm", "--height", "96", "--width", "64", "--downsample-ratio", "0.5",
                 "--out", str(out))
    assert res.exit_code == 0, res.output
    bundle = Bundle.open(out)
    assert bundle.states[0].shape == (1, 16, 24, 16)
    assert "downsample_ratio" not in {i.name for i in onnx.load(out / "model.onnx").graph.input}


def test_official_checkpoint_layout_loads(tmp_path):
    from matting_deploy.models.modnet import MODNet

    torch.manual_seed(3)
    net = MODNet()
    ckpt = tmp_path / "modnet.ckpt"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, ckpt)
    out = tmp_path / "b"
    res = export("--model", "modnet", "--weights", str(ckpt), "--height", "64", "--width", "64", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "WARNING" not in res.output
    assert Bundle.open(out).manifest["weights"] == str(ckpt)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "modnet", "--weights", "missing.ckpt"], "no such file"),
        (["--model", "modnet", "--height", "100"], "divisible by 32"),
        (["--model", "rvm", "--downsample-ratio", "0"], "--downsample-ratio"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "b"
    res = export(*args, "--out", str(out))
    assert res.exit_code == 2
    assert message in res.output
    assert res.output.strip().splitlines()[-1].startswith("error:")
    assert not out.exists()


def test_wrong_checkpoint_names_keys_and_writes_nothing(tmp_path):
    ckpt = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, ckpt)
    out = tmp_path / "b"
    res = export("--model", "modnet", "--weights", str(ckpt), "--out", str(out))
    assert res.exit_code == 2
    last = res.output.strip().splitlines()[-1]
    assert str(ckpt) in last and "missing" in last and "encoder.weight" in last
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]


def test_rvm_dynamic_keeps_ratio_input_and_runs_other_sizes(tmp_path):
    out = tmp_path / "dyn"
    res = export("--model", "rvm", "--dynamic", "--height", "64", "--width", "48", "--downsample-ratio", "0.5",
                 "--out", str(out))
    assert res.exit_code == 0, res.output
    bundle = Bundle.open(out)
    assert bundle.manifest["parity"]["fp32"]["max_abs_all"] <= 1e-4
    assert "downsample_ratio" in {i.name for i in onnx.load(out / "model.onnx").graph.input}
    runner = OrtRunner.from_bundle(bundle)
    for _ in range(2):
        outs = runner.run(np.random.default_rng(0).random((1, 3, 96, 80), dtype=np.float32))
    assert outs["pha"].shape == (1, 1, 96, 80) and outs["r1o"].shape == (1, 16, 24, 20)


@pytest.mark.parametrize("limit", ["FP32_MAX_ABS", "FP32_MEAN_ABS"])
def test_fp32_parity_gate_fails_cleanly(tmp_path, monkeypatch, limit):
    """Either FP32 limit (max, mean over every output) fails the export: one line, nothing written."""
    import matting_deploy.export.pipeline as pipeline

    monkeypatch.setattr(pipeline, limit, 0.0)
    out = tmp_path / "modnet"
    res = export("--model", "modnet", "--height", "64", "--width", "64", "--out", str(out))
    assert res.exit_code == 2
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: FP32 parity failed") and "limit 0)" in last
    assert not out.exists()


def test_modnet_export_calibrates_for_both_targets(tmp_path):
    """MODNet's float backbone Convs read tensors its INT8 high-resolution branch quantizes: the
    TensorRT model must give them the float tensor (the qdq-fusable rule), and the CPU artifact
    follows from the same statistics."""
    from tests.fixtures import make_images

    out, data = tmp_path / "modnet", make_images(tmp_path / "data", n=4)
    assert export("--model", "modnet", "--height", "64", "--width", "64", "--out", str(out)).exit_code == 0
    calibrate = ["calibrate", "--int8", "--bundle", str(out), "--data", str(data), "--num", "4"]
    res = CliRunner().invoke(main, calibrate, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    model = onnx.load(out / "model.int8.onnx")
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    int8 = [n for n in convs if producer.get(n.input[1]) == "DequantizeLinear"]
    assert int8 and len(int8) < len(convs)
    assert all((producer.get(n.input[0]) == "DequantizeLinear") == (n in int8) for n in convs)
    res = CliRunner().invoke(main, [*calibrate, "--target", "cpu"], catch_exceptions=False)
    assert res.exit_code == 0 and "reusing cached ranges" in res.output, res.output
