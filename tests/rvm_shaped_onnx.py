"""A tiny RVM-shaped ONNX (official signature, dynamic shapes, [1,1,1,1] states broadcast)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHANNELS = (16, 20, 40, 64)  # MobileNetV3 RVM's r1..r4 channels


def make_rvm_like(path, seed: int = 0, opset: int = 12) -> None:
    """src, r1i..r4i, downsample_ratio -> fgr, pha, r1o..r4o, the official release's I/O.

    r_k(out) = tanh(conv(pool^k(src))) + 0.5 * r_k(in): recurrent, so states matter; pha depends
    on downsample_ratio through the resized encoder input, like the real graph.
    """
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    dims = ["batch_size", "channels", "height", "width"]
    inputs = [helper.make_tensor_value_info("src", TensorProto.FLOAT, ["batch_size", 3, "height", "width"])]
    inputs += [helper.make_tensor_value_info(f"r{i}i", TensorProto.FLOAT, dims) for i in range(1, 5)]
    inputs.append(helper.make_tensor_value_info("downsample_ratio", TensorProto.FLOAT, [1]))
    outputs = [
        helper.make_tensor_value_info("fgr", TensorProto.FLOAT, ["batch_size", 3, "height", "width"]),
        helper.make_tensor_value_info("pha", TensorProto.FLOAT, ["batch_size", 1, "height", "width"]),
    ]
    outputs += [
        helper.make_tensor_value_info(f"r{i}o", TensorProto.FLOAT, ["batch_size", c, "height", "width"])
        for i, c in enumerate(CHANNELS, 1)
    ]
    inits.append(numpy_helper.from_array(np.ones(2, np.float32), "ones"))
    inits.append(numpy_helper.from_array(np.zeros(0, np.float32), "roi"))
    nodes += [
        helper.make_node("Concat", ["ones", "downsample_ratio", "downsample_ratio"], ["scales"], axis=0),
        helper.make_node("Resize", ["src", "roi", "scales"], ["small"], mode="linear"),
    ]
    prev = "small"
    half = numpy_helper.from_array(np.array([0.5], np.float32), "half")
    inits.append(half)
    for i, c in enumerate(CHANNELS, 1):
        nodes.append(helper.make_node("AveragePool", [prev], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2],
                                      ceil_mode=1))
        w = numpy_helper.from_array(rng.normal(0, 0.5, (c, 3, 3, 3)).astype(np.float32), f"w{i}")
        inits.append(w)
        nodes += [
            helper.make_node("Conv", [f"p{i}", f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
            helper.make_node("Tanh", [f"c{i}"], [f"t{i}"]),
            helper.make_node("Mul", [f"r{i}i", "half"], [f"h{i}"]),
            helper.make_node("Add", [f"t{i}", f"h{i}"], [f"r{i}o"]),
        ]
        prev = f"p{i}"
    inits.append(numpy_helper.from_array(rng.normal(0, 1, (1, 3, 3, 3)).astype(np.float32), "wa"))
    inits.append(numpy_helper.from_array(rng.normal(0, 1, (1, CHANNELS[0], 1, 1)).astype(np.float32), "wr"))

    nodes += [
        helper.make_node("Conv", ["src", "wa"], ["a0"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["r1o", "wr"], ["a1s"]),
        helper.make_node("Shape", ["a0"], ["size"]),
        helper.make_node("Resize", ["a1s", "roi", "roi", "size"], ["a1"], mode="linear"),
        helper.make_node("Add", ["a0", "a1"], ["a2"]),
        helper.make_node("Sigmoid", ["a2"], ["pha"]),
        helper.make_node("Identity", ["src"], ["fgr"]),
    ]
    graph = helper.make_graph(nodes, "rvm_like", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
