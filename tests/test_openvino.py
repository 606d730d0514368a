"""The OpenVINO backend: runner vs onnxruntime (states carried), bf16/int8 rows, IR round trip, model
cache, the C surface, and the one-line errors (absent device, refused artifacts; a missing openvino:
test_openvino_missing.py)."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from matting_deploy.bundle import Bundle, StateSpec
from matting_deploy.cli import main
from matting_deploy.errors import MattingDeployError
from matting_deploy.runtimes import capi
from matting_deploy.runtimes.open import backend_artifacts, open_runner
from tests.fixtures import H, W, frames, make_runtime_bundle, official_rvm_like
from tests.fixtures.bundles import io, write_bundle

ov = pytest.importorskip("openvino", reason="openvino is not installed (pip install -e '.[openvino]')")

from matting_deploy.runtimes import openvino_runner  # noqa: E402  (after the skip: it needs openvino)
from matting_deploy.runtimes.openvino_build import build_ir  # noqa: E402


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    """Compiled models go to a per-test cache, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "matting-deploy" / "openvino"


@pytest.fixture()
def rvm(tmp_path):
    return make_runtime_bundle(tmp_path / "rvm", "rvm", int8=True)


def _run(bundle, artifact, backend, seq, **kw):
    with open_runner(bundle, artifact, backend, **kw) as runner:
        return [runner.run(frame) for frame in seq]


def _has_bf16() -> bool:
    return "BF16" in openvino_runner.core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_fp32_equals_onnxruntime_over_five_frames_with_state(rvm):
    seq = frames(5)
    ref = _run(rvm, "fp32", "cpu", seq)
    with open_runner(rvm, "fp32", "openvino", threads=1) as runner:
        got = [runner.run(frame) for frame in seq]
        assert "two requests" in runner.capture_note
        # reset is zero state: frame 0 again equals frame 0 of the sequence
        runner.reset()
        np.testing.assert_allclose(runner.run(seq[0])["pha"], ref[0]["pha"], atol=1e-4)
        runner.reset()
        fresh = runner.run(seq[-1])["pha"]
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g["pha"], r["pha"], atol=1e-4)
        np.testing.assert_allclose(g["fgr"], r["fgr"], atol=1e-4)
    # the state matters, so carrying it is what made the frames match
    assert np.abs(fresh - got[-1]["pha"]).max() > 0.01


def test_virtual_device_and_cached_engine(rvm):
    seq = frames(2)
    want = _run(rvm, "fp32", "openvino", seq)
    with open_runner(rvm, "fp32", "openvino", device="cpu") as runner:
        assert runner.device == "CPU"  # OpenVINO's names, upper-cased
    with open_runner(rvm, "fp32", "openvino", device="AUTO") as runner:
        assert runner.device == "AUTO"
        np.testing.assert_allclose(runner.run(seq[0])["pha"], want[0]["pha"], atol=1e-5)
        runner.reset()
        with runner.cached_engine(seq[1]):
            again = runner.run(seq[0])["pha"]  # the cached outputs, whatever the input
        np.testing.assert_allclose(again, runner.run(seq[1])["pha"], atol=1e-5)  # and reset on exit
        call = runner.bare_call(seq[0])
        np.testing.assert_allclose(call()[0], runner.run_inputs(runner.model_inputs(seq[0]))["fgr"], atol=1e-6)


def test_dynamic_official_graph_broadcast_state(tmp_path):
    """The official release's signature: [N,1,1,1] zero states first, then full-size ones."""
    states = [StateSpec(f"r{k}i", f"r{k}o", None) for k in range(1, 5)]
    root = write_bundle(tmp_path / "off", "rvm", H, W, {"fp32": official_rvm_like}, [io("src", [1, 3, H, W])],
                        [io("pha", [1, 1, H, W])], states)
    bundle = Bundle.open(root)
    bundle.manifest["input"].update(dynamic=True, downsample_ratio=0.5)
    bundle.save()
    seq = frames(3)
    ref, got = _run(root, "fp32", "cpu", seq), _run(root, "fp32", "openvino", seq)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g["pha"], r["pha"], atol=1e-4)


def test_bf16_and_int8_rows_within_tolerance(rvm):
    seq = frames(3)
    fp32 = _run(rvm, "fp32", "cpu", seq)
    int8_ort = _run(rvm, "int8", "cpu", seq)
    int8 = _run(rvm, "int8", "openvino", seq)
    for g, q, r in zip(int8, int8_ort, fp32, strict=True):
        assert np.abs(g["pha"] - q["pha"]).max() < 0.02  # the Q/DQ file as onnxruntime computes it
        assert 0 < np.abs(g["pha"] - r["pha"]).max() < 0.05  # quantized: near FP32, not equal
    assert "bf16" in backend_artifacts(Bundle.open(rvm), "openvino")
    assert "bf16" not in backend_artifacts(Bundle.open(rvm), "cpu")
    if not _has_bf16():
        with pytest.raises(MattingDeployError, match="no BF16 support.*avx512_bf16"):
            open_runner(rvm, "bf16", "openvino")
        return
    bf16 = _run(rvm, "bf16", "openvino", seq)
    for g, r in zip(bf16, fp32, strict=True):
        assert 0 < np.abs(g["pha"] - r["pha"]).max() < 0.02


def test_bf16_refused_without_cpu_support(rvm, monkeypatch):
    core = openvino_runner.core()
    monkeypatch.setattr(openvino_runner, "_core", _Limited(core, ["FP32", "INT8"]))
    with pytest.raises(MattingDeployError) as e:
        open_runner(rvm, "bf16", "openvino")
    assert "no BF16 support" in str(e.value) and "/proc/cpuinfo" in str(e.value) and "\n" not in str(e.value)
    assert openvino_runner.precision_hint("fp32", "CPU") == "f32"
    assert openvino_runner.precision_hint("int8", "CPU") == "f32"  # no BF16: int8 falls back to f32
    monkeypatch.setattr(openvino_runner, "_core", _Limited(core, ["BF16", "FP32", "INT8"]))
    assert openvino_runner.precision_hint("bf16", "CPU") == "bf16"
    assert openvino_runner.precision_hint("int8", "CPU") == "bf16"  # chosen per INT8 file (HINTS)
    assert openvino_runner.precision_hint("int8-cpu", "CPU") == "f32"  # bf16 costs this one fidelity
    with pytest.raises(MattingDeployError, match="execution precision of OpenVINO"):
        open_runner(rvm, "bf16", "cpu")


class _Limited:
    """A Core whose CPU reports fewer capabilities."""

    def __init__(self, core, caps):
        self.core, self.caps = core, caps

    def get_property(self, device, name):
        return self.caps if name == "OPTIMIZATION_CAPABILITIES" else self.core.get_property(device, name)

    def __getattr__(self, name):
        return getattr(self.core, name)


def test_ir_round_trip_without_onnx(rvm, tmp_path, user_cache):
    seq = frames(3)
    want = _run(rvm, "fp32", "openvino", seq)
    want8 = _run(rvm, "int8", "openvino", seq)
    build_ir(rvm, log=lambda m: None)
    manifest = json.loads((rvm / "manifest.json").read_text())
    assert set(manifest["openvino"]) == {"fp32", "int8"}
    for name in ("model.xml", "model.bin", "model.int8.xml", "model.int8.bin"):
        assert len(manifest["files"][name]["sha256"]) == 64
    with pytest.raises(MattingDeployError, match="already exists"):
        build_ir(rvm, ["fp32"], log=lambda m: None)
    build_ir(rvm, ["fp32"], force=True, log=lambda m: None)
    # A device with only openvino: the ONNX files gone, onnx and onnxruntime unimportable.
    for name in ("model.onnx", "model.int8.onnx"):
        (rvm / name).unlink()
    out = tmp_path / "ir.npz"
    code = (
        "import sys, numpy as np\n"
        "sys.modules['onnx'] = None; sys.modules['onnxruntime'] = None\n"
        "from matting_deploy.runtimes.open import open_runner\n"
        f"seq = list(np.load({str(tmp_path / 'seq.npy')!r}))\n"
        "res = {}\n"
        "for a in ('fp32', 'int8'):\n"
        f"    with open_runner({str(rvm)!r}, a, 'openvino') as r:\n"
        "        assert r.path.suffix == '.xml', r.path\n"
        "        res[a] = np.stack([r.run(f[None])['pha'] for f in seq])\n"
        f"np.savez({str(out)!r}, **res)\n"
    )
    np.save(tmp_path / "seq.npy", np.concatenate(seq))
    subprocess.run([sys.executable, "-c", code], check=True)
    got = np.load(out)
    np.testing.assert_allclose(got["fp32"], np.stack([w["pha"] for w in want]), atol=1e-5)
    np.testing.assert_allclose(got["int8"], np.stack([w["pha"] for w in want8]), atol=1e-5)
    assert any(user_cache.iterdir())  # compiled models were cached


def test_stale_ir_is_ignored(rvm):
    res = CliRunner().invoke(main, ["build", "--bundle", str(rvm), "--target", "openvino", "--precision", "int8"])
    assert res.exit_code == 0, res.output
    assert "model.int8.xml" in res.output and not (rvm / "model.xml").exists()
    res = CliRunner().invoke(main, ["build", "--bundle", str(rvm), "--target", "openvino", "--precision", "int8"])
    assert res.exit_code == 2 and "already exists (pass --force" in res.output
    bundle = Bundle.open(rvm)
    assert bundle.openvino_ir("int8") is not None
    assert bundle.manifest["openvino"]["int8"]["qdq"] == "uint8-activations"
    del bundle.manifest["openvino"]["int8"]["qdq"]  # as an IR converted before the Q/DQ rewrite
    assert bundle.openvino_ir("int8") is None
    bundle = Bundle.open(rvm)
    bundle.manifest["files"]["model.int8.onnx"]["sha256"] = "0" * 64  # as if calibrate rewrote it
    assert bundle.openvino_ir("int8") is None


def test_model_cache_follows_the_content(tmp_path, user_cache):
    """OpenVINO keys a blob compiled from a file by its path: a rewritten model.onnx must not get
    the old model's blob (the runner keeps one cache folder per file content)."""
    seq = frames(1)
    first = _run(make_runtime_bundle(tmp_path / "b", "modnet", seed=0), "fp32", "openvino", seq)[0]["pha"]
    assert len(list(user_cache.iterdir())) == 1
    rebuilt = make_runtime_bundle(tmp_path / "b", "modnet", seed=1)  # same paths, new weights
    want = _run(rebuilt, "fp32", "cpu", seq)[0]["pha"]
    got = _run(rebuilt, "fp32", "openvino", seq)[0]["pha"]
    assert np.abs(first - want).max() > 1e-3
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert len(list(user_cache.iterdir())) == 2


def test_c_surface_on_openvino(rvm):
    seq = frames(3)
    ref = _run(rvm, "fp32", "openvino", seq)
    handle = ctypes.c_void_p()
    assert capi.md_open(str(rvm).encode(), b"fp32", b"openvino", ctypes.byref(handle)) == 0, capi.last_error()
    f32 = ctypes.POINTER(ctypes.c_float)
    for frame, want in zip(seq, ref, strict=True):
        pha = np.zeros((1, 1, H, W), np.float32)
        fgr = np.zeros((1, 3, H, W), np.float32)
        rc = capi.md_run(handle, frame.ctypes.data_as(f32), 1, H, W, pha.ctypes.data_as(f32), fgr.ctypes.data_as(f32))
        assert rc == 0, capi.last_error()
        np.testing.assert_array_equal(pha, want["pha"])
        np.testing.assert_array_equal(fgr, want["fgr"])
    assert capi.md_close(handle) == 0
    bad = ctypes.c_void_p()
    assert capi.md_open(str(rvm).encode(), b"fp32", b"openvino:NO_SUCH_DEVICE", ctypes.byref(bad)) != 0
    assert "OpenVINO device 'NO_SUCH_DEVICE' is not available" in capi.last_error()


def _infer(bundle, tmp_path, *args):
    src = tmp_path / "in"
    src.mkdir(exist_ok=True)
    from PIL import Image

    Image.fromarray((frames(1)[0][0].transpose(1, 2, 0) * 255).astype(np.uint8)).save(src / "a.png")
    return CliRunner().invoke(main, ["infer", "--bundle", str(bundle), "--input", str(src), "--out",
                                     str(tmp_path / "out"), "--quiet", "--force", *args])


def test_cli_device_choice(rvm, tmp_path):
    res = _infer(rvm, tmp_path, "--backend", "openvino", "--artifact", "int8", "--device", "CPU")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "out" / "infer.json").read_text())["backend"] == "openvino:CPU"
    assert any((tmp_path / "out" / "alpha").iterdir())
    absent = "GPU" if not any(d.startswith("GPU") for d in openvino_runner.core().available_devices) else "NPU9"
    res = _infer(rvm, tmp_path, "--backend", "openvino", "--device", absent)
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1].startswith(
        f"error: --device: OpenVINO device '{absent}' is not available (available: ")
    res = _infer(rvm, tmp_path, "--backend", "cpu", "--device", "CPU")
    assert res.exit_code == 2 and "error: --device:" in res.output


def _bgm_like(path):
    """src, bgr (N,3,H,W), seg (N,1,H,W) -> pha = sigmoid(4 mean_c(src - bgr) + seg), fgr = src."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def vi(name, c):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, c, H, W])

    nodes = [helper.make_node("Sub", ["src", "bgr"], ["d"]),
             helper.make_node("ReduceMean", ["d"], ["m"], axes=[1], keepdims=1),
             helper.make_node("Mul", ["m", "four"], ["m4"]),
             helper.make_node("Add", ["m4", "seg"], ["z"]),
             helper.make_node("Sigmoid", ["z"], ["pha"]),
             helper.make_node("Identity", ["src"], ["fgr"])]
    four = numpy_helper.from_array(np.array(4.0, np.float32), "four")
    graph = helper.make_graph(nodes, "bgm_like", [vi("src", 3), vi("bgr", 3), vi("seg", 1)],
                              [vi("pha", 1), vi("fgr", 3)], [four])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_bgm_extra_inputs(tmp_path):
    root = write_bundle(tmp_path / "bgm", "bgm", H, W, {"fp32": _bgm_like},
                        [io("src", [1, 3, H, W]), io("bgr", [1, 3, H, W]), io("seg", [1, 1, H, W])],
                        [io("pha", [1, 1, H, W]), io("fgr", [1, 3, H, W])])
    src, plate = frames(2)
    seg = np.full((1, 1, H, W), 0.3, np.float32)
    with open_runner(root, "fp32", "cpu") as ort_runner, open_runner(root, "fp32", "openvino") as runner:
        want = ort_runner.run(src, bgr=plate, seg=seg)["pha"]
        np.testing.assert_allclose(runner.run(src, bgr=plate, seg=seg)["pha"], want, atol=1e-5)
        with pytest.raises(MattingDeployError, match="input 'seg'.*is missing"):
            runner.run(src, bgr=plate)
