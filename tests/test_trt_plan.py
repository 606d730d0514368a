"""The build plan without TensorRT: the parser's layer names (several layers per node), the layer
rules on a small graph, and `build --trtexec` rendering the plan per TensorRT version (parsed back
with shlex: every INT8 Conv and every FP32-pinned layer named, flags only where that trtexec has them)."""

from __future__ import annotations

import json
import shlex
import types

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from matting_deploy.bundle import Bundle, implicit_onnx
from matting_deploy.bundle.trt_cache import parse_cache
from matting_deploy.bundle.trt_plan import BuildPlan, LayerRule, fp32_ops, layer_names, layer_rules, recurrent_nodes
from matting_deploy.cli import main
from matting_deploy.errors import MattingDeployError
from matting_deploy.runtimes.trt_implicit import apply_plan
from tests.fixtures.fake_tensorrt import fake_tensorrt
from tests.test_check_cli import calibrated  # noqa: F401  (module fixture: export + calibrate)


def _hardswish_model():
    """src -> Conv -> c -> Relu -> a -> Conv -> d; r_in + d -> HardSwish -> r_out (a recurrent update)."""
    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["src", "w"], ["c"], name="conv1"),
        helper.make_node("Relu", ["c"], ["a"], name="relu1"),
        helper.make_node("Conv", ["a", "w"], ["d"], name="conv2"),
        helper.make_node("Add", ["r_in", "d"], ["s"], name="add"),
        helper.make_node("HardSwish", ["s"], ["r_out"], name="hswish"),
        helper.make_node("ReduceMean", ["d"], ["m"], name="mean", keepdims=1),
    ]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 4, 4]) for n in ("src", "r_in", "r_out")]
    graph = helper.make_graph(nodes, "g", vi[:2], [vi[2], helper.make_tensor_value_info("m", TensorProto.FLOAT, None)],
                              [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _parsed(model: onnx.ModelProto, tmp_path):
    """The fake TensorRT 8.6 and the network its ONNX parser makes of ``model``."""
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    trt = fake_tensorrt([], version="8.6.1.6")
    network = types.SimpleNamespace(layers=[], num_layers=0, num_inputs=0, inputs=[], strongly_typed=False,
                                    get_layer=lambda i: network.layers[i])
    trt.OnnxParser(network, None).parse_from_file(str(path))
    return trt, network


def test_the_parsers_layer_names():
    nodes = frozenset({"hswish", "conv_1", "conv"})
    assert layer_names("hswish", nodes, "hswish") and layer_names("hswish", nodes, "hswish_12")
    assert not layer_names("conv", nodes, "conv_1")  # a node of that name owns it
    assert not layer_names("hswish", nodes, "hswish_x")


def test_rules_and_their_application_to_several_layers_per_node(tmp_path):
    model = _hardswish_model()
    scales = {"src": 0.1, "c": 0.1, "a": 0.1, "d": 0.1}
    rules = {r.node: r for r in layer_rules(model, [("r_in", "r_out")], scales, {"conv1": "a"})}
    assert recurrent_nodes(model, [("r_in", "r_out")]) == {"add", "hswish"}
    assert (rules["conv1"].precision, rules["conv1"].output_type) == ("int8", "fp16")
    assert (rules["relu1"].precision, rules["relu1"].output_type) == (None, "fp16")  # fused or not, no INT8 out
    assert (rules["conv2"].precision, rules["conv2"].output_type) == ("fp16", None)  # scaled input, kept float
    assert {n: rules[n].why for n in ("add", "hswish", "mean")} == {
        "add": "recurrent-update", "hswish": "recurrent-update", "mean": "fp32-op"}
    trt, network = _parsed(model, tmp_path)
    assert [layer.name for layer in network.layers if layer.node == "hswish"] == ["hswish", "hswish_0"]
    plan = BuildPlan("int8", "fp32", "m.onnx", "test", "8.6.1", ("INT8", "FP16"), rules=tuple(rules.values()),
                     nodes=frozenset(n.name for n in model.graph.node))
    counts = apply_plan(trt, network, plan)
    layers = {layer.name: layer for layer in network.layers}
    assert all(layers[n].precision == "float32" and layers[n].output_types == {0: "float32"}
               for n in ("hswish", "hswish_0", "add", "mean"))
    assert counts["recurrent-update"] == 3 and counts["int8-conv"] == 1


def _trtexec(root, precision, version, *extra):
    return CliRunner().invoke(main, ["build", "--bundle", str(root), "--precision", precision, "--trt-version", version,
                                     "--trtexec", *extra])


def _flags(output: str) -> tuple[list[str], dict[str, str]]:
    argv = shlex.split(next(ln for ln in output.splitlines() if ln.startswith("trtexec ")))
    return argv, dict(a[2:].split("=", 1) for a in argv[1:] if "=" in a)


def _specs(value: str) -> dict[str, str]:
    return dict(item.rsplit(":", 1) for item in value.split(","))


@pytest.mark.parametrize("version, legacy", [("8.5.2", True), ("8.6.1", False), ("10.0.1", False)])
def test_trtexec_line_for_implicit_int8_names_every_constrained_layer(calibrated, tmp_path, version, legacy):  # noqa: F811
    import shutil

    root = tmp_path / "b"
    shutil.copytree(calibrated[0], root)
    res = _trtexec(root, "int8", version)
    assert res.exit_code == 0, res.output
    argv, kv = _flags(res.output)
    assert kv["onnx"] == implicit_onnx(Bundle.open(root).manifest)
    assert "--int8" in argv and "--fp16" in argv and "--noTF32" in argv
    assert "--stronglyTyped" not in argv and kv["precisionConstraints"] == "obey"
    assert ("--buildOnly" if legacy else "--skipInference") in argv and kv["saveEngine"] == "model.int8.engine"
    precisions, outputs = _specs(kv["layerPrecisions"]), _specs(kv["layerOutputTypes"])
    convs = json.loads((root / "calib.json").read_text())["tensorrt"]["int8_convs"]
    assert all(precisions[c] == "int8" and outputs[c] in ("fp16", "fp32") for c in convs)
    bundle = Bundle.open(root)
    model = onnx.load(str(root / "model.onnx"))
    keep = recurrent_nodes(model, bundle.states)
    pinned = [n.name for n in model.graph.node if n.name not in convs and n.op_type not in ("Constant", "Shape")
              and (n.op_type in fp32_ops() or n.name in keep)]
    assert pinned and all(precisions[n] == "fp32" and outputs[n] == "fp32" for n in pinned)
    header, scales = parse_cache((root / kv["calib"]).read_text())
    assert header.split("-")[1] == {"8.5.2": "8502", "8.6.1": "8601", "10.0.1": "100001"}[version]
    assert set(scales) == set(parse_cache((root / "calib.cache").read_text())[1])
    script = f"trtexec.int8.{version}.sh"
    assert bundle.manifest["files"][script]["sha256"] and kv["calib"] in bundle.manifest["files"]
    assert shlex.join(argv) in (root / script).read_text()
    again = _trtexec(root, "int8", version)
    assert again.exit_code == 2 and "already exists" in again.output


@pytest.mark.parametrize("version, precision, onnx_file, typed", [
    ("10.3.0", "int8", "model.int8.onnx", True), ("10.3.0", "fp16", "model.onnx", False),
    ("10.12.0", "fp16", "model.fp16.onnx", True), ("11.0.0", "int8", "model.int8.onnx", False)])
def test_trtexec_line_by_version(calibrated, tmp_path, version, precision, onnx_file, typed):  # noqa: F811
    import shutil

    root = tmp_path / "b"
    shutil.copytree(calibrated[0], root)
    res = _trtexec(root, precision, version)
    assert res.exit_code == 0, res.output
    argv, kv = _flags(res.output)
    assert kv["onnx"] == onnx_file and ("--stronglyTyped" in argv) is typed  # 11: strongly typed, flag a no-op
    if onnx_file != "model.onnx":
        assert not {"--int8", "--fp16"} & set(argv) and "layerPrecisions" not in kv and "calib" not in kv
    else:
        assert "--fp16" in argv and _specs(kv["layerPrecisions"]) and "calib" not in kv


def test_trtexec_refuses_a_layer_name_it_cannot_spell():
    from matting_deploy.runtimes.trtexec import trtexec_args

    plan = BuildPlan("fp16", "fp32", "model.onnx", "m", "8.6.1", ("FP16",),
                     rules=(LayerRule("Div,1", "Div", "fp32", "fp32", "fp32-op"),))
    with pytest.raises(MattingDeployError, match="Div,1"):
        trtexec_args(plan, None)
    ok = BuildPlan("fp16", "fp32", "model.onnx", "m", "8.6.1", ("FP16",),
                   rules=(LayerRule("a:b", "Div", "fp32", "fp32", "fp32-op"),))
    assert "--layerPrecisions=a:b:fp32" in trtexec_args(ok, None)  # trtexec splits at the last ':'


def test_an_int8_conv_the_parser_renamed_fails_naming_it(tmp_path):
    """The plan is made from one graph; the network TensorRT parsed calls the Conv 'conv1_0'."""
    model = _hardswish_model()
    rules = layer_rules(model, [("r_in", "r_out")], {"src": 0.1, "c": 0.1, "a": 0.1, "d": 0.1}, {"conv1": "a"})
    plan = BuildPlan("int8", "fp32", "m.onnx", "test", "8.6.1", ("INT8", "FP16"), rules=tuple(rules),
                     nodes=frozenset(n.name for n in model.graph.node))
    model.graph.node.insert(0, helper.make_node("Identity", ["src"], ["src2"], name="conv1"))
    trt, network = _parsed(model, tmp_path)
    assert "conv1_0" in {layer.name for layer in network.layers}
    with pytest.raises(MattingDeployError, match="INT8 Conv 'conv1' of calib.json is not a convolution layer"):
        apply_plan(trt, network, plan)
    with pytest.raises(MattingDeployError, match="'conv1' shares its name"):
        layer_rules(model, [("r_in", "r_out")], {"src": 0.1, "c": 0.1, "a": 0.1, "d": 0.1}, {"conv1": "a"})


def test_emulation_keeps_the_planned_fp32_layers_fp32():
    """The implicit emulation computes what the plan asks: the recurrent update and the FP32 ops
    are not rounded to FP16, the INT8 Conv's input is fake-quantized, the activation is rounded."""
    from matting_deploy.check.emulate import implicit_emulation

    model = _hardswish_model()
    scales = {"src": 0.1, "c": 0.1, "a": 0.1, "d": 0.1}
    emu = implicit_emulation(model, scales, {"conv1"}, fp32_nodes=recurrent_nodes(model, [("r_in", "r_out")]))
    rounded = {n.input[0].removesuffix("__fp32") for n in emu.graph.node
               if n.op_type == "Cast" and n.input[0].endswith("__fp32")}
    assert "a" in rounded and "d" in rounded
    assert not {"s", "r_out", "m"} & rounded
    assert any(n.op_type == "QuantizeLinear" and n.input[0] == "src" for n in emu.graph.node)


def test_calibrate_and_export_force_remove_what_build_trtexec_made(calibrated, tmp_path):  # noqa: F811
    """A new calibration makes the INT8 scripts and calib.cache's re-headed copies stale (not the
    FP16 script); a new export makes every script stale, listed in the manifest or not."""
    import shutil

    from tests.fixtures import official_rvm_like
    from tests.test_check_cli import H, W

    root = tmp_path / "b"
    shutil.copytree(calibrated[0], root)
    for precision, version in (("int8", "8.5.2"), ("int8", "10.3.0"), ("fp16", "8.5.2")):
        assert _trtexec(root, precision, version).exit_code == 0
    int8 = {"trtexec.int8.8.5.2.sh", "trtexec.int8.10.3.0.sh", "calib.8.5.2.cache"}
    assert int8 <= set(Bundle.open(root).manifest["files"])
    (root / "calib.10.0.1.cache").write_text("left by an interrupted run\n")
    res = CliRunner().invoke(main, ["calibrate", "--int8", "--bundle", str(root), "--data", str(calibrated[1]),
                                    "--num", "6", "--force"])
    assert res.exit_code == 0, res.output
    files = Bundle.open(root).manifest["files"]
    assert not (int8 | {"calib.10.0.1.cache"}) & (set(files) | {p.name for p in root.iterdir()}), res.output
    assert "trtexec.fp16.8.5.2.sh" in files and (root / "trtexec.fp16.8.5.2.sh").exists()

    assert _trtexec(root, "int8", "8.5.2").exit_code == 0
    (root / "trtexec.fp32.9.9.9.sh").write_text("unlisted\n")
    official_rvm_like(tmp_path / "src.onnx")
    res = CliRunner().invoke(main, ["export", "--model", "rvm", "--from-onnx", str(tmp_path / "src.onnx"),
                                    "--height", str(H), "--width", str(W), "--out", str(root), "--force"])
    assert res.exit_code == 0, res.output
    left = {p.name for p in root.iterdir()} | set(Bundle.open(root).manifest["files"])
    assert not {n for n in left if n.startswith("trtexec.") or n.startswith("calib.")}, sorted(left)


@pytest.mark.parametrize("version", ["8.5.2", "10.3.0", "11.0.0"])
def test_trtexec_line_carries_the_workspace_limit_in_mib(calibrated, tmp_path, version):  # noqa: F811
    """build --workspace N (MiB, as build sets it: N << 20 bytes) -> --memPoolSize=workspace:N, no unit
    suffix: MiB in trtexec 8.5-10.0, and suffix-free means M from 10.1 (sampleOptions.cpp)."""
    import shutil

    root = tmp_path / "b"
    shutil.copytree(calibrated[0], root)
    res = _trtexec(root, "fp16", version, "--workspace", "512")
    assert res.exit_code == 0, res.output
    argv, kv = _flags(res.output)
    assert kv["memPoolSize"] == "workspace:512" and not any(a.startswith("--workspace") for a in argv)
    assert Bundle.open(root).manifest["files"][f"trtexec.fp16.{version}.sh"]["workspace_mb"] == 512
    res = _trtexec(root, "fp16", version, "--force")
    assert res.exit_code == 0 and "memPoolSize" not in _flags(res.output)[1]
