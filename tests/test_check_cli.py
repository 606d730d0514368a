"""`matting-deploy check` and the TensorRT-faithful INT8 plumbing on a real export + calibrate bundle.

The bundle is exported with `export --from-onnx` from a tiny official-like RVM graph and calibrated
with `calibrate --int8` (no ../shared, no network). Hand-made bundles each break one rule.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from matting_deploy.bundle import Bundle, StateSpec, trt_cache
from matting_deploy.check import (
    TARGETS,
    cache_coverage,
    default_fp32_ops,
    dq_int8,
    fp16_outside_qdq,
    intended_int8_convs,
)
from matting_deploy.check.emulate import fake_quant_weights, implicit_emulation
from matting_deploy.check.gate import KNOWN_GAPS, check_build
from matting_deploy.check.graph import ModelView
from matting_deploy.cli import main
from matting_deploy.errors import MattingDeployError
from matting_deploy.runtimes.onnxruntime_runner import OrtRunner, make_session
from tests.fixtures import make_calib_bundle, make_images, make_ppm_data, official_rvm_like
from tests.fixtures.bundles import io, write_bundle
from tests.test_check_rules import CLEAN_SCALES, fp32_model, header_for, qdq_model

H, W = 64, 96
RULE = "fp16-outside-qdq"


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """export --from-onnx + calibrate --int8 (default --trt-version) of a tiny official-like RVM."""
    tmp = tmp_path_factory.mktemp("real")
    official_rvm_like(tmp / "src.onnx")
    res = cli("export", "--model", "rvm", "--from-onnx", tmp / "src.onnx", "--height", H, "--width", W,
              "--fp16", "--out", tmp / "b")
    assert res.exit_code == 0, res.output
    data = make_images(tmp / "data")
    res = cli("calibrate", "--int8", "--bundle", tmp / "b", "--data", data, "--num", 6)
    assert res.exit_code == 0, res.output
    return tmp / "b", data


def _check_json(root, tmp_path, *args):
    out = tmp_path / "check.json"
    res = cli("check", "--bundle", root, "--json", out, "--force", *args)
    return res, json.loads(out.read_text())


@pytest.mark.parametrize("target", TARGETS)
def test_real_bundle_passes_check_for_every_target(calibrated, tmp_path, target):
    res, report = _check_json(calibrated[0], tmp_path, "--target", target)
    failed = {(r["artifact"], r["rule"]) for r in report["rules"] if r["ok"] is False}
    assert not failed and not KNOWN_GAPS, res.output
    assert res.exit_code == 0
    ran = {(r["artifact"], r["rule"]) for r in report["rules"] if r["ok"]}
    if target == "tensorrt-8.6":  # builds from model.onnx + calib.cache: the opset-19 file is not parsed
        assert {("calib.cache", r) for r in ("cache-header", "cache-coverage", "cache-stray-int8")} <= ran
        assert not any(a == "model.int8.onnx" for a, _ in ran)
    else:
        assert {("model.int8.onnx", r) for r in ("parser-ops", "dq-int8", "qdq-zero-point",
                                                 "weight-scale-axis", "qdq-fusable", RULE)} <= ran
    assert report["int8_mac_share"]["share"] > 0.5
    assert "all rules pass" in res.output


def test_real_int8_artifact_is_fp16_outside_qdq_with_fp32_io_and_state_update(calibrated):
    """ModelOpt-style: opset 19, FP16 scales and math, FP32 graph I/O, the recurrent update in FP32
    behind explicit Casts; onnxruntime runs it close to the FP32 model."""
    root, data = calibrated
    q = onnx.load(str(root / "model.int8.onnx"))
    assert max(o.version for o in q.opset_import if o.domain in ("", "ai.onnx")) == 19
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert all(v.type.tensor_type.elem_type == f32 for v in (*q.graph.input, *q.graph.output))
    inits = {i.name: i for i in q.graph.initializer}
    scales = [inits[n.input[1]].data_type for n in q.graph.node if n.op_type == "DequantizeLinear"]
    assert scales.count(f16) >= len(scales) - 2 > 0  # FP32 scales only inside the FP32 islands
    view = ModelView(q)
    state_update = [n for n in view.nodes if n.op_type == "Mul" and n.input[0] == "r1i"]
    assert state_update and view.elem_type(state_update[0].output[0]) == f32
    assert fp16_outside_qdq(q, default_fp32_ops()).ok
    assert not fp16_outside_qdq(onnx.load(str(root / "model.onnx")), default_fp32_ops()).ok
    bundle = Bundle.open(root)
    frame = np.random.default_rng(0).random((1, 3, H, W), dtype=np.float32)
    outs = {}
    for name in ("model.onnx", "model.int8.onnx"):
        with OrtRunner(root / name, bundle.states, bundle.downsample_ratio) as runner:
            for _ in range(3):
                outs[name] = runner.run(frame)
    diff = np.abs(outs["model.onnx"]["pha"] - outs["model.int8.onnx"]["pha"])
    assert diff.max() < 0.1 and outs["model.int8.onnx"]["pha"].dtype == np.float32


def test_every_dq_input_is_int8_and_bias_stays_float(calibrated, tmp_path):
    root = make_calib_bundle(tmp_path / "conv")  # Convs with biases
    assert cli("calibrate", "--int8", "--bundle", root, "--data", calibrated[1], "--num", 6).exit_code == 0
    q = onnx.load(str(root / "model.int8.onnx"))
    assert dq_int8(q).ok
    inits = {i.name: i for i in q.graph.initializer}
    dqs = [n for n in q.graph.node if n.op_type == "DequantizeLinear"]
    assert dqs and all(inits[n.input[2]].data_type == onnx.TensorProto.INT8 for n in dqs)
    convs = [n for n in q.graph.node if n.op_type == "Conv" and len(n.input) > 2]
    # float bias (FP16 like everything outside Q/DQ), not an INT32 DQ
    assert convs and all(inits[n.input[2]].data_type == onnx.TensorProto.FLOAT16 for n in convs)


def test_cache_covers_both_sides_and_carries_the_requested_version(calibrated, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(calibrated[0], root)
    res = cli("calibrate", "--int8", "--bundle", root, "--data", calibrated[1], "--num", 6,
              "--trt-version", "8.5.2", "--force")
    assert res.exit_code == 0, res.output
    header, scales = trt_cache.parse_cache((root / "calib.cache").read_text())
    assert header == "TRT-8502-EntropyCalibration2"
    fp32, q = (onnx.load(str(root / f)) for f in ("model.onnx", "model.int8.onnx"))
    intended = intended_int8_convs(q)
    assert intended and cache_coverage(fp32, scales, intended).ok
    info = json.loads((root / "calib.json").read_text())
    assert set(info["tensorrt"]["int8_convs"]) == intended
    sides = info["tensorrt"]["conv_sides"]
    for conv in intended:  # recorded with their scales, the output after the fused activation
        assert sides[conv]["input"] in scales and sides[conv]["output"] in scales
        assert "output" in info["tensors"][sides[conv]["output"]]["side"]
    assert info["tensorrt"]["cache_version"] == "8.5.2"
    assert cli("check", "--bundle", root, "--trt-version", "8.5.2").exit_code == 0
    res = cli("check", "--bundle", root, "--target", "tensorrt-8.6")  # 8.6.1 would skip this cache
    assert res.exit_code == 1 and "cache-header" in res.output and "TRT-8601" in res.output


# --- hand-made bundles, each breaking one rule ------------------------------------------------

def _bundle(root, fp32=None, int8=None, cache=None, state=(1, 4, 8, 8)):
    writers = {"fp32": lambda p: onnx.save(fp32 or fp32_model(state=state), str(p))}
    if int8 is not None:
        writers["int8"] = lambda p: onnx.save(int8, str(p))
    out = write_bundle(root, "rvm", 8, 8, writers, [io("src", [1, 3, 8, 8])], [io("pha", [1, 1, 8, 8])],
                       [StateSpec("r1i", "r1o", tuple(state))])
    if cache is not None:
        (out / "calib.cache").write_text(trt_cache.format_cache(cache[1], int(cache[0].split("-")[1])))
    return out


@pytest.mark.parametrize("target, make, rule", [
    ("tensorrt-10", lambda r: _bundle(r, int8=qdq_model(bias_int32=True)), "dq-int8"),
    ("tensorrt-10", lambda r: _bundle(r, int8=qdq_model(zp=3)), "qdq-zero-point"),
    ("tensorrt-11", lambda r: _bundle(r, int8=qdq_model(w1_axis=1)), "weight-scale-axis"),
    ("tensorrt-10", lambda r: _bundle(r, int8=qdq_model(act_per_channel=True)), "activation-per-tensor"),
    ("tensorrt-10", lambda r: _bundle(r, int8=qdq_model(resize_qdq=True)), "qdq-fusable"),
    ("tensorrt-11", lambda r: _bundle(r, int8=qdq_model(conv2_fp32=True)), "fp16-outside-qdq"),
    ("tensorrt-8.6", lambda r: _bundle(r, state=(1, 1, 1, 1)), "state-shapes"),
    ("tensorrt-8.6", lambda r: _bundle(r, int8=qdq_model(), cache=(header_for("tensorrt-10", "10.0.1"),
                                                                     CLEAN_SCALES)), "cache-header"),
    ("tensorrt-8.6", lambda r: _bundle(r, int8=qdq_model(), cache=(header_for("tensorrt-8.6"), {
        k: v for k, v in CLEAN_SCALES.items() if k != "pha"})), "cache-coverage"),
])
def test_check_names_the_broken_rule_and_exits_1(tmp_path, target, make, rule):
    root = make(tmp_path / "b")
    res = cli("check", "--bundle", root, "--target", target)
    assert res.exit_code == 1, res.output
    failing = [ln for ln in res.output.splitlines() if " FAIL " in ln]
    assert any(f" {rule} " in ln for ln in failing) and rule in res.output.splitlines()[-1]


def test_clean_hand_made_bundle_exits_0(tmp_path):
    root = _bundle(tmp_path / "b", int8=qdq_model(), cache=(header_for("tensorrt-8.6"), CLEAN_SCALES))
    res = cli("check", "--bundle", root, "--target", "tensorrt-8.6")
    assert res.exit_code == 0 and "all rules pass" in res.output, res.output


def test_bad_input_exits_2_with_one_line(tmp_path):
    res = cli("check", "--bundle", tmp_path / "nope")
    assert res.exit_code == 2 and res.output.startswith("error: ") and len(res.output.splitlines()) == 1
    root = _bundle(tmp_path / "b")
    res = cli("check", "--bundle", root, "--target", "tensorrt-8.6", "--trt-version", "10.3.0")
    assert res.exit_code == 2 and "not in the tensorrt-8.6 line" in res.output
    (root / "model.onnx").write_bytes(b"changed")
    res = cli("check", "--bundle", root)
    assert res.exit_code == 2 and "sha256 differs" in res.output
    (tmp_path / "out.json").write_text("{}")
    res = cli("check", "--bundle", _bundle(tmp_path / "c"), "--json", tmp_path / "out.json")
    assert res.exit_code == 2 and "already exists" in res.output


def test_build_gate_refuses_an_artifact_breaking_its_targets_rules(tmp_path):
    root = _bundle(tmp_path / "b", int8=qdq_model(bias_int32=True))
    with pytest.raises(MattingDeployError, match=r"model.int8.onnx: fails TensorRT 10.3.0 rule dq-int8"):
        check_build(root, "int8", False, "10.3.0.26")
    warned = []
    assert check_build(root, "fp32", False, "10.3.0", warn=warned.append).ok
    assert check_build(root, "fp32", False, "9.2.0", warn=warned.append) is None
    assert "not checked" in warned[-1]
    # implicit: the cache is checked as build feeds it, re-headed for the running TensorRT
    cached = _bundle(tmp_path / "c", int8=qdq_model(), cache=(header_for("tensorrt-8.6"), CLEAN_SCALES))
    assert check_build(cached, "fp32", True, "8.5.2.2").ok


# --- scoring what the engine runs ----------------------------------------------------------------

def test_implicit_emulation_quantizes_int8_convs_and_rounds_the_rest_to_fp16():
    w = np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)
    fq = fake_quant_weights(w, 0)
    for c in range(4):  # per output channel: 127 steps of max|w| / 127
        step = np.abs(w[c]).max() / 127
        assert np.allclose(fq[c] / step, np.round(fq[c] / step), atol=1e-3) and np.abs(fq[c]).max() > 0
    model = fp32_model()
    emu = implicit_emulation(model, CLEAN_SCALES)
    onnx.checker.check_model(emu)
    quantized = {n.input[0] for n in emu.graph.node if n.op_type == "QuantizeLinear"}
    assert quantized == {"src", "a1"}  # the INT8 Convs' inputs; their outputs are FP16 (build constrains them)
    assert "pha" in {n.output[0] for n in emu.graph.node if n.op_type == "Cast"}  # FP16-rounded, not INT8
    pinned = implicit_emulation(model, CLEAN_SCALES, int8_layers={"conv1"})
    assert {n.input[0] for n in pinned.graph.node if n.op_type == "QuantizeLinear"} == {"src"}

    feed = {"src": np.random.default_rng(1).random((1, 3, 8, 8), dtype=np.float32),
            "r1i": np.zeros((1, 4, 8, 8), np.float32)}
    runs = [make_session(m.SerializeToString()).run(["pha"], feed)[0]
            for m in (model, implicit_emulation(model, CLEAN_SCALES, int8_layers=set()), emu)]
    fp16_only, int8 = np.abs(runs[1] - runs[0]).max(), np.abs(runs[2] - runs[0]).max()
    assert 0 < fp16_only < 1e-2 and int8 > fp16_only


def test_validate_adds_the_implicit_emulated_row(calibrated, tmp_path):
    data = make_ppm_data(tmp_path / "ppm", size=(W, H))
    res = cli("validate", "--bundle", calibrated[0], "--data", data, "--report", tmp_path / "r",
              "--max-mse-ratio", 100, "--max-miou-drop", 1)
    assert res.exit_code == 0, res.output
    assert "| int8 (cpu) " in res.output and "| int8 implicit-emulated (cpu) " in res.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    rows = {(r["artifact"], r["backend"]) for r in report["results"]}
    assert ("int8 implicit-emulated", "cpu") in rows
    shares = report["int8_mac_share"]
    assert shares["int8 implicit-emulated (cpu)"]["share"] == pytest.approx(shares["int8 (cpu)"]["share"])
    assert "of convolution MACs in INT8" in res.output


def test_calib_json_and_manifest_record_the_int8_mac_share(calibrated):
    info = json.loads((calibrated[0] / "calib.json").read_text())
    share = info["tensorrt"]["int8_mac_share"]
    assert share["mode"] == "qdq" and 0 < share["share"] <= 1 and share["int8_convs"] >= 1
    assert Bundle.open(calibrated[0]).manifest["calibration"]["int8_mac_share"] == round(share["share"], 4)
