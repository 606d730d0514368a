"""Tiny runtime bundles made in the test: an RVM-like recurrent graph and a MODNet-like one.

``rvm_like_onnx`` mimics the RVM contract: ``src`` + ``r1i..r4i`` -> ``fgr``, ``pha``,
``r1o..r4o``, each state at 1/2, 1/4, 1/8, 1/16 of the input and mixed non-linearly with the
previous state, so a dropped or misrouted state changes every output. ``modnet_like_onnx`` is
stateless: ``src`` -> ``pha``. ``make_runtime_bundle`` writes either plus manifest.json (and an
INT8 Q/DQ twin on request) in the bundle format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from matting_deploy.bundle import Bundle

H, W = 32, 48  # bundle input (height, width); both divisible by 16
CHANNELS = (2, 3, 4, 5)  # r1..r4


def state_shapes(height: int = H, width: int = W) -> list[list[int]]:
    return [[1, c, height >> (k + 1), width >> (k + 1)] for k, c in enumerate(CHANNELS)]


def _conv_stem(rng: np.random.Generator, int8: bool) -> tuple[list, list, str]:
    """src -> 3x3 conv to one channel (optionally behind Q/DQ on src and weight)."""
    weight = rng.normal(0.0, 0.25, (1, 3, 3, 3)).astype(np.float32) + 1.0 / 9.0
    inits = [numpy_helper.from_array(weight, "stem_w")]
    nodes = []
    x, w = "src", "stem_w"
    if int8:
        inits += [
            numpy_helper.from_array(np.array(1.0 / 127.0, np.float32), "src_scale"),
            numpy_helper.from_array(np.array(np.abs(weight).max() / 127.0, np.float32), "w_scale"),
            numpy_helper.from_array(np.array(0, np.int8), "zp"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["src", "src_scale", "zp"], ["src_q"]),
            helper.make_node("DequantizeLinear", ["src_q", "src_scale", "zp"], ["src_dq"]),
            helper.make_node("QuantizeLinear", ["stem_w", "w_scale", "zp"], ["w_q"]),
            helper.make_node("DequantizeLinear", ["w_q", "w_scale", "zp"], ["w_dq"]),
        ]
        x, w = "src_dq", "w_dq"
    nodes.append(helper.make_node("Conv", [x, w], ["m"], pads=[1, 1, 1, 1]))
    return nodes, inits, "m"


def _save(nodes, name, inputs, outputs, inits, path) -> None:
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def modnet_like_onnx(path: str | Path, height: int = H, width: int = W, seed: int = 0,
                     int8: bool = False) -> None:
    """pha = sigmoid(4 * (conv3x3(src) - 0.5)): stateless, src [1,3,H,W] -> pha [1,1,H,W]."""
    rng = np.random.default_rng(seed)
    nodes, inits, m = _conv_stem(rng, int8)
    inits += [numpy_helper.from_array(np.array(v, np.float32), k)
              for k, v in {"half": 0.5, "gain": 4.0}.items()]
    nodes += [
        helper.make_node("Sub", [m, "half"], ["c"]),
        helper.make_node("Mul", ["c", "gain"], ["g"]),
        helper.make_node("Sigmoid", ["g"], ["pha"]),
    ]
    inputs = [helper.make_tensor_value_info("src", TensorProto.FLOAT, [1, 3, height, width])]
    outputs = [helper.make_tensor_value_info("pha", TensorProto.FLOAT, [1, 1, height, width])]
    _save(nodes, "modnet_like", inputs, outputs, inits, path)


def rvm_like_onnx(path: str | Path, height: int = H, width: int = W, seed: int = 0,
                  int8: bool = False) -> None:
    """Recurrent: r_k,out = tanh(decay_k r_k,in + w_k pool_k(stem - 0.5) + pool(mean(r_k-1,out))).

    pha = sigmoid(4 * (stem - 0.5) + up2(mean_c(r1o)) + mean(r4o)), fgr = src * (0.5 + 0.5 pha).
    """
    rng = np.random.default_rng(seed)
    nodes, inits, m = _conv_stem(rng, int8)
    consts = {"half": 0.5, "gain": 4.0}
    for k, c in enumerate(CHANNELS, start=1):
        consts[f"decay{k}"] = 0.9 - 0.1 * k
        inits.append(numpy_helper.from_array(
            rng.uniform(-2.0, 2.0, (1, c, 1, 1)).astype(np.float32), f"w{k}"))
    inits += [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in consts.items()]
    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "up_scales"))
    shapes = state_shapes(height, width)
    inputs = [helper.make_tensor_value_info("src", TensorProto.FLOAT, [1, 3, height, width])]
    outputs = [
        helper.make_tensor_value_info("fgr", TensorProto.FLOAT, [1, 3, height, width]),
        helper.make_tensor_value_info("pha", TensorProto.FLOAT, [1, 1, height, width]),
    ]
    nodes.append(helper.make_node("Sub", [m, "half"], ["c"]))
    prev_pool, prev_state = "c", None
    for k, shape in enumerate(shapes, start=1):
        inputs.append(helper.make_tensor_value_info(f"r{k}i", TensorProto.FLOAT, shape))
        outputs.append(helper.make_tensor_value_info(f"r{k}o", TensorProto.FLOAT, shape))
        pool = dict(kernel_shape=[2, 2], strides=[2, 2])
        nodes += [
            helper.make_node("AveragePool", [prev_pool], [f"p{k}"], **pool),
            helper.make_node("Mul", [f"r{k}i", f"decay{k}"], [f"a{k}"]),
            helper.make_node("Mul", [f"p{k}", f"w{k}"], [f"b{k}"]),
            helper.make_node("Add", [f"a{k}", f"b{k}"], [f"s{k}"]),
        ]
        pre = f"s{k}"
        if prev_state is not None:
            nodes += [
                helper.make_node("ReduceMean", [prev_state], [f"q{k}"], axes=[1], keepdims=1),
                helper.make_node("AveragePool", [f"q{k}"], [f"qp{k}"], **pool),
                helper.make_node("Add", [f"s{k}", f"qp{k}"], [f"t{k}"]),
            ]
            pre = f"t{k}"
        nodes.append(helper.make_node("Tanh", [pre], [f"r{k}o"]))
        prev_pool, prev_state = f"p{k}", f"r{k}o"
    nodes += [
        helper.make_node("ReduceMean", ["r1o"], ["u"], axes=[1], keepdims=1),
        helper.make_node("Resize", ["u", "", "up_scales"], ["up"], mode="nearest"),
        helper.make_node("ReduceMean", ["r4o"], ["g4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Mul", ["c", "gain"], ["z0"]),
        helper.make_node("Add", ["z0", "up"], ["z1"]),
        helper.make_node("Add", ["z1", "g4"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["pha"]),
        helper.make_node("Mul", ["pha", "half"], ["ph"]),
        helper.make_node("Add", ["ph", "half"], ["fg_gain"]),
        helper.make_node("Mul", ["src", "fg_gain"], ["fgr"]),
    ]
    _save(nodes, "rvm_like", inputs, outputs, inits, path)


def make_runtime_bundle(root: str | Path, model: str = "rvm", height: int = H, width: int = W,
                        int8: bool = False, seed: int = 0) -> Path:
    """A bundle: model.onnx (+ model.int8.onnx, Q/DQ, when ``int8``) and manifest.json."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    recurrent = model == "rvm"
    make = rvm_like_onnx if recurrent else modnet_like_onnx
    shapes = state_shapes(height, width) if recurrent else []
    io = [{"name": "src", "shape": [1, 3, height, width], "dtype": "float32"}]
    io += [{"name": f"r{k}i", "shape": s, "dtype": "float32"} for k, s in enumerate(shapes, 1)]
    outs = [{"name": "pha", "shape": [1, 1, height, width], "dtype": "float32"}]
    if recurrent:
        outs.insert(0, {"name": "fgr", "shape": [1, 3, height, width], "dtype": "float32"})
        outs += [{"name": f"r{k}o", "shape": s, "dtype": "float32"}
                 for k, s in enumerate(shapes, 1)]
    manifest = {
        "format": 1,
        "model": model,
        "variant": "mobilenetv3" if recurrent else None,
        "source": "tests/runtime_fixtures.py",
        "input": {"height": height, "width": width, "dynamic": False,
                  "downsample_ratio": 1.0 if recurrent else None},
        "opset": 17,
        "inputs": io,
        "outputs": outs,
        "states": [{"input": f"r{k}i", "output": f"r{k}o", "shape": s}
                   for k, s in enumerate(shapes, 1)],
        "files": {},
        "artifacts": {},
    }
    bundle = Bundle(root, manifest)
    make(root / "model.onnx", height, width, seed=seed)
    bundle.add_file("model.onnx", artifact="fp32", precision="fp32")
    if int8:
        make(root / "model.int8.onnx", height, width, seed=seed, int8=True)
        bundle.add_file("model.int8.onnx", artifact="int8", precision="int8")
    bundle.save()
    return root


def frames(n: int, height: int = H, width: int = W, seed: int = 0) -> list[np.ndarray]:
    """``n`` seeded frames (1, 3, H, W) in [0, 1] with a bright blob moving right."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for t in range(n):
        cx = width * (0.3 + 0.4 * t / max(1, n - 1))
        blob = np.exp(-(((yy - height / 2) / (height / 4)) ** 2 + ((xx - cx) / (width / 6)) ** 2))
        img = 0.2 + 0.7 * blob[None] + 0.05 * rng.standard_normal((3, height, width))
        out.append(np.clip(img, 0, 1).astype(np.float32)[None])
    return out
