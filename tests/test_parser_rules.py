"""Parser rules read from onnx-tensorrt's own sources (each rule's file and line are in
check/rules_parser.py and tensorrt_support.json); each test fails if its rule is removed.

The stored operators.md files (tests/fixtures/onnx_tensorrt/, Apache-2.0, onnx/onnx-tensorrt
docs/operators.md at the commits TensorRT 8.6.1 pins and at 10.1-GA) check that
``support.parse_operators_md`` regenerates the tables the rules use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from matting_deploy.check import attribute_support
from matting_deploy.check.support import parse_operators_md, support_data

FIXTURES = Path(__file__).parent / "fixtures" / "onnx_tensorrt"
TARGETS = ["tensorrt-8.6", "tensorrt-10", "tensorrt-11"]


def model(nodes, inits, opset=17, x=(1, 3, 8, 8)):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(v, np.float32 if k != "zp" else np.int8), k)
                               for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def resize(scales=(1, 1, 2, 2), **attrs):
    return model([helper.make_node("Resize", ["x", "", "scales"], ["y"], name="rs", **attrs)], {"scales": scales})


@pytest.mark.parametrize("table, commit", [("8.6", "6ba67d3428e0"), ("10.1", "96e781103cfc")])
def test_parse_operators_md_regenerates_the_stored_table(table, commit):
    text = (FIXTURES / f"operators-{commit}.md").read_text(encoding="utf-8")
    stored = support_data()["parser_tables"][table]
    assert stored["commit"].startswith(commit)
    got = parse_operators_md(text)
    assert got["opset"] == stored["opset"] and got["ops"] == stored["ops"]
    assert len(got["ops"]) > 150


@pytest.mark.parametrize("target", TARGETS)
def test_cubic_resize_of_the_image_axes_is_accepted(target):
    assert attribute_support(resize(mode="cubic"), target).ok


@pytest.mark.parametrize("target", TARGETS)
def test_cubic_and_linear_resize_only_on_the_innermost_axes(target):
    r = attribute_support(resize((1, 2, 2, 2), mode="cubic"), target)
    assert r.ok is False and r.nodes == ["rs"] and "cubic resize outside the innermost 2 axes" in r.detail
    assert attribute_support(resize((1, 2, 2, 2), mode="linear"), target).ok  # 3 innermost axes
    r = attribute_support(resize((2, 2, 2, 2), mode="linear"), target)
    assert r.ok is False and "linear resize outside the innermost 3 axes" in r.detail


@pytest.mark.parametrize("target", TARGETS)
def test_tf_half_pixel_for_nn_needs_round_prefer_floor(target):
    ok = resize(coordinate_transformation_mode="tf_half_pixel_for_nn")
    assert attribute_support(ok, target).ok
    bad = resize(coordinate_transformation_mode="tf_half_pixel_for_nn", nearest_mode="floor")
    r = attribute_support(bad, target)
    assert r.ok is False and "nearest_mode=floor with tf_half_pixel_for_nn (only round_prefer_floor)" in r.detail
    assert attribute_support(resize(nearest_mode="floor"), target).ok  # other transformations take any


def _instance_norm(scale_from_graph: bool):
    nodes = [helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], name="inorm")]
    inits = {"b": np.zeros(3)}
    if scale_from_graph:  # scale computed in the graph (e.g. a folded Mul the simplifier left)
        inits["s0"] = np.ones(3)
        nodes.insert(0, helper.make_node("Abs", ["s0"], ["s"], name="abs"))
    else:
        inits["s"] = np.ones(3)
    return model(nodes, inits)


@pytest.mark.parametrize("target, version, ok", [("tensorrt-8.6", "8.5.2", False), ("tensorrt-8.6", "8.6.1", False),
                                                 ("tensorrt-10", "10.0.1", True), ("tensorrt-10", "10.1.0", True)])
def test_instance_norm_scale_must_be_an_initializer_below_10(target, version, ok):
    from matting_deploy.check.support import resolve_target

    tgt = resolve_target(target, version)
    assert attribute_support(_instance_norm(False), tgt).ok
    r = attribute_support(_instance_norm(True), tgt)
    assert r.ok is ok, r.detail
    if not ok:
        assert r.nodes == ["inorm"] and "scale input 's' not an initializer" in r.detail


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("op", ["QuantizeLinear", "DequantizeLinear"])
def test_qdq_scales_must_be_positive(target, op):
    def qdq(scale):
        return model([helper.make_node(op, ["x", "s", "zp"], ["y"], name="q")], {"s": scale, "zp": 0})

    assert attribute_support(qdq(0.02), target).ok
    for bad in (0.0, -0.02):
        r = attribute_support(qdq(bad), target)
        assert r.ok is False and r.nodes == ["q"] and "scale 's' not all positive" in r.detail
