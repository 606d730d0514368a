"""matting_deploy.check: TensorRT's rules on hand-made ONNX graphs (no torch, no TensorRT).

Each rule gets a model that breaks it (the rule must fail and name the offending node), and one
clean tiny bundle (FP32, FP16, hand-written FP16-outside-Q/DQ INT8, a cache covering both sides of
each Conv) must pass every rule for every target. A Conv-ReLU-Conv quantized by onnxruntime's
``quantize_static`` passes the Q/DQ rules with QuantizeBias off and fails dq-int8 with it on.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from matting_deploy.check import (
    TARGETS,
    activation_per_tensor,
    attribute_support,
    cache_coverage,
    cache_header,
    cache_stray,
    cache_version_code,
    check_bundle,
    constant_ratio,
    dq_int8,
    fp16_outside_qdq,
    fp32_islands,
    fused_output,
    int8_mac_share,
    intended_int8_convs,
    op_support,
    qdq_fusable,
    render_table,
    resolve_target,
    state_shapes,
    static_shapes,
    weight_scale_axis,
    zero_points,
)
from matting_deploy.check.graph import ModelView
from matting_deploy.check.support import support_data
from matting_deploy.errors import MattingDeployError

F32, F16, I8, I32 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT8, TensorProto.INT32
RNG = np.random.default_rng(0)
FP32_OPS = ("Resize", "ReduceMean")


def vi(name, shape, t=F32):
    return helper.make_tensor_value_info(name, t, shape)


def const(name, arr, dtype=None):
    return numpy_helper.from_array(np.asarray(arr, dtype=dtype), name)


def make(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "t", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def conv(name, x, w, b, y):
    return helper.make_node("Conv", [x, w, b], [y], name=name, pads=[1, 1, 1, 1])


def fp32_model(opset=17, state=(1, 4, 8, 8)):
    """src -> conv1 -> Relu -> a1 -> conv2 -> Sigmoid -> pha; r1o = a1 + r1i; low = Resize(src)."""
    inits = [const("w1", RNG.normal(size=(4, 3, 3, 3)), np.float32), const("b1", np.zeros(4), np.float32),
             const("w2", RNG.normal(size=(1, 4, 3, 3)), np.float32), const("b2", np.zeros(1), np.float32),
             const("scales", [1, 1, 0.5, 0.5], np.float32)]
    nodes = [conv("conv1", "src", "w1", "b1", "c1"), helper.make_node("Relu", ["c1"], ["a1"], name="relu1"),
             helper.make_node("Add", ["a1", "r1i"], ["r1o"], name="add"),
             conv("conv2", "a1", "w2", "b2", "c2"), helper.make_node("Sigmoid", ["c2"], ["pha"], name="sig"),
             helper.make_node("Resize", ["src", "", "scales"], ["low"], name="resize", mode="linear")]
    return make(nodes, [vi("src", [1, 3, 8, 8]), vi("r1i", list(state))],
                [vi("pha", [1, 1, 8, 8]), vi("r1o", [1, 4, 8, 8]), vi("low", [1, 3, 4, 4])], inits, opset)


def qdq_pair(x, scale, zp, y, name, axis=None):
    kw = {} if axis is None else {"axis": axis}
    return [helper.make_node("QuantizeLinear", [x, scale, zp], [f"{y}_q"], name=f"{name}_q", **kw),
            helper.make_node("DequantizeLinear", [f"{y}_q", scale, zp], [y], name=f"{name}_dq", **kw)]


def qdq_model(bias_int32=False, zp=0, w1_axis=0, act_per_channel=False, conv2_fp32=False,
              resize_qdq=False, conv2_float_input=False, conv2_island=False):
    """fp32_model quantized as TensorRT wants it: FP16 outside Q/DQ, INT8 per-channel weights,
    per-tensor activations, float bias, FP32 graph inputs/outputs. Options break one rule each;
    ``conv2_island`` keeps conv2 (and its Q/DQ) FP32 behind an explicit Cast, which is allowed."""
    conv2_fp32 = conv2_fp32 or conv2_island
    t2 = F32 if conv2_fp32 else F16
    h = np.float32 if conv2_fp32 else np.float16
    w1 = RNG.integers(-127, 128, size=(4, 3, 3, 3))
    inits = [const("xs1", 0.02, np.float16), const("zp1", zp, np.int8),
             const("w1q", w1, np.int8), const("ws1", np.full(4, 0.01), np.float16), const("wz1", np.zeros(4), np.int8),
             const("b1", np.zeros(4), np.float16),
             const("xs2q", 0.05, np.float16), const("xs2", 0.05, h), const("zp2", 0, np.int8),
             const("w2q", RNG.integers(-127, 128, size=(1, 4, 3, 3)), np.int8), const("ws2", [0.01], h),
             const("wz2", [0], np.int8), const("b2", [0], h), const("scales", [1, 1, 0.5, 0.5], np.float32)]
    nodes = [helper.make_node("Cast", ["src"], ["s16"], name="cast_src", to=F16),
             helper.make_node("Cast", ["r1i"], ["r16"], name="cast_r1i", to=F16)]
    if act_per_channel:
        inits += [const("xs1c", np.full(3, 0.02), np.float16), const("zp1c", np.zeros(3), np.int8)]
        nodes += qdq_pair("s16", "xs1c", "zp1c", "d1", "x1", axis=1)
    else:
        nodes += qdq_pair("s16", "xs1", "zp1", "d1", "x1")
    if w1_axis != 0:  # scales along the input-channel axis (3 channels)
        inits += [const("ws1b", np.full(3, 0.01), np.float16), const("wz1b", np.zeros(3), np.int8)]
    w1_scale = ["ws1b", "wz1b"] if w1_axis else ["ws1", "wz1"]
    nodes.append(helper.make_node("DequantizeLinear", ["w1q", *w1_scale], ["w1d"], name="w1_dq", axis=w1_axis))
    bias1 = "b1"
    if bias_int32:
        inits += [const("b1q", np.arange(4), np.int32), const("bs1", np.full(4, 2e-4), np.float16),
                  const("bz1", np.zeros(4), np.int32)]
        nodes.append(helper.make_node("DequantizeLinear", ["b1q", "bs1", "bz1"], ["b1d"], name="b1_dq", axis=0))
        bias1 = "b1d"
    nodes += [conv("conv1", "d1", "w1d", bias1, "c1"), helper.make_node("Relu", ["c1"], ["a1"], name="relu1"),
              helper.make_node("Add", ["a1", "r16"], ["r1o16"], name="add"),
              helper.make_node("Cast", ["r1o16"], ["r1o"], name="cast_r1o", to=F32),
              *([helper.make_node("Cast", ["a1"], ["a1f"], name="cast_a1f", to=F32)] if conv2_island else []),
              helper.make_node("QuantizeLinear", ["a1f" if conv2_island else "a1", "xs2" if conv2_island else "xs2q",
                                                  "zp2"], ["a1_q"], name="x2_q"),
              helper.make_node("DequantizeLinear", ["a1_q", "xs2", "zp2"], ["d2"], name="x2_dq"),
              helper.make_node("DequantizeLinear", ["w2q", "ws2", "wz2"], ["w2d"], name="w2_dq", axis=0)]
    if conv2_float_input:
        nodes.append(helper.make_node("Cast", ["a1"], ["a1c"], name="cast_a1", to=t2))
    nodes.append(conv("conv2", "a1c" if conv2_float_input else "d2", "w2d", "b2", "c2"))
    if resize_qdq:
        inits.append(const("xs3", 0.05, np.float32))
        nodes += qdq_pair("src", "xs3", "zp2", "src_d", "x3")
    nodes += [helper.make_node("Sigmoid", ["c2"], ["p"], name="sig"),
              helper.make_node("Cast", ["p"], ["pha"], name="cast_pha", to=F32),
              helper.make_node("Resize", ["src_d" if resize_qdq else "src", "", "scales"], ["low"], name="resize",
                               mode="linear")]
    return make(nodes, [vi("src", [1, 3, 8, 8]), vi("r1i", [1, 4, 8, 8])],
                [vi("pha", [1, 1, 8, 8]), vi("r1o", [1, 4, 8, 8]), vi("low", [1, 3, 4, 4])], inits, opset=19)


CLEAN_SCALES = {"src": 0.02, "c1": 0.1, "a1": 0.05, "c2": 0.1, "pha": 1 / 127}


def header_for(target, version=None):
    return f"TRT-{resolve_target(target, version).cache_code}-EntropyCalibration2"


@pytest.fixture(scope="module")
def clean():
    from matting_deploy.export.fp16 import to_fp16

    fp32 = fp32_model()
    return {"fp32": fp32, "fp16": to_fp16(fp32), "int8": qdq_model()}


# --- the clean bundle and the data -----------------------------------------------------------

@pytest.mark.parametrize("target,version", [(t, None) for t in TARGETS] + [("tensorrt-8.6", "8.5.2"),
                                                                           ("tensorrt-10", "10.0.1"),
                                                                           ("tensorrt-10", "10.16.0")])
def test_clean_tiny_bundle_passes_every_rule_for_every_target(clean, target, version):
    cache = (header_for(target, version), CLEAN_SCALES)
    report = check_bundle(clean, target, trt_version=version, cache=cache)
    assert report.ok, render_table(report)
    ran = {r.rule for r in report.results if r.ok}
    assert {"parser-ops", "parser-attrs", "static-shapes", "state-shapes", "constant-ratio"} <= ran
    tgt = resolve_target(target, version)
    if tgt.implicit_int8:
        assert {"cache-header", "cache-coverage", "cache-stray-int8"} <= ran
        assert report.int8_mac_share["mode"] == "implicit"
    else:
        assert {"dq-int8", "qdq-zero-point", "weight-scale-axis", "activation-per-tensor", "qdq-fusable",
                "fp16-outside-qdq"} <= ran
    assert report.int8_mac_share["share"] == pytest.approx(1.0)
    js = report.to_json()
    assert js["ok"] and js["tensorrt"] == tgt.version_text and len(js["rules"]) == len(report.results)


def test_version_codes_and_targets():
    assert cache_version_code((8, 5, 2)) == 8502
    assert cache_version_code((8, 6, 1)) == 8601
    assert cache_version_code((10, 3, 0)) == 100300
    assert resolve_target("tensorrt-8.6").cache_code == 8601
    assert resolve_target("tensorrt-8.6", "8.5.2").table == "8.5"
    assert resolve_target("tensorrt-10", "10.0.1").implicit_int8
    assert resolve_target("tensorrt-10", "10.3").strongly_typed_int8
    assert resolve_target("tensorrt-11").strongly_typed_fp16
    with pytest.raises(MattingDeployError, match="not in the tensorrt-8.6 line"):
        resolve_target("tensorrt-8.6", "10.3")
    with pytest.raises(MattingDeployError, match="unknown target"):
        resolve_target("tensorrt-9")


def test_every_parser_table_names_its_source_commit():
    for key, table in support_data()["parser_tables"].items():
        assert len(table["commit"]) == 40 and table["commit"] in table["source"], key
        assert table["ops"]["Conv"]["supported"] and "INT8" in table["ops"]["DequantizeLinear"]["types"], key
    assert support_data()["quantization"]["weight_axis"] == {"Conv": 0, "ConvTranspose": 1}


def test_support_data_cites_code_that_exists():
    """A citation of our own code ("matting_deploy/x.py name") names a file and a def or constant in it."""
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = json.dumps(support_data())
    cited = re.findall(r"(matting_deploy/[\w/]+\.py)(?: (\w+))?", text)
    assert cited
    for path, name in cited:
        assert (root / path).is_file(), path
        source = (root / path).read_text()
        assert not name or re.search(rf"^(def {name}\(|{name} = )", source, re.M), f"{path} {name}"
    stated = re.search(r"trt_plan\.py plan_build: [^\"]*FP16 [^\"]*from (\d+)\.(\d+)", text)
    from matting_deploy.bundle.trt_plan import FP16_STRONGLY_TYPED

    assert stated and tuple(map(int, stated.groups())) == FP16_STRONGLY_TYPED


# --- parser rules ------------------------------------------------------------------------------

def test_unsupported_op_custom_op_and_opset_fail_naming_them():
    m = fp32_model()
    m.graph.node.append(helper.make_node("Unique", ["c1"], ["u"], name="uniq"))
    m.graph.node.append(helper.make_node("Foo", ["c1"], ["f"], name="plug", domain="com.example"))
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    r = op_support(m, "tensorrt-10")
    assert r.ok is False and {"uniq", "plug"} <= set(r.nodes)
    r = op_support(fp32_model(opset=18), "tensorrt-8.6")
    assert r.ok is False and r.nodes == ["model (opset 18)"]
    assert op_support(fp32_model(opset=18), "tensorrt-10").ok


def test_input_type_outside_the_table_fails():
    m = make([helper.make_node("Relu", ["x"], ["y"], name="relu_bf16")], [vi("x", [1, 4], TensorProto.BFLOAT16)],
             [vi("y", [1, 4], TensorProto.BFLOAT16)])
    r = op_support(m, "tensorrt-8.6")
    assert r.ok is False and r.nodes == ["relu_bf16"]
    assert op_support(m, "tensorrt-10").ok


def test_resize_mode_pad_mode_and_non_constant_axes_fail():
    m = fp32_model()
    m.graph.node.append(helper.make_node("Resize", ["src", "", "scales"], ["big"], name="crop",
                                         coordinate_transformation_mode="tf_crop_and_resize"))
    r = attribute_support(m, "tensorrt-11")
    assert r.ok is False and r.nodes == ["crop"] and "coordinate_transformation_mode=tf_crop_and_resize" in r.detail
    pads = const("pads", [0, 0, 1, 1, 0, 0, 1, 1], np.int64)
    pad = make([helper.make_node("Pad", ["x", "pads"], ["y"], name="pad_wrap", mode="wrap")],
               [vi("x", [1, 3, 4, 4])], [vi("y", [1, 3, 6, 6])], [pads], opset=19)
    assert attribute_support(pad, "tensorrt-8.6").nodes == ["pad_wrap"]
    assert attribute_support(pad, "tensorrt-10").ok
    rm = make([helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean_dyn_axes")],
              [vi("x", [1, 3, 4, 4]), vi("axes", [1], TensorProto.INT64)], [vi("y", None)], opset=18)
    r = attribute_support(rm, "tensorrt-10")
    assert r.ok is False and r.nodes == ["mean_dyn_axes"]


def test_symbolic_dims_fail_static_shapes():
    m = fp32_model()
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    r = static_shapes(m)
    assert r.ok is False and r.nodes[0].startswith("src")


def test_placeholder_state_fails_state_shapes():
    r = state_shapes(fp32_model(state=(1, 1, 1, 1)))
    assert r.ok is False and r.nodes == ["r1i [1, 1, 1, 1]"]


def test_downsample_ratio_input_fails_constant_ratio():
    m = make([helper.make_node("Concat", ["ones", "ratio", "ratio"], ["sc"], name="cat", axis=0),
              helper.make_node("Resize", ["src", "", "sc"], ["y"], name="resize_dyn", mode="linear")],
             [vi("src", [1, 3, 8, 8]), vi("downsample_ratio", [1])], [vi("y", None)],
             [const("ones", [1, 1], np.float32)])
    m.graph.node[0].input[1] = m.graph.node[0].input[2] = "downsample_ratio"
    r = constant_ratio(m)
    assert r.ok is False and r.nodes == ["input downsample_ratio", "resize_dyn"]
    assert constant_ratio(fp32_model()).ok


# --- Q/DQ rules ----------------------------------------------------------------------------------

def test_int32_bias_dq_fails_dq_int8_and_fusion():
    m = qdq_model(bias_int32=True)
    r = dq_int8(m)
    assert r.ok is False and r.nodes == ["b1_dq"] and "INT32" in r.detail
    r = qdq_fusable(m)
    assert r.ok is False and r.nodes == ["b1_dq"] and "input 2" in r.detail


def test_non_zero_zero_point_fails():
    r = zero_points(qdq_model(zp=3))
    assert r.ok is False and r.nodes == ["x1_q", "x1_dq"]


def test_conv_weight_scales_on_the_input_channel_axis_fail():
    r = weight_scale_axis(qdq_model(w1_axis=1))
    assert r.ok is False and r.nodes == ["w1_dq"]


def test_conv_transpose_weights_want_axis_one():
    def deconv(axis, n):
        inits = [const("wq", RNG.integers(-127, 128, size=(4, 2, 3, 3)), np.int8),
                 const("ws", np.full(n, 0.01), np.float32), const("wz", np.zeros(n), np.int8)]
        nodes = [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="wt_dq", axis=axis),
                 helper.make_node("ConvTranspose", ["x", "wd"], ["y"], name="deconv")]
        return make(nodes, [vi("x", [1, 4, 4, 4])], [vi("y", None)], inits, opset=19)

    assert weight_scale_axis(deconv(1, 2)).ok
    r = weight_scale_axis(deconv(0, 4))
    assert r.ok is False and r.nodes == ["wt_dq"]


def test_per_channel_activation_scale_fails():
    r = activation_per_tensor(qdq_model(act_per_channel=True))
    assert r.ok is False and r.nodes == ["x1_q", "x1_dq"]


def test_qdq_between_an_input_and_a_resize_is_not_fused():
    r = qdq_fusable(qdq_model(resize_qdq=True))
    assert r.ok is False and r.nodes == ["x3_dq"] and "graph input and Resize" in r.detail


def test_conv_with_quantized_weights_but_float_input_is_not_fused():
    r = qdq_fusable(qdq_model(conv2_float_input=True))
    assert r.ok is False and r.nodes == ["conv2"] and "only its weights" in r.detail


def test_fp32_layers_fail_fp16_outside_qdq():
    r = fp16_outside_qdq(qdq_model(conv2_fp32=True), FP32_OPS)
    assert r.ok is False and {"x2_dq", "w2_dq", "conv2", "sig"} <= set(r.nodes) and "conv1" not in r.nodes
    r = fp16_outside_qdq(fp32_model(), FP32_OPS)
    assert r.ok is False and {"conv1", "relu1", "conv2"} <= set(r.nodes) and "resize" not in r.nodes


def test_explicit_fp32_island_passes_fp16_outside_qdq():
    """conv2 with FP32 Q/DQ and weights, its input cast to FP32 explicitly (as the INT8 artifact
    keeps RVM's recurrent update): strongly typed TensorRT runs it FP32 on purpose."""
    model = qdq_model(conv2_island=True)
    assert fp32_islands(model) == {"x2_q", "x2_dq", "conv2", "sig"}
    r = fp16_outside_qdq(model, FP32_OPS)
    assert r.ok and "4 other nodes kept FP32" in r.detail, r.detail
    assert qdq_fusable(model).ok


def test_fp16_rule_applies_to_fp16_artifact_only_on_tensorrt_11(clean):
    fp32_as_fp16 = {"fp32": clean["fp32"], "fp16": clean["fp32"]}  # an "FP16" file that is all FP32
    assert check_bundle(fp32_as_fp16, "tensorrt-10").ok
    report = check_bundle(fp32_as_fp16, "tensorrt-11")
    assert [(r.artifact, r.rule) for r in report.failed] == [("model.fp16.onnx", "fp16-outside-qdq")]


# --- implicit INT8: calib.cache ------------------------------------------------------------------

def test_cache_header_must_name_the_target_version():
    assert cache_header("TRT-8601-EntropyCalibration2", "tensorrt-8.6").ok
    r = cache_header("TRT-8601-EntropyCalibration2", resolve_target("tensorrt-8.6", "8.5.2"))
    assert r.ok is False and r.nodes == ["TRT-8601-EntropyCalibration2"] and "TRT-8502" in r.detail
    assert cache_header("TRT-100001-EntropyCalibration2", resolve_target("tensorrt-10", "10.0.1")).ok
    assert cache_header("TRT-8601-Unknown", "tensorrt-8.6").ok is False


def test_conv_output_scale_is_taken_after_the_fused_activation():
    view = ModelView(fp32_model())
    convs = {n.name: n for n in view.nodes}
    assert fused_output(view, convs["conv1"]) == ["c1", "a1"]  # a1 has two readers: the chain stops
    assert fused_output(view, convs["conv2"]) == ["c2", "pha"]


def test_missing_output_scale_fails_coverage_naming_the_conv():
    scales = {k: v for k, v in CLEAN_SCALES.items() if k != "pha"}
    r = cache_coverage(fp32_model(), scales, {"conv1", "conv2"})
    assert r.ok is False and r.nodes == ["conv2"] and "1 an output scale" in r.detail
    r = cache_coverage(fp32_model(), {"a1": 0.1, "pha": 0.1}, {"conv1"})
    assert r.nodes == ["conv1"] and "1 lack an input scale" in r.detail


def test_conv_outside_the_recipe_with_both_scales_is_stray():
    r = cache_stray(fp32_model(), CLEAN_SCALES, {"conv1"})
    assert r.ok is False and r.nodes == ["conv2"]
    assert cache_stray(fp32_model(), {"src": 0.1, "a1": 0.1}, {"conv1"}).ok


def test_implicit_target_without_cache_fails_when_int8_is_present(clean):
    report = check_bundle(clean, "tensorrt-8.6")
    assert [r.rule for r in report.failed] == ["cache-header"] and "missing" in report.failed[0].detail


def test_cpu_int8_artifact_is_reported_not_failed(clean):
    report = check_bundle({"fp32": clean["fp32"], "int8-cpu": qdq_model(bias_int32=True)}, "tensorrt-10")
    assert report.ok
    row = next(r for r in report.results if r.artifact == "model.int8-cpu.onnx")
    assert row.ok is None and "not a TensorRT artifact" in row.detail
    assert "n/a" in render_table(report)


# --- INT8 share of convolution MACs -----------------------------------------------------------

def test_int8_mac_share_counts_conv_macs():
    # conv1: 4x8x8 outputs x 3x3x3 = 6912 MACs; conv2: 1x8x8 x 4x3x3 = 2304
    share = int8_mac_share(fp32_model(), {"src": 0.1, "c1": 0.1, "a1": 0.1})  # input, raw and fused output
    assert (share["int8_macs"], share["total_macs"], share["int8_convs"]) == (6912, 9216, 1)
    assert share["share"] == pytest.approx(0.75)
    assert int8_mac_share(qdq_model(conv2_float_input=True))["share"] == pytest.approx(0.75)
    assert intended_int8_convs(qdq_model()) == {"conv1", "conv2"}


# --- a real quantizer: onnxruntime.quantization.quantize_static ---------------------------------

def _ort_quantized(tmp_path, quantize_bias: bool) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    src = tmp_path / "fp32.onnx"
    m = make([conv("conv1", "x", "w1", "b1", "c1"), helper.make_node("Relu", ["c1"], ["a1"], name="relu1"),
              conv("conv2", "a1", "w2", "b2", "y")], [vi("x", [1, 3, 16, 16])], [vi("y", [1, 8, 16, 16])],
             [const("w1", RNG.normal(size=(8, 3, 3, 3)), np.float32), const("b1", RNG.normal(size=8), np.float32),
              const("w2", RNG.normal(size=(8, 8, 3, 3)), np.float32), const("b2", RNG.normal(size=8), np.float32)])
    onnx.save(m, src)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.data = iter([{"x": RNG.normal(size=(1, 3, 16, 16)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.data, None)

    out = tmp_path / f"q{int(quantize_bias)}.onnx"
    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                   "QuantizeBias": quantize_bias})
    return onnx.load(str(out))


def test_onnxruntime_qdq_passes_with_quantize_bias_off_and_fails_with_it_on(tmp_path):
    good = _ort_quantized(tmp_path, quantize_bias=False)
    for rule in (dq_int8, zero_points, weight_scale_axis, activation_per_tensor, qdq_fusable):
        assert rule(good).ok, rule(good)
    for target in ("tensorrt-10", "tensorrt-11"):
        assert op_support(good, target).ok and attribute_support(good, target).ok
    assert int8_mac_share(good)["share"] == pytest.approx(1.0)
    bad = _ort_quantized(tmp_path, quantize_bias=True)
    r = dq_int8(bad)
    assert r.ok is False and len(r.nodes) == 2 and all("b" in n for n in r.nodes) and "2 INT32" in r.detail
