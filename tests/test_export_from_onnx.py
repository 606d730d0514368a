"""`export --from-onnx`: an RVM-shaped ONNX made static, simplified, parity-checked, bundled."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from matting_deploy.bundle import Bundle
from matting_deploy.cli import main
from matting_deploy.fileio import sha256_file
from matting_deploy.runtimes.onnxruntime_runner import OrtRunner
from tests.fixtures import NEEDS_TORCH, official_modnet_like, official_rvm_like

H, W = 64, 48


@pytest.fixture()
def source(tmp_path):
    path = tmp_path / "rvm_like.onnx"
    official_rvm_like(path)
    return path


def export(args, tmp_path):
    return CliRunner().invoke(main, ["export", "--model", "rvm", *args], catch_exceptions=False)


def test_from_onnx_bundle(source, tmp_path):
    out = tmp_path / "bundle"
    res = export(["--from-onnx", str(source), "--height", str(H), "--width", str(W),
                  "--downsample-ratio", "0.5", "--fp16", "--out", str(out)], tmp_path)
    assert res.exit_code == 0, res.output
    for stage in ("[build", "[export", "[simplify", "[check", "[fp16"):
        assert stage in res.output
    bundle = Bundle.open(out)
    m = bundle.manifest
    assert m["model"] == "rvm" and m["variant"] == "mobilenetv3" and m["opset"] == 17
    assert bundle.downsample_ratio == 0.5 and not bundle.dynamic
    assert [s.shape for s in bundle.states] == [(1, 16, 16, 12), (1, 20, 8, 6), (1, 40, 4, 3), (1, 64, 2, 2)]
    for name, entry in m["files"].items():
        assert entry["sha256"] == sha256_file(out / name)
    assert m["parity"]["fp32"]["frames"] >= 5
    assert m["parity"]["fp32"]["max_abs_all"] <= 1e-4
    assert m["parity"]["fp16"]["against"] == "fp32"

    model = onnx.load(out / "model.onnx")
    assert {i.name for i in model.graph.input} == {"src", "r1i", "r2i", "r3i", "r4i"}
    onnx.checker.check_model(model, full_check=True)
    shapes = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    assert shapes["pha"] == [1, 1, H, W] and shapes["r4o"] == [1, 64, 2, 2]
    fp16 = onnx.load(out / "model.fp16.onnx")
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer)
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in fp16.graph.input)
    _fp16_keeps_the_weakly_typed_fp32_layers(model, fp16, bundle.states)


def _fp16_keeps_the_weakly_typed_fp32_layers(model, fp16, states):
    """Every FP16 path computes the same thing: each layer a weakly typed FP16 engine pins to FP32
    (FP32 ops and the recurrent update) computes FP32 in model.fp16.onnx, and each new state leaves
    the graph without an FP16 rounding."""
    from matting_deploy.bundle.trt_plan import layer_rules, recurrent_nodes

    pinned = {r.node for r in layer_rules(model, states) if r.precision == "fp32"}
    assert recurrent_nodes(model, states) <= pinned and len(recurrent_nodes(model, states)) >= 4
    g = onnx.shape_inference.infer_shapes(fp16).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)}
    node = {n.name: n for n in g.node}
    half = sorted(n for n in pinned if types.get(node[n].output[0]) != onnx.TensorProto.FLOAT)
    assert not half, f"computed in FP16 in model.fp16.onnx: {half}"
    producer = {o: n for n in g.node for o in n.output}
    for s in states:
        last = producer[s.output]
        assert last.op_type == "Cast" and types[last.input[0]] == onnx.TensorProto.FLOAT, s.output
        assert producer[last.input[0]].name in pinned, s.output


def test_from_onnx_matches_source_over_frames(source, tmp_path):
    out = tmp_path / "b"
    assert export(["--from-onnx", str(source), "--height", str(H), "--width", str(W),
                   "--downsample-ratio", "0.5", "--out", str(out)], tmp_path).exit_code == 0
    bundle = Bundle.open(out)
    ours = OrtRunner.from_bundle(bundle)
    theirs = OrtRunner(source, [s.__class__(s.input, s.output, None) for s in bundle.states], 0.5)
    rng = np.random.default_rng(1)
    for _ in range(3):
        src = rng.random((1, 3, H, W), dtype=np.float32)
        a, b = ours.run(src), theirs.run(src)
        for name in ("pha", "fgr", "r1o", "r4o"):
            np.testing.assert_allclose(a[name], b[name], atol=1e-5)
    assert np.abs(ours.state["r4i"]).max() > 0  # the state really is carried


def test_refuses_to_overwrite_and_force(source, tmp_path):
    out = tmp_path / "b"
    args = ["--from-onnx", str(source), "--height", str(H), "--width", str(W), "--out", str(out)]
    assert export(args, tmp_path).exit_code == 0
    before = (out / "manifest.json").read_text()
    res = export(args, tmp_path)
    assert res.exit_code == 2 and "already exists" in res.output and "--force" in res.output
    assert (out / "manifest.json").read_text() == before
    assert export([*args, "--force"], tmp_path).exit_code == 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b"not an onnx file"), "not a readable ONNX model"),
    ],
)
def test_bad_source_is_a_clean_error(tmp_path, make, message):
    bad = tmp_path / "bad.onnx"
    make(bad)
    out = tmp_path / "b"
    res = export(["--from-onnx", str(bad), "--out", str(out)], tmp_path)
    assert res.exit_code == 2
    assert message in res.output and str(bad) in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]


def test_non_rvm_graph_rejected(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    path = tmp_path / "relu.onnx"
    onnx.save(model, path)
    res = export(["--from-onnx", str(path), "--out", str(tmp_path / "b")], tmp_path)
    assert res.exit_code == 2 and "not an RVM-shaped graph" in res.output


def test_manifest_is_json_with_versions(source, tmp_path):
    out = tmp_path / "b"
    export(["--from-onnx", str(source), "--height", str(H), "--width", str(W), "--out", str(out)], tmp_path)
    m = json.loads((out / "manifest.json").read_text())
    assert {"torch", "onnx", "onnxruntime"} <= set(m["versions"])
    assert m["inputs"][0] == {"name": "src", "shape": [1, 3, H, W], "dtype": "float32"}


# ----------------------------------------------------------------------------- official MODNet layout


def _modnet_from_onnx(source, out, height, width):
    return CliRunner().invoke(main, ["export", "--model", "modnet", "--from-onnx", str(source), "--height",
                                     str(height), "--width", str(width), "--fp16", "--out", str(out)],
                              catch_exceptions=False)


def _check_modnet_bundle(source, out, height, width):
    bundle = Bundle.open(out)
    m = bundle.manifest
    assert m["model"] == "modnet" and m["parity"]["fp32"]["against"] == "source-onnx"
    assert m["parity"]["fp32"]["max_abs"] <= 1e-4 and m["source"]["onnx"] == source.name
    model = onnx.load(out / "model.onnx")
    assert [i.name for i in model.graph.input] == ["src"] and [o.name for o in model.graph.output] == ["pha"]
    assert m["inputs"][0]["shape"] == [1, 3, height, width]
    # Our graph on src in [0, 1] equals the source on its own normalised input (src - 0.5) / 0.5.
    ours = OrtRunner.from_bundle(bundle)
    theirs = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    src = np.random.default_rng(3).random((1, 3, height, width), dtype=np.float32)
    want = theirs.run(["output"], {"input": (src - 0.5) / 0.5})[0]
    np.testing.assert_allclose(ours.run(src)["pha"], want, atol=1e-5)
    unnormalised = theirs.run(["output"], {"input": src})[0]
    assert np.abs(unnormalised - want).max() > 1e-2  # the normalisation really matters here


def test_official_modnet_layout_hand_made(tmp_path):
    source = tmp_path / "modnet_official.onnx"
    official_modnet_like(source)
    out = tmp_path / "b"
    res = _modnet_from_onnx(source, out, 64, 96)
    assert res.exit_code == 0, res.output
    assert "official MODNet layout" in res.output
    _check_modnet_bundle(source, out, 64, 96)
    res = _modnet_from_onnx(source, tmp_path / "odd", 50, 96)
    assert res.exit_code == 2 and "divisible by 32" in res.output


def test_official_modnet_layout_rejects_other_graphs(source, tmp_path):
    res = _modnet_from_onnx(source, tmp_path / "b", 64, 96)  # an RVM graph is not MODNet's layout
    assert res.exit_code == 2 and "not the official MODNet ONNX layout" in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.filterwarnings("ignore")  # the tracer's warnings about MODNet's Python branches
def test_official_modnet_layout_from_our_network(tmp_path):
    """A MODNet ONNX exported the way the MODNet repository's onnx/export_onnx.py does."""
    torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
    from matting_deploy.export.torch_export import build_network

    class Official(torch.nn.Module):  # the official onnx/ export: normalised input -> matte only
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x, True)[2]

    source = tmp_path / "modnet.onnx"
    dynamic = {0: "batch_size", 2: "height", 3: "width"}
    torch.onnx.export(Official(build_network("modnet", "mobilenetv2", None)), torch.rand(1, 3, 64, 64) * 2 - 1,
                      str(source), input_names=["input"], output_names=["output"], opset_version=11,
                      dynamic_axes={"input": dynamic, "output": dynamic}, dynamo=False)
    out = tmp_path / "b"
    res = _modnet_from_onnx(source, out, 64, 96)
    assert res.exit_code == 0, res.output
    _check_modnet_bundle(source, out, 64, 96)


def _with_qdq_on_src(path, out):
    """The RVM-like graph with a Q/DQ pair on ``src`` (what an INT8 Q/DQ export looks like)."""
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    for node in model.graph.node:
        node.input[:] = ["src_dq" if n == "src" else n for n in node.input]
    model.graph.initializer.extend([numpy_helper.from_array(np.array(1 / 127, np.float32), "s"),
                                    numpy_helper.from_array(np.array(0, np.int8), "z")])
    qdq = [helper.make_node("QuantizeLinear", ["src", "s", "z"], ["src_q"]),
           helper.make_node("DequantizeLinear", ["src_q", "s", "z"], ["src_dq"])]
    nodes = [*qdq, *model.graph.node]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(out))
    return out


def test_from_onnx_refuses_a_quantized_or_fp16_graph(source, tmp_path):
    qdq = _with_qdq_on_src(source, tmp_path / "qdq.onnx")
    assert OrtRunner(qdq).session is not None  # a valid graph, just not FP32
    res = CliRunner().invoke(main, ["export", "--model", "rvm", "--from-onnx", str(qdq), "--height", str(H),
                                    "--width", str(W), "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and len(res.output.splitlines()) == 1, res.output
    assert "already quantized (DequantizeLinear, QuantizeLinear nodes)" in res.output
    assert not (tmp_path / "b").exists()
    from onnxconverter_common import float16

    official_modnet_like(tmp_path / "modnet.onnx")
    half = float16.convert_float_to_float16(onnx.load(str(tmp_path / "modnet.onnx")), keep_io_types=False)
    onnx.save(half, str(tmp_path / "half.onnx"))
    res = CliRunner().invoke(main, ["export", "--model", "modnet", "--from-onnx", str(tmp_path / "half.onnx"),
                                    "--height", "64", "--width", "64", "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "an FP16 model; export needs the FP32 model" in res.output, res.output
    assert not (tmp_path / "m").exists()
