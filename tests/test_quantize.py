"""INT8 calibration: Q/DQ model, TensorRT cache, cache reuse, --max-drift, RVM state warm-up.

Tiny ONNX graphs and images are generated here (no ../shared, no network).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from matting_deploy.bundle import Bundle, trt_cache
from matting_deploy.calib.feeder import CalibrationFeeder
from matting_deploy.cli import main
from matting_deploy.data.imaging import load_image
from matting_deploy.data.preprocess import preprocess_for
from matting_deploy.data.sources import find_source
from matting_deploy.errors import MattingDeployError
from matting_deploy.fileio import sha256_file, write_json
from matting_deploy.quantize import ranges
from matting_deploy.runtimes.onnxruntime_runner import OrtRunner

H, W = 64, 96


def _conv(name, x, w, b=None, stride=1):
    inits = [numpy_helper.from_array(w.astype(np.float32), f"{name}_w")]
    ins = [x, f"{name}_w"]
    if b is not None:
        inits.append(numpy_helper.from_array(b.astype(np.float32), f"{name}_b"))
        ins.append(f"{name}_b")
    pad = w.shape[-1] // 2
    node = helper.make_node("Conv", ins, [name], name=name, pads=[pad] * 4, strides=[stride] * 2)
    return node, inits


def conv_model(path, outlier: bool = False, seed: int = 0) -> None:
    """A small encoder (four stride-2 Convs, one more at 1/16), upsampled, 1x1 Conv, Sigmoid.

    With ``outlier`` Conv c4 has one constant channel near 1000 that the next Conv (c5) ignores:
    quantizing c5's input with one scale wipes out the small channels (a case built to need a
    float fallback).
    """
    rng = np.random.default_rng(seed)
    b4 = np.zeros(8)
    w5 = rng.normal(0, 0.3, (8, 8, 3, 3))
    w4 = rng.normal(0, 0.3, (8, 8, 3, 3))
    if outlier:
        w4[0], b4[0], w5[:, 0] = 0.0, 1000.0, 0.0
    layers = [("c1", "src", rng.normal(0, 0.5, (8, 3, 3, 3)), np.zeros(8), 2),
              ("c2", "r1", rng.normal(0, 0.3, (8, 8, 3, 3)), np.zeros(8), 2),
              ("c3", "r2", rng.normal(0, 0.3, (8, 8, 3, 3)), np.zeros(8), 2),
              ("c4", "r3", w4, b4, 2),
              ("c5", "r4", w5, np.zeros(8), 1)]
    nodes, inits = [], []
    for i, (name, x, w, b, stride) in enumerate(layers, 1):
        node, ini = _conv(name, x, w, b, stride)
        nodes += [node, helper.make_node("Relu", [name], [f"r{i}"], name=f"relu{i}")]
        inits += ini
    inits.append(numpy_helper.from_array(np.array([1, 1, 16, 16], np.float32), "up16"))
    head, ini = _conv("c6", "up", rng.normal(0, 0.3, (1, 8, 1, 1)), np.zeros(1))
    nodes += [helper.make_node("Resize", ["r5", "", "up16"], ["up"], name="resize", mode="linear"),
              head, helper.make_node("Sigmoid", ["c6"], ["pha"], name="sig")]
    inits += ini
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("src", TensorProto.FLOAT, [1, 3, H, W])],
        [helper.make_tensor_value_info("pha", TensorProto.FLOAT, [1, 1, H, W])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def rvm_model(path, seed: int = 0) -> None:
    """Static RVM-shaped graph: r1o = 0.5 * r1i + tanh(conv(pool(src))), pha from src and r1o."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("AveragePool", ["src"], ["p"], kernel_shape=[2, 2], strides=[2, 2])]
    n, inits = _conv("cp", "p", rng.normal(0, 0.5, (4, 3, 3, 3)))
    nodes.append(n)
    inits.append(numpy_helper.from_array(np.array([0.5], np.float32), "half"))
    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "up"))
    nodes += [
        helper.make_node("Tanh", ["cp"], ["t"]),
        helper.make_node("Mul", ["r1i", "half"], ["h"]),
        helper.make_node("Add", ["t", "h"], ["r1o"]),
        helper.make_node("Resize", ["r1o", "", "up"], ["ru"], mode="nearest"),
    ]
    for node, ini in (_conv("ca", "src", rng.normal(0, 0.5, (1, 3, 3, 3))),  # not encoder
                      _conv("cr", "ru", rng.normal(0, 0.5, (1, 4, 1, 1)))):
        nodes.append(node)
        inits += ini
    nodes += [helper.make_node("Add", ["ca", "cr"], ["s"]), helper.make_node("Sigmoid", ["s"], ["pha"]),
              helper.make_node("Identity", ["src"], ["fgr"])]
    graph = helper.make_graph(
        nodes, "rvm_tiny",
        [helper.make_tensor_value_info("src", TensorProto.FLOAT, [1, 3, H, W]),
         helper.make_tensor_value_info("r1i", TensorProto.FLOAT, [1, 4, H // 2, W // 2])],
        [helper.make_tensor_value_info("fgr", TensorProto.FLOAT, [1, 3, H, W]),
         helper.make_tensor_value_info("pha", TensorProto.FLOAT, [1, 1, H, W]),
         helper.make_tensor_value_info("r1o", TensorProto.FLOAT, [1, 4, H // 2, W // 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def make_bundle(root, kind: str = "conv", **kw):
    root.mkdir(parents=True)
    (rvm_model if kind == "rvm" else conv_model)(root / "model.onnx", **kw)
    states = [{"input": "r1i", "output": "r1o", "shape": [1, 4, H // 2, W // 2]}] if kind == "rvm" else []
    write_json(root / "manifest.json", {
        "format": 1, "model": "rvm" if kind == "rvm" else "modnet",
        "input": {"height": H, "width": W, "dynamic": False, "downsample_ratio": 1.0},
        "states": states,
        "files": {"model.onnx": {"sha256": sha256_file(root / "model.onnx"), "precision": "fp32"}},
        "artifacts": {"fp32": "model.onnx"},
    })
    return root


def make_images(folder, n: int = 10, seed: int = 0):
    """Bright blobs on a darker, noisy background; one corrupt file."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:60, 0:80]
    for i in range(n):
        img = rng.uniform(0, 0.4, (60, 80, 3))
        cy, cx = rng.uniform(15, 45), rng.uniform(20, 60)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 200] += 0.5
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / f"im{i:02d}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder


def run_cli(*args):
    return CliRunner().invoke(main, ["calibrate", *map(str, args)])


@pytest.fixture()
def conv_setup(tmp_path):
    return make_bundle(tmp_path / "bundle"), make_images(tmp_path / "data")


def test_calibrate_writes_trt_compatible_qdq_model_close_to_fp32(conv_setup):
    bundle_dir, data = conv_setup
    res = run_cli("--int8", "--bundle", bundle_dir, "--data", data, "--num", 20)
    assert res.exit_code == 0, res.output
    assert "broken.png" in res.output  # unreadable file reported by name and skipped
    bundle = Bundle.open(bundle_dir)
    for name in ("model.int8.onnx", "calib.cache", "calib.json"):
        assert bundle.manifest["files"][name]["sha256"] == sha256_file(bundle_dir / name)
    assert bundle.artifacts["int8"] == "model.int8.onnx"
    q = onnx.load(str(bundle_dir / "model.int8.onnx"))
    assert max(o.version for o in q.opset_import if o.domain in ("", "ai.onnx")) >= 13
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    qnodes = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    dqnodes = [n for n in q.graph.node if n.op_type == "DequantizeLinear"]
    assert qnodes and dqnodes
    for n in qnodes + dqnodes:  # symmetric everywhere: zero point 0; INT8 (INT32 for biases)
        zp = inits[n.input[2]]
        assert not zp.any() and zp.dtype in (np.int8, np.int32)
        if n.op_type == "QuantizeLinear":
            assert zp.dtype == np.int8
    per_channel = [n for n in dqnodes if any(a.name == "axis" for a in n.attribute)
                   and inits[n.input[1]].size > 1]
    assert per_channel  # per-channel weights
    src, _ = preprocess_for("modnet")(load_image(data / "im03.png"), H, W)
    fp = OrtRunner(bundle_dir / "model.onnx").run(src)["pha"]
    i8 = OrtRunner(bundle_dir / "model.int8.onnx").run(src)["pha"]
    assert np.abs(fp - i8).mean() < 0.02
    info = json.loads((bundle_dir / "calib.json").read_text())
    assert info["method"] == "entropy" and info["image_count"] == 10
    assert len(info["data"]["fingerprint"]) == 64
    header, scales = trt_cache.parse_cache((bundle_dir / "calib.cache").read_text())
    assert header.startswith("TRT-") and header.endswith("EntropyCalibration2")
    names = {i.name for i in onnx.load(str(bundle_dir / "model.onnx")).graph.input}
    names |= {o for n in onnx.load(str(bundle_dir / "model.onnx")).graph.node for o in n.output}
    assert scales and set(scales) <= names  # the FP32 graph's tensor names (what TRT parses)
    for name, scale in scales.items():
        t = info["tensors"][name]
        assert scale == pytest.approx(max(abs(t["min"]), abs(t["max"])) / 127, rel=1e-6)


def test_second_run_reuses_cached_ranges_and_refuses_overwrite(conv_setup):
    bundle_dir, data = conv_setup
    assert run_cli("--int8", "--bundle", bundle_dir, "--data", data, "--num", 6).exit_code == 0
    again = run_cli("--int8", "--bundle", bundle_dir, "--data", data, "--num", 6)
    assert again.exit_code == 2 and "already exists" in again.output
    forced = run_cli("--int8", "--bundle", bundle_dir, "--data", data, "--num", 6, "--force")
    assert forced.exit_code == 0, forced.output
    assert "reusing cached ranges" in forced.output
    assert json.loads((bundle_dir / "calib.json").read_text())["cache_hit"] is True
    other = run_cli("--int8", "--bundle", bundle_dir, "--data", data, "--num", 6, "--seed", 3,
                    "--force")
    assert other.exit_code == 0 and "reusing" not in other.output


def test_bad_inputs_are_one_line_errors(tmp_path, conv_setup):
    bundle_dir, data = conv_setup
    (tmp_path / "empty").mkdir()
    res = run_cli("--int8", "--bundle", bundle_dir, "--data", tmp_path / "empty")
    assert res.exit_code == 2 and "no calibration images" in res.output
    res = run_cli("--bundle", bundle_dir, "--data", data)
    assert res.exit_code == 2 and "--int8" in res.output
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.jpg").write_bytes(b"nope")
    res = run_cli("--int8", "--bundle", bundle_dir, "--data", only_bad)
    assert res.exit_code == 2 and "no calibration image could be read" in res.output


def test_max_drift_keeps_the_sensitive_node_in_float(tmp_path):
    bundle_dir = make_bundle(tmp_path / "bundle", outlier=True)
    data = make_images(tmp_path / "data", n=12)
    res = run_cli("--int8", "--bundle", bundle_dir, "--data", data, "--max-drift", 1e-4)
    assert res.exit_code == 0, res.output
    report = json.loads((bundle_dir / "calib.json").read_text())["max_drift"]
    assert report["drift_before"] > 1e-4 > report["drift_after"]
    assert report["nodes"] == ["c5"]
    assert "c5" in json.loads((bundle_dir / "calib.json").read_text())["float_nodes"]


def test_rvm_calibration_sees_real_nonzero_state(tmp_path):
    bundle_dir = make_bundle(tmp_path / "bundle", kind="rvm")
    data = make_images(tmp_path / "data", n=3)
    bundle = Bundle.open(bundle_dir)
    source = find_source(data)
    runner = OrtRunner.from_bundle(bundle)
    warm = CalibrationFeeder(runner, source, source.items[:3], "rvm", bundle.input_hw, 4)
    feeds = warm.all_feeds()
    assert len(feeds) == 2 and "broken.png" in warm.skipped[0]  # broken file skipped
    assert all(np.abs(f["r1i"]).mean() > 0.05 for f in feeds)
    cold = CalibrationFeeder(runner, source, source.items[1:2], "rvm", bundle.input_hw, 1)
    assert not cold.all_feeds()[0]["r1i"].any()
    res = run_cli("--int8", "--bundle", bundle_dir, "--data", data, "--warmup-frames", 3)
    assert res.exit_code == 0, res.output
    info = json.loads((bundle_dir / "calib.json").read_text())
    assert info["warmup_frames"] == 3
    assert "ru" in info["tensors"]  # the state-fed Conv is quantized with calibrated range


def test_trt_cache_round_trip():
    scales = {"src": 1 / 127, "conv/out:0": 0.0421, "x": 3.5e-5}
    text = trt_cache.format_cache(scales)
    assert text.splitlines()[0] == "TRT-8601-EntropyCalibration2"
    assert "src: 3c010204" in text
    header, back = trt_cache.parse_cache(text)
    assert header == "TRT-8601-EntropyCalibration2"
    assert back == {k: float(np.float32(v)) for k, v in scales.items()}
    with pytest.raises(MattingDeployError):
        trt_cache.parse_cache("src: 3c010204\n")


def test_fast_kl_threshold_matches_onnxruntime():
    from onnxruntime.quantization.calibrate import HistogramCollector

    ort = HistogramCollector("entropy", False, 512, 128, None, "same")
    rng = np.random.default_rng(0)
    for bins, nq, relu in ((256, 128, False), (515, 128, True), (700, 255, False)):
        x = np.concatenate([rng.standard_normal(20000), rng.exponential(4, 30)]).astype(np.float32)
        if relu:
            x = np.maximum(x, 0)
        t = np.float32(np.abs(x).max())
        hist, edges = np.histogram(x, bins, range=(-t, t))
        h = (hist, edges.astype(np.float32), x.min(), x.max(), t)
        assert ranges.kl_threshold(h, nq) == ort.get_entropy_threshold(h, nq)
