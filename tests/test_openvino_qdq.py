"""Signed activation Q/DQ next to a Concat: OpenVINO runs the rewritten pair (uint8, zero point 128)
as onnxruntime runs the file as written, and the rewrite changes no value onnxruntime computes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

ov = pytest.importorskip("openvino", reason="openvino is not installed (pip install -e '.[openvino]')")

from matting_deploy.runtimes.openvino_qdq import signed_activations, unsigned_activations  # noqa: E402
from matting_deploy.runtimes.openvino_runner import OvRunner  # noqa: E402

SCALE = 0.19  # not 1: OpenVINO 2026.4 quantized this pattern with a step of 1.0


def _concat_qdq_conv(path) -> None:
    """Concat(x, y) -> Q/DQ (int8, zero point 0) -> Conv 1x1 with int8 weights: each output channel
    reads one input channel, so the output is the quantized tensor itself."""
    channels = 8
    inits = [numpy_helper.from_array(np.array(SCALE, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z"),
             numpy_helper.from_array(np.eye(channels, dtype=np.int8)[:, :, None, None], "wq"),
             numpy_helper.from_array(np.ones(channels, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(channels, np.int8), "wz")]
    nodes = [helper.make_node("Concat", ["x", "y"], ["cat"], axis=1),
             helper.make_node("QuantizeLinear", ["cat", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
             helper.make_node("Conv", ["dq", "w"], ["out"])]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, channels // 2, 6, 6]) for n in "xy"]
    graph = helper.make_graph(nodes, "concat_qdq", inputs,
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, channels, 6, 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def _feed() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.normal(0, 1, (1, 4, 6, 6)).astype(np.float32),
            "y": rng.normal(0, 5, (1, 4, 6, 6)).astype(np.float32)}


def _ort(path, feed):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["out"], feed)[0]


def test_rewrite_is_the_same_arithmetic(tmp_path):
    path, rewritten = tmp_path / "m.onnx", tmp_path / "u.onnx"
    _concat_qdq_conv(path)
    model = onnx.load(path)
    assert unsigned_activations(model) == 1
    zero_points = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name.startswith("z")}
    assert zero_points == {"z_uint8": np.uint8(128)}  # the int8 one is gone; the weights' stays int8
    assert numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "wz")).dtype == np.int8
    onnx.checker.check_model(model)
    onnx.save(model, rewritten)
    feed = _feed()
    np.testing.assert_array_equal(_ort(rewritten, feed), _ort(path, feed))
    assert unsigned_activations(model) == 0  # nothing signed left
    core = ov.Core()  # what the runner checks before importing onnx: signed in, unsigned out
    assert signed_activations(core.read_model(str(path))) and not signed_activations(core.read_model(str(rewritten)))


def test_openvino_runs_the_pair_as_written(tmp_path):
    path = tmp_path / "m.onnx"
    _concat_qdq_conv(path)
    feed = _feed()
    want = _ort(path, feed)
    q = np.clip(np.round(np.concatenate([feed["x"], feed["y"]], 1) / SCALE), -128, 127) * SCALE
    np.testing.assert_allclose(want, q, atol=1e-5)  # the reference is the Q/DQ arithmetic
    runner = OvRunner(path, threads=1)
    assert runner.rewritten
    got = runner.run_inputs(feed)["out"]
    np.testing.assert_allclose(got, want, atol=1e-5)
