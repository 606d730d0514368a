"""TensorRT build and runner on a GPU (marked ``gpu``; skipped without tensorrt/pycuda/GPU)."""

from __future__ import annotations

import ctypes
import json

import numpy as np
import pytest
from click.testing import CliRunner

from matting_deploy.bundle import Bundle
from matting_deploy.cli import main
from matting_deploy.errors import MattingDeployError
from tests.fixtures import H, W, frames, make_runtime_bundle

pytestmark = pytest.mark.gpu


def _gpu_or_skip():
    trt = pytest.importorskip("tensorrt", reason="tensorrt is not installed")
    pytest.importorskip("pycuda.driver", reason="pycuda is not installed")
    from matting_deploy.runtimes.trt_build import cuda_gpu, version_tuple

    try:
        cuda_gpu()
    except MattingDeployError as e:
        pytest.skip(str(e))
    return trt, version_tuple(trt.__version__)


@pytest.fixture(scope="module")
def trt_env():
    return _gpu_or_skip()


@pytest.fixture(scope="module")
def engines(trt_env, tmp_path_factory):
    """An RVM-like bundle (export --from-onnx --fp16, then the real calibrate --int8 for the running
    TensorRT, so calib.json lists the INT8 Convs implicit builds need) with fp32, fp16 and int8
    engines built through the CLI."""
    from tests.fixtures import make_images, official_rvm_like

    trt, ver = trt_env
    tmp = tmp_path_factory.mktemp("trt")
    official_rvm_like(tmp / "src.onnx")
    root = tmp / "rvm"
    run = CliRunner().invoke
    res = run(main, ["export", "--model", "rvm", "--from-onnx", str(tmp / "src.onnx"), "--height", str(H),
                     "--width", str(W), "--fp16", "--out", str(root)])
    assert res.exit_code == 0, res.output
    version = trt.__version__ if ver < (10, 1) else "8.6.1"
    res = run(main, ["calibrate", "--int8", "--bundle", str(root), "--data", str(make_images(tmp / "data")),
                     "--num", "6", "--trt-version", version])
    assert res.exit_code == 0, res.output
    timing = root.parent / "timing.cache"
    for precision in ("fp32", "fp16", "int8"):
        res = run(main, ["build", "--bundle", str(root), "--precision", precision,
                         "--timing-cache", str(timing), "--workspace", "256"])
        assert res.exit_code == 0, res.output
    assert timing.is_file() and timing.stat().st_size > 0
    return root


def _ort_sequence(root, seq):
    from matting_deploy.runtimes.open import open_runner

    runner = open_runner(root, "fp32", "cpu")
    outs = [runner.run(f) for f in seq]
    return outs, runner.state


def test_manifest_records_engines(engines, trt_env):
    trt, _ = trt_env
    manifest = json.loads((engines / "manifest.json").read_text())
    for precision in ("fp32", "fp16", "int8"):
        entry = manifest["engines"][precision]
        assert entry["tensorrt"] == trt.__version__ and entry["gpu"]
        assert manifest["artifacts"][f"trt-{precision}"] == f"model.{precision}.engine"
        assert manifest["files"][f"model.{precision}.engine"]["sha256"] == entry["sha256"]
    res = CliRunner().invoke(main, ["build", "--bundle", str(engines), "--precision", "fp32"])
    assert res.exit_code == 2 and "already exists" in res.output


@pytest.mark.parametrize("precision, atol", [("fp32", 2e-3), ("fp16", 2e-2), ("int8", 6e-2)])
def test_trt_runner_matches_onnxruntime_with_state_on_device(engines, precision, atol):
    from matting_deploy.runtimes.open import open_runner

    seq = frames(5)
    ref, ref_state = _ort_sequence(engines, seq)
    runner = open_runner(engines, precision, "tensorrt")
    try:
        got = [runner.run(f) for f in seq]
        for g, r in zip(got, ref, strict=True):
            assert set(g) == {"pha", "fgr"}
            np.testing.assert_allclose(g["pha"], r["pha"], rtol=0, atol=atol)
            np.testing.assert_allclose(g["fgr"], r["fgr"], rtol=0, atol=atol)
        state = runner.state()
        for name, value in ref_state.items():
            np.testing.assert_allclose(state[name], value, rtol=0, atol=4 * atol)
        runner.reset()
        assert all(not v.any() for v in runner.state().values())
        again = runner.run(seq[0])
        np.testing.assert_allclose(again["pha"], got[0]["pha"], rtol=0, atol=1e-6)
    finally:
        runner.close()


def test_c_api_on_tensorrt(engines):
    from matting_deploy.runtimes import capi

    handle = ctypes.c_void_p()
    rc = capi.md_open(str(engines).encode(), b"fp32", b"tensorrt", ctypes.byref(handle))
    assert rc == 0, capi.last_error()
    f32 = ctypes.POINTER(ctypes.c_float)
    pha = np.zeros((1, 1, H, W), np.float32)
    fgr = np.zeros((1, 3, H, W), np.float32)
    seq = frames(2)
    for f in seq:
        assert capi.md_run(handle, f.ctypes.data_as(f32), 1, H, W, pha.ctypes.data_as(f32),
                           fgr.ctypes.data_as(f32)) == 0, capi.last_error()
    ref, _ = _ort_sequence(engines, seq)
    np.testing.assert_allclose(pha, ref[-1]["pha"], rtol=0, atol=2e-3)
    np.testing.assert_allclose(fgr, ref[-1]["fgr"], rtol=0, atol=2e-3)
    assert capi.md_close(handle) == 0


def test_bench_on_tensorrt(engines, tmp_path):
    out = tmp_path / "b.json"
    res = CliRunner().invoke(main, ["bench", "--bundle", str(engines), "--backend", "tensorrt",
                                    "--iters", "20", "--warmup", "5", "--json", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["rows"]
    assert [r["artifact"] for r in rows] == ["fp32", "fp16", "int8"]
    assert all(r["p50_ms"] > 0 and "overhead_pct" in r and r["device"]["p50_ms"] > 0 for r in rows)


def test_engine_from_another_tensorrt_is_refused(engines, tmp_path):
    from matting_deploy.runtimes.tensorrt_runner import TrtRunner

    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"not an engine" * 10)
    with pytest.raises(MattingDeployError, match="rebuild with 'matting-deploy build --force'"):
        TrtRunner(bad)


def test_dynamic_bundle_is_refused(trt_env, tmp_path):
    root = make_runtime_bundle(tmp_path / "dyn", "modnet")
    bundle = Bundle.open(root)
    bundle.manifest["input"]["dynamic"] = True
    bundle.save()
    res = CliRunner().invoke(main, ["build", "--bundle", str(root), "--precision", "fp32"])
    assert res.exit_code == 2 and "static bundles" in res.output
    assert not (root / "model.fp32.engine").exists()


def test_int8_engine_from_a_calibrated_bundle_runs_int8_layers(trt_env, tmp_path):
    """export --from-onnx + calibrate --int8 (for the running TensorRT) + build: the engine
    inspector shows INT8 layers, and on implicit TensorRT every INT8 Conv of calib.json is one."""
    from tests.fixtures import make_images, official_rvm_like

    trt, ver = trt_env
    official_rvm_like(tmp_path / "src.onnx")
    run = CliRunner().invoke
    res = run(main, ["export", "--model", "rvm", "--from-onnx", str(tmp_path / "src.onnx"), "--height", "64",
                     "--width", "96", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    version = trt.__version__ if ver < (10, 1) else "8.6.1"
    res = run(main, ["calibrate", "--int8", "--bundle", str(tmp_path / "b"), "--data",
                     str(make_images(tmp_path / "data")), "--num", "6", "--trt-version", version])
    assert res.exit_code == 0, res.output
    res = run(main, ["build", "--bundle", str(tmp_path / "b"), "--precision", "int8", "--workspace", "256"])
    assert res.exit_code == 0, res.output
    from matting_deploy.runtimes.trt_logger import trt_logger

    runtime = trt.Runtime(trt_logger(trt))
    engine = runtime.deserialize_cuda_engine((tmp_path / "b" / "model.int8.engine").read_bytes())
    info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    layers = [json.dumps(layer) for layer in info["Layers"]]
    int8 = [layer for layer in layers if "Int8" in layer]
    assert int8, layers[:5]
    if ver < (10, 1):
        convs = json.loads((tmp_path / "b" / "calib.json").read_text())["tensorrt"]["int8_convs"]
        assert all(any(conv in layer for layer in int8) for conv in convs), (convs, int8)
