"""The onnxruntime CUDA runner and the PyTorch CUDA anchor (marked ``gpu``; skipped without
onnxruntime's CUDA EP and a GPU, or without a CUDA torch for the anchor)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from matting_deploy.bundle import Bundle
from matting_deploy.cli import main
from matting_deploy.runtimes.onnxruntime_runner import OrtRunner, graph_ids_supported
from tests.fixtures import frames, make_runtime_bundle

pytestmark = pytest.mark.gpu


def on_gpu(value) -> bool:
    return value.device_name().lower() in ("cuda", "gpu")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A runtime bundle, once a CUDA session has really run on this machine."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDAExecutionProvider")
    root = make_runtime_bundle(tmp_path_factory.mktemp("cuda") / "rvm", "rvm", int8=True)
    b = Bundle.open(root)
    # The bare onnxruntime session (none of our code) says whether the provider is usable here;
    # anything our runner does wrong afterwards fails the tests instead of skipping them.
    try:
        bare = ort.InferenceSession(str(b.artifact_path("fp32")),
                                    providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own refusal: no GPU, driver or CUDA libraries
        pytest.skip(f"onnxruntime cannot create a CUDA session here: {e}")
    if bare.get_providers()[0] != "CUDAExecutionProvider":
        pytest.skip("the CUDA EP did not load (no usable GPU or CUDA libraries)")
    return b


def test_cuda_runner_equals_cpu_over_rvm_frames_with_states_on_device(bundle):
    cpu = OrtRunner.from_bundle(bundle, "fp32", "cpu")
    gpu = OrtRunner.from_bundle(bundle, "fp32", "cuda")
    assert gpu.bound is not None and gpu.capture_note.startswith("I/O binding on cuda")
    assert on_gpu(gpu.bound.values["src"])
    assert all(on_gpu(v) for pair in gpu.bound.bufs.values() for v in pair)
    for frame in frames(5):
        want, got = cpu.run(frame), gpu.run(frame)
        assert set(got) == {"pha", "fgr"}  # r1o..r4o stay on the device
        for name in got:  # the CUDA EP may use TF32 convolutions
            np.testing.assert_allclose(got[name], want[name], atol=2e-3, rtol=0)
    for name, value in cpu.state.items():
        np.testing.assert_allclose(gpu.state[name], value, atol=2e-3, rtol=0)
    gpu.reset()
    assert all(not v.any() for v in gpu.state.values())


def test_cuda_graph_replay_equals_plain_bound_run(bundle):
    if not graph_ids_supported():
        pytest.skip(f"onnxruntime {ort.__version__} has no gpu_graph_id run option")
    graph = OrtRunner.from_bundle(bundle, "fp32", "cuda", capture=True)
    plain = OrtRunner.from_bundle(bundle, "fp32", "cuda", capture=False)
    assert graph.captures and "CUDA graph: on" in graph.capture_note, graph.capture_note
    assert "no CUDA graph: capture off" in plain.capture_note
    seq = frames(10)  # onnxruntime captures after a few plain runs per graph id: replays follow
    for frame in seq:
        want, got = plain.run(frame), graph.run(frame)
        for name in got:
            np.testing.assert_allclose(got[name], want[name], atol=1e-4, rtol=0)
    assert graph.bound.note is None, graph.bound.note  # no run-time fallback happened
    graph.reset()
    plain.reset()
    np.testing.assert_allclose(graph.run(seq[4])["pha"], plain.run(seq[4])["pha"], atol=1e-4)


def test_int8_runs_bound_and_says_why_capture_is_off(bundle):
    cpu = OrtRunner.from_bundle(bundle, "int8", "cpu")
    gpu = OrtRunner.from_bundle(bundle, "int8", "cuda")
    assert gpu.bound is not None
    if not gpu.captures:  # the usual case for Q/DQ graphs: nodes outside the CUDA EP
        reason = gpu.capture_note.split("no CUDA graph: ", 1)[1]
        assert len(reason.split(";")[0]) > 10 and "\n" not in gpu.capture_note
    for frame in frames(3):
        np.testing.assert_allclose(gpu.run(frame)["pha"], cpu.run(frame)["pha"], atol=0.05)


def test_device_resident_io_on_cuda(bundle):
    host = OrtRunner.from_bundle(bundle, "fp32", "cuda")
    dev = OrtRunner.from_bundle(bundle, "fp32", "cuda")
    for frame in frames(4):
        want = host.run(frame)
        outs = dev.run_on_device(ort.OrtValue.ortvalue_from_numpy(frame, "cuda", 0))
        assert on_gpu(outs["pha"])
        np.testing.assert_allclose(outs["pha"].numpy(), want["pha"], atol=1e-4, rtol=0)


def test_pinned_host_buffers_with_pycuda(bundle):
    pytest.importorskip("pycuda.driver", reason="pycuda is not installed")
    runner = OrtRunner.from_bundle(bundle, "fp32", "cuda")
    assert runner.host_io == "pinned", runner.capture_note
    pageable = OrtRunner.from_bundle(bundle, "fp32", "cuda", pinned=False)
    frame = frames(1)[0]
    np.testing.assert_allclose(runner.run(frame)["pha"], pageable.run(frame)["pha"], atol=1e-4)


def test_bench_with_torch_cuda_graph_anchor(bundle, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this torch has no CUDA")
    out = tmp_path / "rvm"
    res = CliRunner().invoke(main, ["export", "--model", "rvm", "--height", "64", "--width", "96",
                                    "--fp16", "--out", str(out)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["bench", "--bundle", str(out), "--backend", "cuda",
                                    "--iters", "20", "--warmup", "5", "--anchor", "torch",
                                    "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    for row in rows:
        assert "CUDA graph" in row["anchor"]["label"] and row["vs_anchor"] > 0
        assert row["device_vs_anchor"] > 0 and row["capture_note"].startswith("I/O binding on cuda")


def test_bgm_cuda_anchor_takes_plate_and_mask(bundle, tmp_path):
    """Background Matting on CUDA: the runner (three bound inputs) beside its CUDA-graph anchor
    (three pinned inputs), outputs of both equal within FP32 tolerance."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this torch has no CUDA")
    from matting_deploy.benchmark.anchor import make_anchor
    from matting_deploy.export.parity import parity_frames

    out = tmp_path / "bgm"
    res = CliRunner().invoke(main, ["export", "--model", "bgm", "--height", "64", "--width", "64",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    b = Bundle.open(out)
    frame = parity_frames("bgm", 64, 64, 1)[0]
    anchor = make_anchor("torch", b, "fp32", "cuda", frame["src"],
                         extra={"bgr": frame["bgr"], "seg": frame["seg"]})
    try:
        pha, fgr = anchor.host_call()
    finally:
        anchor.close()
    ref = OrtRunner.from_bundle(b, "fp32", "cuda").run(**frame)
    np.testing.assert_allclose(pha, ref["pha"], atol=2e-3)
    np.testing.assert_allclose(fgr, ref["fgr"], atol=2e-3)
    res = CliRunner().invoke(main, ["bench", "--bundle", str(out), "--backend", "cuda",
                                    "--iters", "5", "--warmup", "2", "--anchor", "torch"])
    assert res.exit_code == 0 and "x anchor" in res.output, res.output
