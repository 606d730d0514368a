"""CPU INT8 artifact (issue 13): integer convolutions after onnxruntime's optimisation, close to
FP32, written from cached statistics; the artifact in calibrate, runners, validate, bench and check.
Fixtures are generated; nothing from ../shared."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from matting_deploy.bundle import Bundle, ranges_cache
from matting_deploy.cli import main
from matting_deploy.errors import MattingDeployError
from matting_deploy.fileio import sha256_file
from matting_deploy.quantize import collect, cpu_target, implicit, qdq
from matting_deploy.quantize.recipe import Recipe
from matting_deploy.runtimes.open import open_runner
from tests.fixtures import make_images, make_ppm_data, official_rvm_like

H, W = 32, 24
FLOAT = {"stem"}
TRT_RECIPE = Recipe("t", op_types=("Conv",), no_output_qdq=("Conv",), range_guard=3.0)


def _conv(name, x, cin, cout, rng, k=3, group=1, act=None):
    w = (rng.standard_normal((cout, cin // group, k, k)) / np.sqrt(cin // group * k * k)).astype(np.float32)
    b = (0.1 * rng.standard_normal(cout)).astype(np.float32)
    inits = [numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(b, f"{name}_b")]
    nodes = [helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [f"{name}_y"], name=name,
                              pads=[k // 2] * 4, group=group)]
    out = f"{name}_y"
    if act == "relu":
        nodes.append(helper.make_node("Relu", [out], [f"{name}_r"], name=f"{name}_relu"))
        out = f"{name}_r"
    elif act == "hardswish":
        nodes += [helper.make_node("HardSigmoid", [out], [f"{name}_hs"], name=f"{name}_hsig",
                                   alpha=1 / 6, beta=0.5),
                  helper.make_node("Mul", [out, f"{name}_hs"], [f"{name}_m"], name=f"{name}_hsw")]
        out = f"{name}_m"
    return nodes, inits, out


def tiny_model(path) -> None:
    """src -> stem Conv+Relu (kept float) -> depthwise -> pointwise+hardswish -> Conv+Relu
    -> residual Add -> Conv -> Sigmoid = pha. Static shapes, opset 17."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "src"
    for name, cin, cout, k, group, act in (("stem", 3, 16, 3, 1, "relu"), ("dw", 16, 16, 3, 16, "relu"),
                                           ("pw", 16, 24, 1, 1, "hardswish"), ("c2", 24, 24, 3, 1, "relu")):
        n, i, x = _conv(name, x, cin, cout, rng, k, group, act)
        nodes, inits = nodes + n, inits + i
    nodes.append(helper.make_node("Add", [x, "pw_m"], ["res"], name="res_add"))
    n, i, y = _conv("head", "res", 24, 1, rng, 3)
    nodes += n + [helper.make_node("Sigmoid", [y], ["pha"], name="out_sigmoid")]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("src", TensorProto.FLOAT, [1, 3, H, W])],
        [helper.make_tensor_value_info("pha", TensorProto.FLOAT, [1, 1, H, W])], inits + i)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(onnx.shape_inference.infer_shapes(model), str(path))


class _Reader:
    """The feeder's interface (``done``, ``next_chunk``, ``get_next``, ``used``) over random images,
    all in one chunk."""

    def __init__(self, n=6, seed=1):
        rng = np.random.default_rng(seed)
        self.todo = [{"src": rng.random((1, 3, H, W), dtype=np.float32)} for _ in range(n)]
        self.used: list = []
        self.done = False

    def next_chunk(self):
        self.done = True

    def get_next(self):
        if self.todo:
            self.used.append(self.todo.pop())
            return self.used[-1]
        return None


def _no_calibration(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("the CPU artifact must not recalibrate")

    monkeypatch.setattr(collect, "collect_ranges", fail)
    monkeypatch.setattr(collect, "make_calibrator", fail)


def optimized_ops(path, tmp_path) -> Counter:
    """Op types of the graph onnxruntime's CPU provider runs (ORT_ENABLE_ALL)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    opts.log_severity_level = 3
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """One statistics pass over the union of both targets' tensors, stored in the bundle cache."""
    root = tmp_path_factory.mktemp("bundle")
    fp32 = root / "fp32.onnx"
    tiny_model(fp32)
    trt = qdq.quantized_tensors(fp32, TRT_RECIPE, FLOAT)
    outputs = implicit.planned_outputs(onnx.load(str(fp32)), trt, FLOAT, TRT_RECIPE.op_types)
    tensors = trt | outputs | cpu_target.cpu_tensors(fp32, FLOAT)
    ranges, sources = collect.collect_ranges(fp32, "entropy", tensors, TRT_RECIPE, _Reader())
    ranges_cache.store(root, "k", {"ranges": ranges, "sources": sources})
    return root, fp32, trt, tensors


def test_union_covers_both_targets(calibrated):
    root, fp32, trt, tensors = calibrated
    cpu = cpu_target.cpu_tensors(fp32, FLOAT)
    assert trt < tensors and cpu <= tensors
    assert {"c2_y", "head_y"} <= cpu - trt  # Conv outputs: the TensorRT Q/DQ recipe does not need them
    assert "stem_y" not in tensors  # the float stem's output is quantized by neither


def test_cpu_artifact_has_integer_convs_and_stays_close_to_fp32(calibrated, tmp_path, monkeypatch):
    root, fp32, _, _ = calibrated
    _no_calibration(monkeypatch)
    entry = ranges_cache.load(root, "k", calibrated[3])
    out = cpu_target.write_cpu_int8(fp32, tmp_path / "model.int8-cpu.onnx", entry["ranges"], FLOAT)

    ops = optimized_ops(out, tmp_path)
    # every quantized Conv (dw, pw, c2, head) became an integer convolution; the stem stays float
    assert ops["QLinearConv"] == 4, ops
    assert ops["Conv"] + ops["FusedConv"] == 1, ops
    assert ops["ConvInteger"] == 0
    qdq.write_qdq(fp32, tmp_path / "trt.onnx", {t: entry["ranges"][t] for t in calibrated[2]}, "entropy",
                  TRT_RECIPE, FLOAT)
    trt_ops = optimized_ops(tmp_path / "trt.onnx", tmp_path)
    assert trt_ops["QLinearConv"] == 0  # the TensorRT recipe leaves onnxruntime nothing to fuse

    src = np.random.default_rng(7).random((1, 3, H, W), dtype=np.float32)
    ref = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, {"src": src})[0]
    q = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"src": src})[0]
    assert q.shape == ref.shape
    err = np.abs(q - ref)
    assert err.mean() < 0.01 and err.max() < 0.05, (err.mean(), err.max())
    assert np.abs(ref - ref.mean()).mean() > 5 * err.mean()  # the output is not trivially flat


def test_missing_statistics_is_an_error(calibrated, tmp_path):
    root, fp32, _, tensors = calibrated
    ranges = ranges_cache.load(root, "k", tensors)["ranges"]
    ranges.pop("c2_y")
    with pytest.raises(MattingDeployError, match="c2_y"):
        cpu_target.write_cpu_int8(fp32, tmp_path / "x.onnx", ranges, FLOAT)
    assert not (tmp_path / "x.onnx").exists()


def test_asymmetric_ranges_include_zero():
    out = cpu_target.asymmetric_ranges({"a": (0.5, 3.0), "b": (-1.0, 2.0), "c": (0.0, 0.0)})
    assert out == {"a": (0.0, 3.0), "b": (-1.0, 2.0), "c": (0.0, 1e-6)}


# --- the artifact through the commands, on an exported official-like RVM --------------------------

BH, BW = 64, 96


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """export --from-onnx, calibrate --int8 (TensorRT), then calibrate --int8 --target cpu with the
    calibrators patched to fail: the CPU artifact must come from the cached statistics."""
    tmp = tmp_path_factory.mktemp("cli")
    official_rvm_like(tmp / "src.onnx")
    res = cli("export", "--model", "rvm", "--from-onnx", tmp / "src.onnx", "--height", BH, "--width", BW,
              "--out", tmp / "b")
    assert res.exit_code == 0, res.output
    data = make_images(tmp / "data")
    res = cli("calibrate", "--int8", "--bundle", tmp / "b", "--data", data, "--num", 6)
    assert res.exit_code == 0, res.output
    before = sha256_file(tmp / "b" / "model.int8.onnx")
    with pytest.MonkeyPatch.context() as mp:
        _no_calibration(mp)
        res = cli("calibrate", "--int8", "--target", "cpu", "--bundle", tmp / "b", "--data", data, "--num", 6)
    assert res.exit_code == 0, res.output
    assert "reusing cached ranges" in res.output and "wrote model.int8-cpu.onnx, calib.json" in res.output
    assert sha256_file(tmp / "b" / "model.int8.onnx") == before  # the TensorRT artifact is untouched
    return tmp / "b", data


def test_calibrate_target_cpu_joins_the_bundle(bundle, tmp_path):
    root, data = bundle
    b = Bundle.open(root)
    assert b.artifacts["int8-cpu"] == "model.int8-cpu.onnx"
    assert list(b.onnx_artifacts()) == ["fp32", "int8", "int8-cpu"]
    assert b.manifest["files"]["model.int8-cpu.onnx"]["sha256"] == sha256_file(root / "model.int8-cpu.onnx")
    info = json.loads((root / "calib.json").read_text())
    assert info["tensorrt"]["int8_convs"]  # the TensorRT part of calib.json is kept
    cpu = info["cpu"]
    assert cpu["cache_hit"] is True and cpu["cache_key"] == info["cache_key"]
    assert cpu["activations"] == "uint8 asymmetric" and cpu["tensors"] > len(info["tensors"]) // 2
    # the TensorRT recipe's float nodes, and the Convs writing full-size tensors (the full-size rule)
    fp32 = onnx.shape_inference.infer_shapes(onnx.load(root / "model.onnx"))
    convs = {n.output[0]: n.name for n in fp32.graph.node if n.op_type == "Conv"}
    sizes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim][2:] for v in fp32.graph.value_info}
    extra = set(cpu["float_nodes"]) - set(info["float_nodes"])
    assert set(info["float_nodes"]) <= set(cpu["float_nodes"]) and extra
    assert extra == {name for out, name in convs.items() if sizes.get(out) == [b.input_hw[0], b.input_hw[1]]}
    assert b.manifest["calibration"]["cpu"]["cache_key"] == info["cache_key"]
    ops = optimized_ops(root / "model.int8-cpu.onnx", tmp_path)
    assert ops["QLinearConv"] >= 4, ops

    again = cli("calibrate", "--int8", "--target", "cpu", "--bundle", root, "--data", data, "--num", 6)
    assert again.exit_code == 2 and "model.int8-cpu.onnx: already exists" in again.output
    bad = cli("calibrate", "--int8", "--target", "cpu", "--bundle", root, "--data", data, "--max-drift", 1e-4)
    assert bad.exit_code == 2 and bad.output.strip().splitlines()[-1].startswith("error: --max-drift:")


def test_target_cpu_first_then_tensorrt_reuses_and_keeps_the_cpu_section(tmp_path, monkeypatch):
    official_rvm_like(tmp_path / "src.onnx")
    assert cli("export", "--model", "rvm", "--from-onnx", tmp_path / "src.onnx", "--height", BH, "--width", BW,
               "--out", tmp_path / "b").exit_code == 0
    data = make_images(tmp_path / "data")
    res = cli("calibrate", "--int8", "--target", "cpu", "--bundle", tmp_path / "b", "--data", data, "--num", 4)
    assert res.exit_code == 0, res.output
    assert "calibration: entropy ranges (" in res.output and not (tmp_path / "b" / "model.int8.onnx").exists()
    cpu_sha = sha256_file(tmp_path / "b" / "model.int8-cpu.onnx")
    _no_calibration(monkeypatch)
    res = cli("calibrate", "--int8", "--bundle", tmp_path / "b", "--data", data, "--num", 4)
    assert res.exit_code == 0, res.output  # calib.json is shared: no --force needed
    assert "reusing cached ranges" in res.output
    info = json.loads((tmp_path / "b" / "calib.json").read_text())
    assert info["cpu"]["cache_hit"] is False and "tensorrt" in info
    assert sha256_file(tmp_path / "b" / "model.int8-cpu.onnx") == cpu_sha


def test_runners_open_it_on_onnxruntime_and_tensorrt_refuses(bundle):
    root, _ = bundle
    src = np.random.default_rng(0).random((1, 3, BH, BW), dtype=np.float32)
    with open_runner(root, "int8-cpu", "cpu") as q, open_runner(root, "fp32", "cpu") as f:
        diff = np.abs(q.run(src)["pha"] - f.run(src)["pha"]).mean()
    assert diff < 0.05
    with pytest.raises(MattingDeployError, match="^int8-cpu: not a TensorRT artifact"):
        open_runner(root, "int8-cpu", "tensorrt")
    res = cli("bench", "--bundle", root, "--artifacts", "int8-cpu", "--backend", "tensorrt", "--iters", 1)
    assert res.exit_code == 2 and res.output.strip().splitlines()[-1].startswith(
        "error: int8-cpu: not a TensorRT artifact")


def test_only_the_cpu_artifact_gets_onnxruntimes_qdq_rewrites(bundle):
    """TensorRT reads model.int8.onnx as plain Q/DQ arithmetic: onnxruntime must not rewrite it
    (its CPU transforms quantize the FP16 Conv biases to INT32, which TensorRT never does)."""
    root, _ = bundle

    def disabled(artifact):
        with open_runner(root, artifact, "cpu") as r:
            entries = r.session.get_session_options().get_session_config_entry
            try:
                return entries("session.disable_quant_qdq")
            except RuntimeError:  # never set: onnxruntime's default (rewrites on)
                return "0"

    assert disabled("int8") == "1" and disabled("fp32") == "1"
    assert disabled("int8-cpu") != "1"  # QLinearConv needs them


def test_validate_scores_it_with_the_same_gates(bundle, tmp_path):
    root, _ = bundle
    data = make_ppm_data(tmp_path / "ppm", size=(BW, BH))
    res = cli("validate", "--bundle", root, "--data", data, "--report", tmp_path / "r",
              "--max-mse-ratio", 100, "--max-miou-drop", 1)
    assert res.exit_code == 0, res.output
    assert "| int8-cpu (cpu) " in res.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    row = next(r for r in report["results"] if r["artifact"] == "int8-cpu")
    int8 = next(r for r in report["results"] if r["artifact"] == "int8")
    assert {e["metric"] for e in row["drift"]} == {e["metric"] for e in int8["drift"]}
    assert next(e for e in row["drift"] if e["metric"] == "mse")["limit"] == 100


def test_bench_default_rows_speedup_and_profile_ops(bundle, tmp_path):
    root, _ = bundle
    out = tmp_path / "bench.json"
    res = cli("bench", "--bundle", root, "--iters", 2, "--warmup", 1, "--profile-ops", 2, "--json", out)
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert [r["artifact"] for r in result["rows"]] == ["fp32", "int8", "int8-cpu"]
    assert "INT8-CPU: " in res.output and "than FP32 (p50)" in res.output
    prof = result["op_profile_ms"]
    assert "QLinearConv" in prof["int8-cpu"] and "QLinearConv" not in prof["fp32"]
    assert all(v >= 0 for p in prof.values() for v in p.values()) and sum(prof["fp32"].values()) > 0
    assert "per-op-type kernel time" in res.output and "int8-cpu ms/run" in res.output
    bad = cli("bench", "--bundle", root, "--backend", "tensorrt", "--profile-ops", 2)
    assert bad.exit_code == 2 and "--profile-ops" in bad.output


def test_check_marks_it_not_a_tensorrt_artifact(bundle, tmp_path):
    root, _ = bundle
    out = tmp_path / "check.json"
    res = cli("check", "--bundle", root, "--target", "tensorrt-10", "--json", out)
    report = json.loads(out.read_text())
    rows = [r for r in report["rules"] if r["artifact"] == "model.int8-cpu.onnx"]
    assert len(rows) == 1 and rows[0]["ok"] is None and "not a TensorRT artifact" in rows[0]["detail"]
    assert "model.int8-cpu.onnx" in res.output


def test_full_size_rule_picks_the_convs_writing_the_input_size():
    """The CPU target's ``full-size`` rule: Convs whose output has ``src``'s spatial size."""
    from matting_deploy.quantize.recipe import excluded_nodes

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    for name, x, cin, stride in (("down", "src", 3, 2), ("mid", "down_y", 4, 1), ("out", "up", 4, 1)):
        w = numpy_helper.from_array(rng.normal(size=(4, cin, 3, 3)).astype(np.float32), f"{name}_w")
        inits.append(w)
        nodes.append(helper.make_node("Conv", [x, w.name], [f"{name}_y"], name=name, pads=[1] * 4,
                                      strides=[stride] * 2))
    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "twice"))
    nodes.insert(2, helper.make_node("Resize", ["mid_y", "", "twice"], ["up"], name="resize", mode="linear"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("src", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out_y", TensorProto.FLOAT, None)], inits)
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert excluded_nodes(model, Recipe("t", exclude_rules=("full-size",))) == {"out"}


def test_layouts_bench_times_every_layout(bundle, capsys):
    """bench/int8_cpu_layouts.py on the calibrated fixture: a row per layout, counts from the
    optimised graphs (every-conv leaves no float Conv; the shipped row is the bundle's file)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "int8_cpu_layouts.py"
    spec = importlib.util.spec_from_file_location("int8_cpu_layouts", script)
    layouts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layouts)
    root, _ = bundle
    assert layouts.main(["--bundle", str(root), "--iters", "2", "--warmup", "1"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert list(rows) == ["fp32", "shipped", "shipped+tiny-float", "shipped-full-int8", "every-conv",
                          "every-conv+eltwise"]
    assert rows["fp32"][1] == "0" and int(rows["fp32"][2]) > 0 and rows["fp32"][-1] == "1.00x"
    assert rows["every-conv"][2] == "0" and int(rows["every-conv"][1]) > int(rows["shipped"][1]) > 0


def test_a_recipe_names_only_known_rules():
    from matting_deploy.quantize.recipe import RULES

    assert {"early", "refiner", "pixels", "full-size"} <= set(RULES)
    with pytest.raises(ValueError, match="unknown rule.*'?stemm'?"):
        Recipe("typo", exclude_rules=("stemm",))
