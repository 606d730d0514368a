"""Calibration levers (quantize/adjust.py): bias correction lowers a Conv's mean output error,
weight rounding writes FP32 weights that TensorRT-style max-abs per-channel quantization turns back
into exactly our integers, and the corrected artifacts pass TensorRT's rules for every target."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from matting_deploy.bundle import IMPLICIT_FILE, TRT_CACHE_FILE, Bundle, implicit_onnx, trt_cache
from matting_deploy.check.gate import check_calibration
from matting_deploy.check.support import target_for_version
from matting_deploy.cli import main
from matting_deploy.quantize.bias_correction import corrected_bias, dequantized_weights, output_shift
from matting_deploy.quantize.conv_stats import ConvGeometry, ConvStats, quantize_input
from matting_deploy.quantize.rounding import requantize, round_weights, rounding_error, snap
from tests.fixtures import make_calib_bundle as make_bundle
from tests.fixtures import make_images

GEOMETRIES = [  # (in ch, out ch, kernel, stride, pads, group)
    (6, 8, 3, 1, 1, 1), (6, 6, 3, 2, 1, 6), (4, 6, 1, 1, 0, 1), (6, 4, 3, 2, 0, 2)]


def _conv_session(cin, cout, k, stride, pad, group):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, None)
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="c", kernel_shape=[k, k], strides=[stride] * 2,
                            pads=[pad] * 4, group=group)
    model = helper.make_model(helper.make_graph([node], "g", [x, w, b], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    return node, ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("cin,cout,k,stride,pad,group", GEOMETRIES)
def test_bias_correction_lowers_the_mean_output_error(cin, cout, k, stride, pad, group):
    rng = np.random.default_rng(cin + k + group)
    node, sess = _conv_session(cin, cout, k, stride, pad, group)
    w = rng.normal(size=(cout, cin // group, k, k)).astype(np.float32)
    b = rng.normal(size=cout).astype(np.float32)
    xs = [(rng.gamma(1.5, 0.6, size=(1, cin, 13, 17)) - 0.3).astype(np.float32) for _ in range(4)]
    scale = float(max(np.abs(x).max() for x in xs)) / 127 * 8  # coarse input grid: a visible bias
    stats = ConvStats(ConvGeometry.of(node, w.shape), scale)
    for x in xs:
        stats.add(x, 0, rng)
    w_q = dequantized_weights(w)

    def mean_error(bias):  # what the INT8 Conv writes minus FP32, per channel, over the batch
        return np.mean([(sess.run(None, {"x": quantize_input(x, scale), "w": w_q, "b": bias})[0]
                         - sess.run(None, {"x": x, "w": w, "b": b})[0]).mean(axis=(0, 2, 3)) for x in xs], axis=0)

    before = mean_error(b)
    assert np.allclose(output_shift(stats, w, w_q), before, atol=1e-4)  # exact, padding included
    after = mean_error(corrected_bias(stats, w, w_q, b))
    assert np.abs(after).mean() < 0.01 * np.abs(before).mean()


def _tensorrt_weight_int8(w: np.ndarray) -> np.ndarray:
    """Independent of quantize/: TensorRT's implicit INT8 weight quantization as documented: per
    output channel, scale = max|w| / 127, round to nearest (half to even), saturate to +-127."""
    out = np.empty(w.shape, np.int64)
    for o in range(w.shape[0]):
        scale = np.float32(np.max(np.abs(w[o]))) / np.float32(127)
        out[o] = np.clip(np.round(w[o] / scale), -127, 127)
    return out


@pytest.mark.parametrize("cin,cout,k,stride,pad,group", GEOMETRIES)
def test_pre_snapped_weights_requantize_to_our_integers(cin, cout, k, stride, pad, group):
    rng = np.random.default_rng(7 + k)
    w = (rng.normal(size=(cout, cin // group, k, k)) * rng.uniform(0.01, 3, size=(cout, 1, 1, 1))).astype(np.float32)
    kk = (cin // group) * k * k
    a = rng.normal(size=(group, 200, kk))
    a += 2.0 * rng.normal(size=(group, 200, 1))  # correlated inputs: rounding to nearest is not the best
    moment = np.einsum("gpk,gpl->gkl", a, a)
    q = round_weights(w, moment, group)
    nearest = np.clip(np.rint(w / (np.abs(w).reshape(cout, -1).max(1) / 127).reshape(-1, 1, 1, 1)), -127, 127)
    assert np.abs(q - nearest).max() <= 1  # up or down, never further
    assert rounding_error(w, q, moment, group) <= rounding_error(w, nearest, moment, group)
    if kk >= 9:
        assert (q != nearest).any()
        assert rounding_error(w, q, moment, group) < 0.9 * rounding_error(w, nearest, moment, group)
    fp32 = snap(q, w)
    assert fp32.dtype == np.float32
    # the per-channel max-abs is kept (so the scale TensorRT computes is ours) ...
    np.testing.assert_allclose(np.abs(fp32).reshape(cout, -1).max(1), np.abs(w).reshape(cout, -1).max(1), rtol=1e-6)
    # ... and TensorRT's rounding, and onnxruntime's (the Q/DQ weights), give back exactly q
    assert np.array_equal(_tensorrt_weight_int8(fp32), q)
    assert np.array_equal(requantize(fp32), q)
    from onnxruntime.quantization.quant_utils import quantize_data

    for o in range(cout):
        *_, qo = quantize_data(fp32[o].ravel(), TensorProto.INT8, symmetric=True)
        assert np.array_equal(qo.astype(np.int64), q[o].ravel())


def test_levered_artifacts_pass_check_for_every_target(tmp_path):
    bundle_dir, data = make_bundle(tmp_path / "bundle", kind="rvm"), make_images(tmp_path / "data")
    res = CliRunner().invoke(main, ["calibrate", "--int8", "--bundle", str(bundle_dir), "--data", str(data),
                                    "--num", "6", "--bias-correction", "--weight-rounding"])
    assert res.exit_code == 0, res.output
    bundle = Bundle.open(bundle_dir)
    assert implicit_onnx(bundle.manifest) == IMPLICIT_FILE and bundle.has_file(IMPLICIT_FILE)
    info = json.loads((bundle_dir / "calib.json").read_text())
    assert info["tensorrt"]["onnx"] == IMPLICIT_FILE and info["levers"]["convs"] > 0
    implicit = onnx.load(str(bundle.file_path(IMPLICIT_FILE)))
    fp32 = onnx.load(str(bundle.verify("fp32")))
    assert [n.op_type for n in implicit.graph.node] == [n.op_type for n in fp32.graph.node]  # parameters only
    qdq = onnx.load(str(bundle.verify("int8")))
    inits = {i.name: numpy_helper.to_array(i) for i in implicit.graph.initializer}
    q_inits = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    convs = set(info["tensorrt"]["int8_convs"])
    checked = 0
    for node in implicit.graph.node:  # the Q/DQ artifact's INT8 weights = TensorRT's own quantization
        if node.name in convs and node.input[1] in inits and node.input[1] + "_quantized" in q_inits:
            assert np.array_equal(_tensorrt_weight_int8(inits[node.input[1]]), q_inits[node.input[1] + "_quantized"])
            checked += 1
    assert checked
    _, scales = trt_cache.parse_cache((bundle_dir / TRT_CACHE_FILE).read_text())
    for version in ("8.5.2", "8.6.1", "10.0.1"):  # the gate adds 10.1+ and 11 (strongly typed)
        cache = trt_cache.format_cache(scales, target_for_version(version).cache_code)  # headed as build does
        reports = check_calibration(implicit, qdq, cache, version, convs, warn=lambda *_: None)
        assert reports and all(r.ok for r in reports), [r for r in reports if not r.ok]
    for target in ("tensorrt-8.6", "tensorrt-10", "tensorrt-11"):
        res = CliRunner().invoke(main, ["check", "--bundle", str(bundle_dir), "--target", target])
        assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["calibrate", "--int8", "--bundle", str(bundle_dir), "--data", str(data),
                                    "--num", "6", "--no-bias-correction", "--no-weight-rounding", "--force"])
    assert res.exit_code == 0, res.output
    bundle = Bundle.open(bundle_dir)  # without levers the implicit build reads model.onnx again
    assert implicit_onnx(bundle.manifest) == "model.onnx" and not (bundle_dir / IMPLICIT_FILE).exists()


def test_flip_augment_adds_the_mirror_image_of_every_calibration_image(tmp_path):
    from matting_deploy.calib.feeder import CalibrationFeeder
    from matting_deploy.data.sources import find_source, readable_only
    from matting_deploy.runtimes.onnxruntime_runner import OrtRunner

    bundle_dir, data = make_bundle(tmp_path / "bundle", kind="rvm"), make_images(tmp_path / "data")
    bundle = Bundle.open(bundle_dir)
    source = readable_only(find_source(data))
    items = source.items[:3]

    def feeds(augment):
        runner = OrtRunner(bundle.verify("fp32"), bundle.states, bundle.downsample_ratio)
        return CalibrationFeeder(runner, source, items, bundle.model, bundle.input_hw, 2,
                                 augment=augment).all_feeds()

    plain, both = feeds("none"), feeds("flip")
    assert len(plain) == 3 and len(both) == 6
    src = next(k for k in plain[0] if plain[0][k].ndim == 4 and plain[0][k].shape[1] == 3)
    for i in range(3):
        np.testing.assert_array_equal(both[2 * i][src], plain[i][src])
        np.testing.assert_allclose(both[2 * i + 1][src], plain[i][src][..., ::-1], atol=1e-6)


def test_jitter_augment_adds_a_brightness_and_zoom_jittered_copy_drawn_from_the_image_name(tmp_path):
    from matting_deploy.calib.feeder import BRIGHTNESS, CalibrationFeeder, varied
    from matting_deploy.data.sources import find_source, readable_only
    from matting_deploy.runtimes.onnxruntime_runner import OrtRunner

    image = np.random.default_rng(0).random((40, 60, 3), dtype=np.float32) * 0.5
    a, b = varied(image, "jitter", "x.png"), varied(image, "jitter", "x.png")
    np.testing.assert_array_equal(a, b)  # stable: drawn from the name, not a global seed
    assert not np.array_equal(a, varied(image, "jitter", "y.png"))
    assert 30 <= a.shape[0] <= 40 and 45 <= a.shape[1] <= 60 and a.shape[2] == 3  # a 75-100% crop
    gain = a.mean() / image.mean()  # the crop's mean moves little; the gain dominates
    assert BRIGHTNESS[0] * 0.8 < gain < BRIGHTNESS[1] * 1.2 and 0 <= a.min() and a.max() <= 1

    bundle_dir, data = make_bundle(tmp_path / "bundle", kind="rvm"), make_images(tmp_path / "data")
    bundle = Bundle.open(bundle_dir)
    source = readable_only(find_source(data))
    runner = OrtRunner(bundle.verify("fp32"), bundle.states, bundle.downsample_ratio)
    plain = CalibrationFeeder(runner, source, source.items[:2], bundle.model, bundle.input_hw, 2).all_feeds()
    both = CalibrationFeeder(runner, source, source.items[:2], bundle.model, bundle.input_hw, 2,
                             augment="flip+jitter").all_feeds()
    assert len(both) == 6
    src = next(k for k in plain[0] if plain[0][k].ndim == 4 and plain[0][k].shape[1] == 3)
    for i in range(2):
        np.testing.assert_array_equal(both[3 * i][src], plain[i][src])
        assert both[3 * i + 2][src].shape == plain[i][src].shape  # resized back to the bundle's input
        assert not np.allclose(both[3 * i + 2][src], plain[i][src], atol=1e-3)


def test_weight_rounding_skips_the_moment_of_a_conv_too_wide_for_it():
    """MODNet's 5x5 Conv on 1280 channels would need an 8 GB moment: such Convs keep nearest rounding."""
    rng = np.random.default_rng(0)
    wide, narrow = ConvStats(ConvGeometry((3, 3), pads=(1, 1, 1, 1)), 0.05), ConvStats(ConvGeometry((3, 3)), 0.05)
    wide.add(rng.standard_normal((1, 300, 6, 6)).astype(np.float32), 16, rng)  # K = 2700
    narrow.add(rng.standard_normal((1, 200, 6, 6)).astype(np.float32), 16, rng)  # K = 1800
    assert wide.moment is None and wide.mean is not None and wide.images == 1
    assert narrow.moment is not None and narrow.moment.shape == (1, 1800, 1800)
