"""`build` against a fake TensorRT (tests/fixtures/fake_tensorrt.py: fails where the real builder
documents a failure) and a fake CUDA driver that record every call (no GPU here): the device made
current around the builder, the cache fed with the running version's header, the build plan's layer
constraints with obey-precision-constraints (INT8 exactly at calib.json's Convs with float outputs,
fused or not; the FP32 layers FP32), TF32 cleared, strongly typed builds from 10.1 (INT8) and 10.12
(FP16), a refused timing cache reported and replaced, the rule gate before building, one logger; and
the runner freeing its stream in its CUDA context and opening the device the engine was built on."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from matting_deploy.bundle import Bundle, implicit_onnx
from matting_deploy.cli import main
from matting_deploy.runtimes import cuda_device
from tests.fixtures import fake_tensorrt as fake_module
from tests.fixtures.fake_tensorrt import fake_tensorrt
from tests.test_check_cli import calibrated  # noqa: F401  (module fixture: export + calibrate)

FLOAT32, FLOAT16, INT8 = "float32", "float16", "int8"


class FakeDriver:
    """libcuda: two devices; records retain/push/pop/release."""

    def __init__(self, events):
        self.events = events

    def cuInit(self, flags):
        return 0

    def cuDeviceGetCount(self, p):
        p._obj.value = 2
        return 0

    def cuDeviceGet(self, p, n):
        p._obj.value = n
        return 0

    def cuDeviceGetName(self, buf, size, dev):
        buf.value = f"Fake GPU {dev.value}".encode()
        return 0

    def cuDeviceGetAttribute(self, p, attr, dev):
        p._obj.value = 8 if attr == 75 else 7
        return 0

    def cuDevicePrimaryCtxRetain(self, p, dev):
        p._obj.value = 1000 + dev.value
        self.events.append(("retain", dev.value))
        return 0

    def cuCtxPushCurrent_v2(self, ctx):
        self.events.append(("push", ctx.value))
        return 0

    def cuCtxPopCurrent_v2(self, p):
        self.events.append(("pop",))
        return 0

    def cuDevicePrimaryCtxRelease_v2(self, dev):
        self.events.append(("release", dev.value))
        return 0


@pytest.fixture()
def fake(monkeypatch):
    from matting_deploy.runtimes import trt_logger

    events = []
    monkeypatch.setattr(cuda_device, "libcuda", lambda: FakeDriver(events))
    if hasattr(trt_logger, "_LOGGER"):
        monkeypatch.setattr(trt_logger, "_LOGGER", None)
    monkeypatch.setattr(fake_module, "LOGGERS", [])

    def install(**kw):
        monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(events, **kw))
        return events

    return install


def _drop_from_int8_list(root, conv):
    info = json.loads((root / "calib.json").read_text())
    info["tensorrt"]["int8_convs"].remove(conv)
    (root / "calib.json").write_text(json.dumps(info))
    bundle = Bundle.open(root)
    bundle.add_file("calib.json", kind="calibration")
    bundle.save()


def _copy(calibrated, tmp_path):  # noqa: F811
    import shutil

    root = tmp_path / "b"
    shutil.copytree(calibrated[0], root)
    return root


def _build(root, precision, *extra):
    return CliRunner().invoke(main, ["build", "--bundle", str(root), "--precision", precision, *extra])


def _fp32_nodes(root):
    """Nodes the FP16 artifacts keep FP32 (op types) and the recurrent update (state in -> state out)."""
    from matting_deploy.bundle.trt_plan import fp32_ops, recurrent_nodes

    model = onnx.load(str(root / "model.onnx"))
    keep = recurrent_nodes(model, Bundle.open(root).states)
    return {n.name for n in model.graph.node
            if (n.op_type in fp32_ops() or n.name in keep) and n.op_type not in ("Constant", "Shape")}


@pytest.mark.parametrize("fuse", [False, True], ids=["unfused", "fused"])
def test_implicit_int8_build_on_device_1(calibrated, tmp_path, fake, fuse):  # noqa: F811
    root = _copy(calibrated, tmp_path)
    events = fake(version="8.5.2.2", fuse=fuse)
    convs = json.loads((root / "calib.json").read_text())["tensorrt"]["int8_convs"]
    _drop_from_int8_list(root, convs[-1])  # a Conv the recipe keeps in float, scales on both sides
    timing = tmp_path / "timing.cache"
    timing.write_bytes(b"other-gpu")
    res = _build(root, "int8", "--device", "1", "--timing-cache", str(timing))
    assert res.exit_code == 0, res.output
    names = [e[0] for e in events]
    # device 1's context is current from before the builder until after the build
    assert names.index("push") < names.index("Builder") < names.index("build") < names.index("pop")
    assert ("retain", 1) in events and ("release", 1) in events
    build = next(e for e in events if e[0] == "build")
    flags, blob, engine = build[1], build[2], build[5]
    assert {"INT8", "FP16", "OBEY"} <= set(flags) and "TF32" not in flags
    # INT8 runs exactly at the recipe's Convs, each writing float (FP16, FP32 in the recurrent update)
    assert {n for n, (p, _) in engine.items() if p == INT8} == set(convs[:-1])
    assert all(engine[c][1] in (FLOAT16, FLOAT32) for c in convs[:-1])
    assert not {n for n, (_, out) in engine.items() if out == INT8}
    assert engine[convs[-1]][0] == FLOAT16  # the float Conv between scaled tensors
    assert all(engine[n][0] == FLOAT32 for n in _fp32_nodes(root) if n in engine)
    assert blob.decode().splitlines()[0] == "TRT-8502-EntropyCalibration2"  # fed for the running 8.5.2
    assert (root / "calib.cache").read_text().startswith("TRT-8601-")  # the file is not changed
    assert ("set_timing_cache", b"other-gpu", False) in events and ("set_timing_cache", b"", True) in events
    assert "timing cache made on another GPU or TensorRT version" in res.output
    assert timing.read_bytes() == b"timing"
    entry = Bundle.open(root).manifest["engines"]["int8"]
    assert entry["device"] == 1 and entry["gpu"] == "Fake GPU 1" and entry["tf32"] is False


def test_calib_cache_scales_the_raw_output_of_every_int8_conv(calibrated):  # noqa: F811
    """Finding 1: TensorRT may or may not fuse the activation; the Conv runs INT8 either way."""
    from matting_deploy.bundle.trt_cache import read_cache

    root = calibrated[0]
    scales = read_cache(root / "calib.cache").scales
    model = onnx.load(str(root / "model.onnx"))
    info = json.loads((root / "calib.json").read_text())["tensorrt"]
    outputs = {n.name: n.output[0] for n in model.graph.node}
    assert info["int8_convs"]
    for conv in info["int8_convs"]:
        side = info["conv_sides"][conv]
        assert {side["input"], side["output"], outputs[conv]} <= set(scales), conv
        assert side.get("raw_output") == outputs[conv]


@pytest.mark.parametrize("version", ["8.6.1.6", "10.0.1.6"])
def test_fp16_engines_pin_the_fp32_layers(calibrated, tmp_path, fake, version):  # noqa: F811
    """Finding 2: what the FP16 artifacts keep FP32 runs FP32 in weakly typed FP16 engines too."""
    root = _copy(calibrated, tmp_path)
    events = fake(version=version)
    res = _build(root, "fp16")
    assert res.exit_code == 0, res.output
    build = next(e for e in events if e[0] == "build")
    engine, flags = build[5], build[1]
    assert "FP16" in flags and "OBEY" in flags and "TF32" not in flags
    pinned = [n for n in _fp32_nodes(root) if n in engine]
    assert pinned and all(engine[n] == (FLOAT32, FLOAT32) for n in pinned)
    assert any(p == FLOAT16 for p, _ in engine.values())


def test_an_int8_conv_renamed_by_the_parser_fails_the_build_naming_it(calibrated, tmp_path, fake):  # noqa: F811
    """Finding 7: the parser renames a layer whose name is taken; the Conv must not be skipped."""
    root = _copy(calibrated, tmp_path)
    conv = json.loads((root / "calib.json").read_text())["tensorrt"]["int8_convs"][0]
    bundle = Bundle.open(root)
    parsed = implicit_onnx(bundle.manifest)  # the FP32 file implicit INT8 parses
    model = onnx.load(str(root / parsed))
    first = next(n for n in model.graph.node if n.op_type not in ("Constant", "Conv"))
    first.name = conv  # an earlier layer takes the Conv's name: the parser calls the Conv '<name>_<n>'
    onnx.save(model, str(root / parsed))
    bundle.add_file(parsed, **({"artifact": "fp32"} if parsed == "model.onnx" else {}))
    bundle.save()
    events = fake(version="8.6.1.6")
    res = _build(root, "int8")
    assert res.exit_code == 2 and f"'{conv}' shares its name with another node" in res.output
    assert not any(e[0] == "build" for e in events) and not (root / "model.int8.engine").exists()


def test_runner_opens_the_device_the_engine_was_built_on(calibrated, tmp_path, monkeypatch):  # noqa: F811
    """Finding 7: open_runner(..., 'tensorrt') uses the manifest's device, not device 0."""
    from matting_deploy.runtimes import tensorrt_runner
    from matting_deploy.runtimes.open import open_runner

    root = _copy(calibrated, tmp_path)
    bundle = Bundle.open(root)
    bundle.manifest.setdefault("engines", {})["int8"] = {"file": "model.int8.engine", "device": 1,
                                                         "tensorrt": "8.6.1"}
    bundle.save()
    seen = {}

    def init(self, path, states=None, ratio=None, device=0, built_with=None):
        seen["device"] = device

    monkeypatch.setattr(tensorrt_runner.TrtRunner, "__init__", init)
    open_runner(root, "int8", "tensorrt")
    assert seen["device"] == 1


@pytest.mark.parametrize("version, precision, artifact", [
    ("10.3.0.26", "int8", "model.int8.onnx"), ("11.1.0.1", "int8", "model.int8.onnx"),
    ("10.12.0.36", "fp16", "model.fp16.onnx"), ("11.1.0.1", "fp16", "model.fp16.onnx"),
    ("10.11.0.33", "fp16", "model.onnx")])
def test_builds_by_version(calibrated, tmp_path, fake, version, precision, artifact):  # noqa: F811
    """Strongly typed from 10.1 (INT8) and 10.12 (FP16; the FP16 flag is deprecated there): no
    precision flag and no layer precision (the fake fails either); weakly typed FP16 before."""
    root = _copy(calibrated, tmp_path)
    events = fake(version=version)
    res = _build(root, precision)
    assert res.exit_code == 0, res.output
    assert ("parse", artifact) in events
    build = next(e for e in events if e[0] == "build")
    entry = Bundle.open(root).manifest["engines"][precision]
    assert entry["strongly_typed"] is (artifact != "model.onnx") and entry["source"] == artifact
    if artifact != "model.onnx":
        assert not {"FP16", "INT8", "OBEY"} & set(build[1]) and not build[3]


def test_fp32_engine_clears_tf32(calibrated, tmp_path, fake):  # noqa: F811
    """Finding 5: TF32 is on by default; an fp32 engine computes FP32."""
    root = _copy(calibrated, tmp_path)
    events = fake(version="8.6.1.6")
    res = _build(root, "fp32")
    assert res.exit_code == 0, res.output
    build = next(e for e in events if e[0] == "build")
    assert "TF32" not in build[1] and Bundle.open(root).manifest["engines"]["fp32"]["tf32"] is False


def test_each_build_reports_its_own_error_through_the_one_logger(calibrated, tmp_path, fake):  # noqa: F811
    """Finding 3: TensorRT keeps the first logger; a second build's error must still be named."""
    root = _copy(calibrated, tmp_path)
    fake(version="8.6.1.6")
    assert _build(root, "fp32").exit_code == 0
    fake(version="8.6.1.6", fail="out of memory in tactic 7")
    res = _build(root, "fp16")
    assert res.exit_code == 2 and "out of memory in tactic 7" in res.output, res.output


def test_implicit_plan_refuses_a_cache_without_raw_conv_outputs(calibrated, tmp_path, fake):  # noqa: F811
    root = _copy(calibrated, tmp_path)
    fake(version="8.6.1.6")
    info = json.loads((root / "calib.json").read_text())
    conv = info["tensorrt"]["int8_convs"][0]
    raw = next(n.output[0] for n in onnx.load(str(root / "model.onnx")).graph.node if n.name == conv)
    cache = (root / "calib.cache").read_text().splitlines()
    (root / "calib.cache").write_text("\n".join(ln for ln in cache if not ln.startswith(raw + ":")) + "\n")
    bundle = Bundle.open(root)
    bundle.add_file("calib.cache")
    bundle.save()
    res = _build(root, "int8")
    assert res.exit_code == 2 and raw in res.output, res.output


def test_build_refuses_an_artifact_failing_the_running_tensorrts_rules(calibrated, tmp_path, fake):  # noqa: F811
    import shutil

    root = tmp_path / "b"
    shutil.copytree(calibrated[0], root)
    q = onnx.load(str(root / "model.int8.onnx"))  # one weight DQ made INT32, as a biased bias DQ is
    inits = {i.name: i for i in q.graph.initializer}
    dq = next(n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits)
    for name in (dq.input[0], dq.input[2]):
        arr = numpy_helper.to_array(inits[name]).astype(np.int32)
        inits[name].CopyFrom(numpy_helper.from_array(arr, name))
    onnx.save(q, str(root / "model.int8.onnx"))
    bundle = Bundle.open(root)
    bundle.add_file("model.int8.onnx", artifact="int8")
    bundle.save()
    events = fake(version="10.3.0.26")
    res = CliRunner().invoke(main, ["build", "--bundle", str(root), "--precision", "int8"])
    assert res.exit_code == 2 and "rule dq-int8" in res.output, res.output
    assert not any(e[0] == "Builder" for e in events) and not (root / "model.int8.engine").exists()


def test_runner_frees_its_stream_before_popping_the_context():
    from matting_deploy.runtimes.tensorrt_runner import TrtRunner

    events = []

    class Stream:
        def __del__(self):
            events.append("stream freed")

    class Ctx:
        def push(self):
            events.append("push")

        def pop(self):
            events.append("pop")

        def detach(self):
            events.append("detach")

    class Mem:
        def free(self):
            events.append("mem freed")

    runner = TrtRunner.__new__(TrtRunner)
    runner._ctx, runner._stream, runner._allocs = Ctx(), Stream(), [Mem()]
    runner._context = runner._engine = runner._runtime = object()
    runner.close()
    assert events == ["push", "stream freed", "mem freed", "pop", "detach"]
