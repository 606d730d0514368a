"""The I/O-binding path of the onnxruntime runner on CPU: parity with ``session.run``, states in
fixed ping-pong buffers, device-resident I/O, the capture fallback, and bench's bound columns."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from matting_deploy.benchmark.pipeline import measure
from matting_deploy.bundle import Bundle
from matting_deploy.errors import MattingDeployError
from matting_deploy.runtimes.onnxruntime_runner import OrtRunner
from matting_deploy.runtimes.ort_binding import GRAPH_ID_KEY, BoundSession, NumpyCopies, ort_reason
from tests.fixtures import H, W, frames, make_runtime_bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bind")
    return {m: Bundle.open(make_runtime_bundle(root / m, m, int8=True)) for m in ("rvm", "modnet")}


@pytest.mark.parametrize("model", ["rvm", "modnet"])
@pytest.mark.parametrize("artifact", ["fp32", "int8"])
def test_binding_equals_session_run_over_frames(bundles, model, artifact):
    plain = OrtRunner.from_bundle(bundles[model], artifact)
    bound = OrtRunner.from_bundle(bundles[model], artifact, binding=True)
    assert plain.bound is None and bound.bound is not None
    assert bound.capture_note == "I/O binding on cpu; no CUDA graph on cpu; host I/O numpy (cpu)"
    seq = frames(5)
    for frame in seq:
        want, got = plain.run(frame), bound.run(frame)
        assert set(got) == ({"pha", "fgr"} if model == "rvm" else {"pha"})  # states stay put
        for name, value in got.items():
            np.testing.assert_array_equal(value, want[name])
    assert set(bound.state) == set(plain.state)
    for name, value in plain.state.items():  # the ping-pong buffer read next is the last output
        np.testing.assert_array_equal(bound.state[name], value)
    if model == "rvm":  # calibration's input dict carries the device state
        np.testing.assert_array_equal(bound.model_inputs(seq[0])["r1i"],
                                      plain.model_inputs(seq[0])["r1i"])
    plain.reset()
    bound.reset()
    assert all(not v.any() for v in bound.state.values())
    np.testing.assert_array_equal(bound.run(seq[3])["pha"], plain.run(seq[3])["pha"])


def test_results_are_copies_not_the_bound_buffers(bundles):
    runner = OrtRunner.from_bundle(bundles["rvm"], "fp32", binding=True)
    a = runner.run(frames(1)[0])["pha"]
    keep = a.copy()
    runner.run(frames(2)[1])
    np.testing.assert_array_equal(a, keep)


def test_device_resident_io_matches_host_io(bundles):
    host = OrtRunner.from_bundle(bundles["rvm"], "fp32", binding=True)
    dev = OrtRunner.from_bundle(bundles["rvm"], "fp32", binding=True)
    for t, frame in enumerate(frames(4)):
        want = host.run(frame)
        if t % 2:  # either hand over an OrtValue on the device ...
            outs = dev.run_on_device(ort.OrtValue.ortvalue_from_numpy(frame))
        else:  # ... or write into the runner's own src buffer
            dev.device_inputs()["src"].update_inplace(frame)
            outs = dev.run_on_device()
        assert isinstance(outs["pha"], ort.OrtValue)
        np.testing.assert_array_equal(outs["pha"].numpy(), want["pha"])
        np.testing.assert_array_equal(outs["fgr"].numpy(), want["fgr"])
    plain = OrtRunner.from_bundle(bundles["rvm"], "fp32")
    with pytest.raises(MattingDeployError, match="device-resident I/O needs I/O binding"):
        plain.run_on_device()


def test_bound_src_shape_is_checked(bundles):
    runner = OrtRunner.from_bundle(bundles["modnet"], "fp32", binding=True)
    with pytest.raises(MattingDeployError, match=rf"src must be \(1, 3, {H}, {W}\), got \(1, 3, 8, 8\)"):
        runner.run(np.zeros((1, 3, 8, 8), np.float32))


def test_dynamic_bundle_keeps_session_run_and_says_so(bundles):
    b = bundles["modnet"]
    runner = OrtRunner(b.artifact_path("fp32"), b.states, None, "cpu", dynamic=True, binding=True)
    assert runner.bound is None
    assert runner.capture_note.startswith("no I/O binding: dynamic shapes")


class _CaptureFails:
    """A CPU session whose bound runs fail like a refused stream capture."""

    def __init__(self, session):
        self.session, self.calls = session, []

    def __getattr__(self, name):
        return getattr(self.session, name)

    def run_with_iobinding(self, binding, options):
        self.calls.append(options.get_run_config_entry(GRAPH_ID_KEY))
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : operation not permitted when stream "
                           "is capturing\nmore detail")


def test_capture_failing_at_run_time_reruns_without_capture(bundles):
    b = bundles["rvm"]
    real = ort.InferenceSession(str(b.artifact_path("fp32")), providers=["CPUExecutionProvider"])
    failing = _CaptureFails(real)
    bound = BoundSession(failing, b.states, NumpyCopies(), capture=True, reopen=lambda: real)
    plain = OrtRunner.from_bundle(b, "fp32")
    for frame in frames(3):
        got, want = bound.run(frame), plain.run(frame)
        np.testing.assert_array_equal(got["pha"], want["pha"])
    assert failing.calls == ["1"]  # graph id of binding 0; afterwards the plain session runs
    assert bound.note == ("no CUDA graph: capture failed at run time (operation not permitted "
                          "when stream is capturing)")
    assert [o.get_run_config_entry(GRAPH_ID_KEY) for o in bound.options] == ["-1", "-1"]
    without = BoundSession(_CaptureFails(real), b.states, NumpyCopies(), capture=False)
    with pytest.raises(RuntimeError, match="stream is capturing"):  # no capture: a real error
        without.run(frames(1)[0])


def test_ort_reason_drops_the_status_prefix():
    err = RuntimeError("[ONNXRuntimeError] : 1 : FAIL : This session cannot use the CUDA Graph "
                       "feature as requested by the user  as all compute graph nodes have not "
                       "been partitioned to the CUDA EP.\nstack")
    assert ort_reason(err).startswith("This session cannot use the CUDA Graph feature")
    assert "\n" not in ort_reason(err)


def test_measure_times_the_bound_path(bundles):
    runner = OrtRunner.from_bundle(bundles["rvm"], "fp32", binding=True)
    row = measure(runner, frames(1)[0], iters=6, warmup=1)
    for key in ("bare", "device"):
        assert 0 < row[key]["p50_ms"] <= row[key]["p99_ms"]
    assert "overhead_pct" in row and row["runner_cost_us"] > 0
    assert row["capture_note"].startswith("I/O binding on cpu")
