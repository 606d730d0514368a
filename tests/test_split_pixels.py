"""export's split of Convs over image + feature Concats (export/split_pixels.py)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from matting_deploy.export.split_pixels import split_pixel_concats
from matting_deploy.quantize.cpu_target import cpu_float_nodes
from matting_deploy.quantize.recipe import Recipe, excluded_nodes
from matting_deploy.runtimes.onnxruntime_runner import make_session


def _model() -> onnx.ModelProto:
    """f = Relu(Conv(src)); p = AveragePool(src); y = Conv(Concat(f, p, r1i)); z = Conv(Concat(f, r1i));
    g = grouped Conv(Concat(f, p)); Concat(p, f) read by two Convs."""
    rng = np.random.default_rng(0)

    def w(name, shape):
        return numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), name)

    inits = [w("wa", (5, 3, 3, 3)), w("wy", (6, 12, 3, 3)), w("by", (6,)), w("wz", (2, 9, 1, 1)),
             w("wg", (8, 4, 1, 1)), w("ws", (2, 8, 1, 1))]
    conv = {"pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["src", "wa"], ["a"], name="Conv_a", **conv),
        helper.make_node("Relu", ["a"], ["f"], name="relu"),
        helper.make_node("AveragePool", ["src"], ["p"], name="pool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["f", "p", "r1i"], ["c"], name="cat", axis=1),
        helper.make_node("Conv", ["c", "wy", "by"], ["y"], name="Conv_y", **conv),
        helper.make_node("Concat", ["f", "r1i"], ["cz"], name="catz", axis=1),
        helper.make_node("Conv", ["cz", "wz"], ["z"], name="Conv_z"),
        helper.make_node("Concat", ["p", "f"], ["cs"], name="cats", axis=1),
        helper.make_node("Conv", ["cs", "wg"], ["g"], name="Conv_g", group=2),
        helper.make_node("Conv", ["cs", "ws"], ["s"], name="Conv_s"),
    ]
    shape = [1, 3, 8, 8]
    graph = helper.make_graph(
        nodes, "mix",
        [helper.make_tensor_value_info("src", TensorProto.FLOAT, shape),
         helper.make_tensor_value_info("r1i", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "z", "g", "s")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_only_convs_reading_pixels_and_features_are_split_and_outputs_stay():
    model = _model()
    split, names = split_pixel_concats(model, {"src"})
    onnx.checker.check_model(split)
    # z mixes features with the recurrent state (not an image input); g is grouped; s shares its Concat
    assert names == ["Conv_y"]
    nodes = {n.name: n for n in split.graph.node}
    assert list(nodes["Conv_y"].input[:2]) == ["c_features", "wy_features"] and nodes["Conv_y"].input[2] == "by"
    assert list(nodes["c_features"].input) == ["f", "r1i"]
    assert list(nodes["Conv_y_pixels"].input) == ["p", "wy_pixels"]  # no bias: the feature half has it
    assert list(nodes["Conv_y_sum"].input) == ["y_features", "y_pixels"] and nodes["Conv_y_sum"].output[0] == "y"
    weights = {i.name: numpy_helper.to_array(i) for i in split.graph.initializer}
    assert weights["wy_features"].shape == (6, 9, 3, 3) and weights["wy_pixels"].shape == (6, 3, 3, 3)
    assert "wy" not in weights and "cat" not in nodes
    rng = np.random.default_rng(1)
    feed = {"src": rng.random((1, 3, 8, 8), dtype=np.float32),
            "r1i": rng.normal(size=(1, 4, 8, 8)).astype(np.float32)}
    before = make_session(model.SerializeToString()).run(None, feed)
    after = make_session(split.SerializeToString()).run(None, feed)
    for x, y in zip(before, after, strict=True):
        assert np.abs(x - y).max() < 1e-5 and np.abs(x).max() > 0.1


def test_nothing_to_split_returns_the_model_itself():
    model = _model()
    assert split_pixel_concats(model, set()) == (model, [])


def test_the_cpu_target_keeps_the_pixel_halves_float():
    split, _ = split_pixel_concats(_model(), {"src"})
    # Conv_a reads src too, but its output is not added to another Conv's: not a split half
    assert excluded_nodes(split, Recipe("t", exclude_rules=("pixels",))) == {"Conv_y_pixels"}
    full = excluded_nodes(split, Recipe("t", exclude_rules=("full-size",)))  # every Conv here is 8x8
    assert cpu_float_nodes(split, {"Conv_z"}) == {"Conv_z", "Conv_y_pixels"} | full
