"""`build` against a fake TensorRT and a fake CUDA driver that record every call (no GPU here):
the device made current around the builder, the cache fed with the running version's header,
layers outside the INT8 recipe pinned FP16 with obey-precision-constraints, a refused timing cache
reported and replaced, the rule gate before building; and the runner freeing its stream in its
CUDA context."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from matting_deploy.bundle import Bundle
from matting_deploy.check.support import support_data
from matting_deploy.cli import main
from matting_deploy.runtimes import cuda_device
from tests.test_check_cli import calibrated  # noqa: F401  (module fixture: export + calibrate)

FLOAT32, FLOAT16, INT32, INT8 = "float32", "float16", "int32", "int8"


class Tensor:
    def __init__(self, name, dtype=FLOAT32):
        self.name, self.dtype = name, dtype


class Layer:
    def __init__(self, node, inits):
        self.name, self.precision, self.output_types = node.name, None, {}
        self.type = "CONSTANT" if node.op_type == "Constant" else node.op_type
        self.inputs = [Tensor(t) for t in node.input if t and t not in inits]
        self.outputs = [Tensor(t) for t in node.output]
        self.num_inputs, self.num_outputs = len(self.inputs), len(self.outputs)

    def get_input(self, i):
        return self.inputs[i]

    def get_output(self, i):
        return self.outputs[i]

    def set_output_type(self, i, dtype):
        self.output_types[i] = dtype


def fake_tensorrt(events, version="8.6.1.6", refuse_timing=b"other-gpu"):
    trt = types.ModuleType("tensorrt")
    trt.__version__, trt.float32, trt.float16, trt.int8 = version, FLOAT32, FLOAT16, INT8
    sev = types.SimpleNamespace(ERROR=1, INTERNAL_ERROR=0, WARNING=2)
    trt.ILogger = type("ILogger", (), {"Severity": sev, "__init__": lambda self: None})
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=5)
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8", OBEY_PRECISION_CONSTRAINTS="OBEY")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.LayerType = types.SimpleNamespace(CONSTANT="CONSTANT", CONVOLUTION="Conv", DECONVOLUTION="ConvTranspose")
    trt.IInt8EntropyCalibrator2 = type("Calib", (), {"__init__": lambda self: None})

    class Network:
        def __init__(self):
            self.layers, self.num_inputs, self.num_layers = [], 0, 0

        def get_layer(self, i):
            return self.layers[i]

    class Parser:
        def __init__(self, network, logger):
            self.network = network

        def parse_from_file(self, path):
            model = onnx.load(path)
            inits = {i.name for i in model.graph.initializer}
            self.network.layers = [Layer(n, inits) for n in model.graph.node]
            self.network.num_layers = len(self.network.layers)
            events.append(("parse", path.rsplit("/", 1)[-1]))
            return True

    class TimingCache:
        def __init__(self, data):
            self.data = data

        def serialize(self):
            return b"timing"

    class Config:
        def __init__(self):
            self.flags, self.int8_calibrator, self.cache = [], None, None

        def set_flag(self, flag):
            self.flags.append(flag)

        def create_timing_cache(self, data):
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            ok = cache.data != refuse_timing and ignore_mismatch is False
            events.append(("set_timing_cache", cache.data, ok))
            self.cache = cache if ok else self.cache
            return ok

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            events.append(("Builder",))

        def create_network(self, flags):
            self.network = Network()
            return self.network

        def create_builder_config(self):
            self.config = Config()
            return self.config

        def build_serialized_network(self, network, config):
            events.append(("build", list(config.flags), config.int8_calibrator.read_calibration_cache(),
                           {lay.name: lay.precision for lay in network.layers if lay.precision},
                           {lay.name: (lay.type, lay.output_types) for lay in network.layers if lay.output_types}))
            return b"engine"

    trt.Builder, trt.OnnxParser = Builder, Parser
    return trt


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
    events = []
    monkeypatch.setattr(cuda_device, "libcuda", lambda: FakeDriver(events))

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


def test_implicit_int8_build_on_device_1(calibrated, tmp_path, fake):  # noqa: F811
    import shutil

    root = tmp_path / "b"
    shutil.copytree(calibrated[0], root)
    events = fake(version="8.5.2.2")
    convs = json.loads((root / "calib.json").read_text())["tensorrt"]["int8_convs"]
    _drop_from_int8_list(root, convs[-1])  # a Conv the recipe keeps in float, scales on both sides
    timing = tmp_path / "timing.cache"
    timing.write_bytes(b"other-gpu")
    res = CliRunner().invoke(main, ["build", "--bundle", str(root), "--precision", "int8", "--device", "1",
                                    "--timing-cache", str(timing)])
    assert res.exit_code == 0, res.output
    names = [e[0] for e in events]
    # device 1's context is current from before the builder until after the build
    assert names.index("push") < names.index("Builder") < names.index("build") < names.index("pop")
    assert ("retain", 1) in events and ("release", 1) in events
    build = next(e for e in events if e[0] == "build")
    flags, blob, precisions, typed = build[1], build[2], build[3], build[4]
    assert flags[:2] == ["INT8", "FP16"] and "OBEY" in flags
    # the recipe's Convs: INT8, FP16 out; so are the activations fused into them
    assert {n for n, p in precisions.items() if p == INT8} == set(convs[:-1])
    assert all(typed[c] == ("Conv", {0: FLOAT16}) for c in convs[:-1])
    tails = {n: t for n, (t, _) in typed.items() if n not in convs}
    epilogue = set(support_data()["conv_fusion"]["epilogue"]) | {"Mul"}  # Mul: hard-swish's
    assert tails and set(tails.values()) <= epilogue and all(precisions[n] == FLOAT16 for n in tails)
    pinned = {n: p for n, p in precisions.items() if n not in typed}
    assert blob.decode().splitlines()[0] == "TRT-8502-EntropyCalibration2"  # fed for the running 8.5.2
    assert (root / "calib.cache").read_text().startswith("TRT-8601-")  # the file is not changed
    # the float Conv, and the layers between scaled tensors (pools feeding INT8 Convs); no INT8 Conv
    assert pinned[convs[-1]] == FLOAT16 and set(pinned.values()) == {FLOAT16} and not set(pinned) & set(convs[:-1])
    assert all(name.startswith(("Conv", "AveragePool")) for name in pinned)
    assert ("set_timing_cache", b"other-gpu", False) in events and ("set_timing_cache", b"", True) in events
    assert "timing cache made on another GPU or TensorRT version" in res.output
    assert timing.read_bytes() == b"timing"
    entry = Bundle.open(root).manifest["engines"]["int8"]
    assert entry["device"] == 1 and entry["gpu"] == "Fake GPU 1" and entry["pinned_fp16_layers"] == len(pinned)


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
