"""Runners, OFD, the TensorRT build plan, and `build` / `bench` / `infer` through the CLI."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import struct
import sys
import types

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from PIL import Image

from matting_deploy.bundle import Bundle, trt_cache
from matting_deploy.cli import main
from matting_deploy.data.imaging import load_matte
from matting_deploy.data.preprocess import alpha_to_source, to_model_input
from matting_deploy.errors import MattingDeployError
from matting_deploy.runtimes import trt_build
from matting_deploy.runtimes.ofd import OfdRunner, OneFrameDelay, ofd_step, smooth_sequence
from matting_deploy.runtimes.open import io_spec, open_runner
from tests.fixtures import H, W, frames, make_runtime_bundle


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture()
def rvm(tmp_path):
    return make_runtime_bundle(tmp_path / "rvm", "rvm", int8=True)


@pytest.fixture()
def modnet(tmp_path):
    return make_runtime_bundle(tmp_path / "modnet", "modnet", int8=True)


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ----------------------------------------------------------------------------- runners


def test_rvm_state_carried_equals_stateless_graph_fed_its_own_states(rvm):
    seq = frames(5)
    runner = open_runner(rvm, "fp32", "cpu")
    got = [runner.run(f) for f in seq]

    session = ort.InferenceSession(str(rvm / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    bundle = Bundle.open(rvm)
    state = {s.input: np.zeros(s.shape, np.float32) for s in bundle.states}
    for t, frame in enumerate(seq):
        outs = dict(zip(names, session.run(None, {"src": frame, **state}), strict=True))
        state = {s.input: outs[s.output] for s in bundle.states}
        for key in ("pha", "fgr", "r1o", "r4o"):
            np.testing.assert_array_equal(got[t][key], outs[key])
    # The state matters: the last frame from zero state differs from the carried one.
    runner.reset()
    fresh = runner.run(seq[-1])
    assert np.abs(fresh["pha"] - got[-1]["pha"]).max() > 0.01
    # ...and reset really is zero state: it equals frame 0 of the sequence when fed frame 0.
    runner.reset()
    np.testing.assert_array_equal(runner.run(seq[0])["pha"], got[0]["pha"])
    runner.close()


def test_open_runner_int8_and_errors(rvm, modnet, tmp_path):
    int8 = open_runner(modnet, "int8", "cpu")
    fp32 = open_runner(modnet, "fp32", "cpu")
    a, b = int8.run(frames(1)[0])["pha"], fp32.run(frames(1)[0])["pha"]
    assert 0 < np.abs(a - b).max() < 0.05  # Q/DQ graph: close to FP32 but not identical
    with pytest.raises(MattingDeployError, match="unknown backend 'gpu'"):
        open_runner(modnet, "fp32", "gpu")
    with pytest.raises(MattingDeployError, match="open it with backend 'tensorrt'"):
        open_runner(modnet, "trt-fp16", "cpu")
    with pytest.raises(MattingDeployError, match="no 'fp16' artifact"):
        open_runner(modnet, "fp16", "cpu")
    with pytest.raises(MattingDeployError, match="'bf16' is an execution precision of OpenVINO"):
        open_runner(modnet, "bf16", "tensorrt")
    with pytest.raises(MattingDeployError, match="unknown TensorRT engine 'fp8'"):
        open_runner(modnet, "fp8", "tensorrt")
    onnx_file = modnet / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")
    with pytest.raises(MattingDeployError, match="sha256 differs"):
        open_runner(modnet, "fp32", "cpu")
    assert io_spec(Bundle.open(rvm)) == io_spec(Bundle.open(rvm))
    spec = io_spec(Bundle.open(rvm))
    assert (spec.n, spec.h, spec.w, spec.has_fgr) == (1, H, W, True)
    assert io_spec(Bundle.open(modnet)).has_fgr is False


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt installed")
def test_tensorrt_backend_without_tensorrt_is_a_clear_error(modnet):
    with pytest.raises(MattingDeployError, match=r"pip install 'matting-deploy\[trt\]'"):
        open_runner(modnet, "fp16", "tensorrt")


# ----------------------------------------------------------------------------- OFD


def _flicker_sequence():
    """Steady frames, a one-frame flicker at t=3 on one region, then a real lasting change."""
    base = np.zeros((1, 1, 8, 8), np.float32)
    base[..., 2:6, 2:6] = 1.0
    seq = [base.copy() for _ in range(9)]
    seq[3][..., 0:2, 0:2] = 0.9  # background flickers on for one frame
    seq[3][..., 3, 3] = 0.05  # foreground flickers off for one frame
    for t in range(6, 9):
        seq[t][..., 6:8, 6:8] = 0.8  # appears and stays: not a flicker
    return base, seq


def test_ofd_removes_one_frame_flicker_and_keeps_the_rest():
    base, seq = _flicker_sequence()
    out = list(smooth_sequence(seq))
    assert len(out) == len(seq)
    np.testing.assert_array_equal(out[3], base)  # flicker gone
    for t in (0, 1, 2, 4, 5):
        np.testing.assert_array_equal(out[t], seq[t])  # steady frames untouched
    for t in (6, 7, 8):
        np.testing.assert_array_equal(out[t], seq[t])  # a lasting change survives, incl. onset
    # Below the threshold nothing changes; the rule needs both neighbours to agree.
    small = [base, base + 0.05, base]
    np.testing.assert_array_equal(ofd_step(*small), small[1])
    ramp = [base * 0.0, base * 0.5, base * 1.0]
    np.testing.assert_array_equal(ofd_step(*ramp), ramp[1])


def test_ofd_streaming_has_one_frame_of_delay():
    _, seq = _flicker_sequence()
    ofd = OneFrameDelay()
    assert ofd.push(seq[0]) is None
    first = ofd.push(seq[1])
    np.testing.assert_array_equal(first, seq[0])
    with pytest.raises(MattingDeployError):
        OneFrameDelay(threshold=1.5)


class _Replay:
    """A runner that replays a fixed alpha sequence (and tags fgr with the frame index)."""

    def __init__(self, seq):
        self.seq, self.t, self.resets = seq, 0, 0

    def run(self, src):
        out = {"pha": self.seq[self.t], "fgr": np.full((1, 3, 1, 1), self.t, np.float32)}
        self.t += 1
        return out

    def reset(self):
        self.t, self.resets = 0, self.resets + 1

    def close(self):
        pass


def test_ofd_runner_delays_outputs_consistently():
    base, seq = _flicker_sequence()
    runner = OfdRunner(_Replay(seq))
    got = [runner.run(None) for _ in seq]
    assert got[0] == {}
    got = got[1:] + [runner.flush()]
    assert [int(g["fgr"].flat[0]) for g in got] == list(range(len(seq)))  # fgr follows its frame
    np.testing.assert_array_equal(got[3]["pha"], base)
    assert runner.flush() == {}
    runner.reset()
    assert runner.runner.resets == 1 and runner.run(None) == {}


def test_open_runner_with_ofd(modnet):
    runner = open_runner(modnet, "fp32", "cpu", ofd=True)
    plain = open_runner(modnet, "fp32", "cpu")
    seq = frames(3)
    outs = [runner.run(f) for f in seq] + [runner.flush()]
    assert outs[0] == {}
    np.testing.assert_array_equal(outs[1]["pha"], plain.run(seq[0])["pha"])  # first frame as is
    assert len([o for o in outs if o]) == 3


# ----------------------------------------------------------------------------- build


def test_build_without_tensorrt_fails_cleanly(rvm, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    before, manifest = _files(rvm), (rvm / "manifest.json").read_bytes()
    res = cli("build", "--bundle", rvm, "--precision", "fp16")
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: TensorRT is not installed")
    assert "pip install 'matting-deploy[trt]'" in lines[0]
    assert _files(rvm) == before and (rvm / "manifest.json").read_bytes() == manifest


def _has_cuda_driver() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


@pytest.mark.skipif(_has_cuda_driver(), reason="this machine has an NVIDIA driver")
def test_build_without_gpu_fails_cleanly(rvm, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    before = _files(rvm)
    res = cli("build", "--bundle", rvm, "--precision", "int8", "--timing-cache",
              tmp_path / "tc.bin")
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no NVIDIA GPU here")
    assert _files(rvm) == before and not (tmp_path / "tc.bin").exists()


def test_build_refuses_to_overwrite_an_engine(rvm):
    (rvm / "model.fp16.engine").write_bytes(b"old")
    res = cli("build", "--bundle", rvm, "--precision", "fp16")
    assert res.exit_code == 2 and "already exists (pass --force" in res.output
    assert (rvm / "model.fp16.engine").read_bytes() == b"old"


@pytest.mark.parametrize(
    "version, precision, artifact, flags, strongly_typed, cache",
    [
        ("8.6.1", "fp32", "fp32", (), False, False),
        ("8.6.1", "fp16", "fp32", ("FP16",), False, False),
        ("8.6.1", "int8", "fp32", ("INT8", "FP16"), False, True),
        ("10.0.1", "int8", "fp32", ("INT8", "FP16"), False, True),
        ("10.1.0", "int8", "int8", (), True, False),
        ("10.11.0", "fp16", "fp32", ("FP16",), False, False),
        ("10.12.0", "fp16", "fp16", (), True, False),  # the FP16 flag is deprecated from 10.12
        ("10.13.2", "fp16", "fp16", (), True, False),
        ("11.0.0", "fp16", "fp16", (), True, False),
        ("11.2.0", "int8", "int8", (), True, False),
    ],
)
def test_build_plan_per_tensorrt_version(
    tmp_path, version, precision, artifact, flags, strongly_typed, cache
):
    root = make_runtime_bundle(tmp_path / "b", "rvm", int8=True)
    bundle = Bundle.open(root)
    bundle.manifest["artifacts"]["fp16"] = "model.onnx"  # stands in for model.fp16.onnx
    (root / "calib.cache").write_text("TRT-8601-EntropyCalibration2\nsrc: 3c010204\n")
    plan = trt_build.plan_build(bundle, precision, version, rules=False)
    assert (plan.artifact, plan.flags, plan.strongly_typed, plan.calib_cache) == (
        artifact, flags, strongly_typed, cache)


def test_build_plan_names_what_is_missing(tmp_path):
    root = make_runtime_bundle(tmp_path / "b", "rvm")
    bundle = Bundle.open(root)
    with pytest.raises(MattingDeployError, match="calib.cache: missing"):
        trt_build.plan_build(bundle, "int8", "8.6.1")
    with pytest.raises(MattingDeployError, match="calibrate --int8"):
        trt_build.plan_build(bundle, "int8", "10.1.0")
    with pytest.raises(MattingDeployError, match="export with --fp16"):
        trt_build.plan_build(bundle, "fp16", "11.0.0")
    bundle.manifest["input"]["dynamic"] = True
    with pytest.raises(MattingDeployError, match="static bundles"):
        trt_build.plan_build(bundle, "fp32", "10.1.0")


def test_calibration_cache_parses_and_feeds_a_cache_only_calibrator(tmp_path):
    scales = {"src": 1 / 127, "m": 0.0123, "/enc/conv_1/Conv_output_0": 3.5e-3}
    text = "TRT-8601-EntropyCalibration2\n" + "".join(
        f"{k}: {struct.pack('>f', v).hex()}\n" for k, v in scales.items())
    path = tmp_path / "calib.cache"
    path.write_text(text)
    cache = trt_cache.read_cache(path)
    assert cache.algorithm == "EntropyCalibration2" and cache.blob == text.encode()
    assert cache.scales.keys() == scales.keys()
    for k, v in scales.items():
        assert cache.scales[k] == pytest.approx(v, rel=1e-7)

    class Base:
        def __init__(self):
            self.initialised = True

    fake_trt = types.SimpleNamespace(IInt8EntropyCalibrator2=Base)
    calib = trt_build.make_cache_calibrator(fake_trt, cache)
    assert calib.initialised and isinstance(calib, Base)
    assert calib.get_batch(["src"]) is None and calib.read_calibration_cache() == cache.blob
    cache.algorithm = "LegacyCalibration"
    with pytest.raises(MattingDeployError, match="not supported"):
        trt_build.make_cache_calibrator(fake_trt, cache)
    path.write_text("not a cache\n")
    with pytest.raises(MattingDeployError, match="calib.cache: calibration cache: missing"):
        trt_cache.read_cache(path)
    path.write_text("TRT-8601-MinMaxCalibration\nsrc: zz\n")
    with pytest.raises(MattingDeployError, match=r"calib.cache: calibration cache: .*zz.* is not a hex float32"):
        trt_cache.read_cache(path)


# ----------------------------------------------------------------------------- bench


def test_bench_cli_table_and_json(rvm, tmp_path):
    out = tmp_path / "bench.json"
    res = cli("bench", "--bundle", rvm, "--iters", 12, "--warmup", 2, "--json", out)
    assert res.exit_code == 0, res.output
    assert "p50 ms" in res.output and "overhead" in res.output
    assert "INT8: " in res.output and "than FP32 (p50)" in res.output
    assert "timing fp32, int8 on cpu" in res.output and "artifacts interleaved" in res.output
    assert "int8 (cpu): p50 " in res.output
    data = json.loads(out.read_text())
    assert [r["artifact"] for r in data["rows"]] == ["fp32", "int8"]
    for row in data["rows"]:
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["fps"] > 0 and row["bare"]["p50_ms"] > 0 and "overhead_pct" in row
    assert data["input"] == [1, 3, H, W] and data["model"] == "rvm"
    again = cli("bench", "--bundle", rvm, "--iters", 2, "--warmup", 0, "--json", out)
    assert again.exit_code == 2 and "already exists" in again.output
    bad = cli("bench", "--bundle", rvm, "--artifacts", "fp16", "--iters", 2)
    assert bad.exit_code == 2 and "no 'fp16' artifact" in bad.output


def test_bench_interleaves_the_artifacts_call_by_call():
    """Each iteration calls every artifact in turn: ratios between artifacts share the noise."""
    from matting_deploy.benchmark.pipeline import measure_together

    order = []

    class Fake:
        capture_note = None

        def __init__(self, name):
            self.name = name

        def run(self, src):
            order.append(self.name)

        def bare_call(self, src):
            return lambda: order.append(self.name + "-bare")

        def device_call(self, src):
            return None

        def cached_engine(self, src):
            return None

    rows = measure_together([(Fake("a"), None), (Fake("b"), None)], np.zeros(1), iters=3, warmup=1)
    # warm-up round, then per iteration: an untimed re-warming call, the timed run and bare call
    assert order == ["a", "a-bare", "b", "b-bare"] + ["a", "a", "a-bare", "b", "b", "b-bare"] * 3
    assert len(rows) == 2 and all(r["p50_ms"] >= 0 and "overhead_pct" in r for r in rows)


def test_speed_line_says_faster_or_slower_with_a_ratio_above_one():
    from matting_deploy.benchmark.pipeline import speed_line

    assert speed_line("fp16", 1 / 1.05) == "FP16: 1.05x slower than FP32 (p50)"
    assert speed_line("int8", 2.0) == "INT8: 2.00x faster than FP32 (p50)"


# ----------------------------------------------------------------------------- infer


def _write_frames(folder, seq, size=(60, 40)):
    folder.mkdir(parents=True)
    names = []
    for t, frame in enumerate(seq):
        img = Image.fromarray(np.uint8(np.rint(frame[0].transpose(1, 2, 0) * 255)))
        name = f"frame{t + 1}.png"  # frame10 after frame9: natural order
        img.resize(size, Image.Resampling.BILINEAR).save(folder / name)
        names.append(name)
    return names


def test_infer_frames_carry_rvm_state_at_source_size(rvm, tmp_path):
    seq = frames(11)
    names = _write_frames(tmp_path / "frames", seq)
    out = tmp_path / "out"
    res = cli("infer", "--bundle", rvm, "--artifact", "fp32", "--input", tmp_path / "frames",
              "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (out / "alpha").iterdir()) == sorted(names)
    assert sorted(p.name for p in (out / "composite").iterdir()) == sorted(names)
    # Reference: the same frames in natural order through one runner, state carried.
    from matting_deploy.data.imaging import load_image

    runner = open_runner(rvm, "fp32", "cpu")
    for name in names:
        src, geo = to_model_input(load_image(tmp_path / "frames" / name), H, W)
        want = alpha_to_source(runner.run(src)["pha"], geo)
        got = load_matte(out / "alpha" / name)
        assert got.shape == (40, 60)
        assert np.abs(got - want).max() <= 0.5 / 255 + 1e-6
    info = json.loads((out / "infer.json").read_text())
    assert info["frames"] == 11 and info["kind"] == "frames"
    again = cli("infer", "--bundle", rvm, "--input", tmp_path / "frames", "--out", out)
    assert again.exit_code == 2 and "already exists" in again.output


def test_infer_still_image_composite_letterbox_and_ofd(modnet, tmp_path):
    seq = frames(3)
    _write_frames(tmp_path / "frames", seq, size=(30, 50))
    image = tmp_path / "frames" / "frame1.png"
    bg = tmp_path / "bg.png"
    Image.new("RGB", (7, 5), (0, 0, 255)).save(bg)
    out = tmp_path / "one"
    res = cli("infer", "--bundle", modnet, "--input", image, "--out", out, "--background", bg,
              "--resize", "letterbox", "--quiet")
    assert res.exit_code == 0, res.output
    alpha = load_matte(out / "alpha" / "frame1.png")
    comp = np.asarray(Image.open(out / "composite" / "frame1.png"), np.float32) / 255
    src = np.asarray(Image.open(image), np.float32) / 255
    assert alpha.shape == (50, 30) and comp.shape == (50, 30, 3)
    blue = np.array([0, 0, 1], np.float32)
    want = alpha[..., None] * src + (1 - alpha[..., None]) * blue
    assert np.abs(comp - want).max() <= 1.5 / 255
    res = cli("infer", "--bundle", modnet, "--input", tmp_path / "frames", "--out",
              tmp_path / "ofd", "--ofd", "--quiet")
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "ofd" / "alpha").iterdir())) == 3
    assert json.loads((tmp_path / "ofd" / "infer.json").read_text())["ofd"] is True


def test_infer_bad_inputs(modnet, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    res = cli("infer", "--bundle", modnet, "--input", tmp_path / "notes.txt", "--out",
              tmp_path / "o")
    assert res.exit_code == 2 and "not an image" in res.output
    (tmp_path / "empty").mkdir()
    res = cli("infer", "--bundle", modnet, "--input", tmp_path / "empty", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "no images" in res.output
    res = cli("infer", "--bundle", modnet, "--input", tmp_path / "empty", "--out",
              tmp_path / "o", "--background", "mauve")
    assert res.exit_code == 2 and "neither a colour" in res.output
    assert not (tmp_path / "o").exists()


def test_infer_video_without_pyav_says_how_to_get_it(modnet, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av now fails, installed or not
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 64)
    res = cli("infer", "--bundle", modnet, "--input", video, "--out", tmp_path / "o")
    assert res.exit_code == 2
    assert "PyAV" in res.output and "pip install 'matting-deploy[video]'" in res.output


def test_infer_still_image_on_rvm_warms_the_state_up(rvm, tmp_path):
    _write_frames(tmp_path / "frames", frames(1), size=(W, H))
    image = tmp_path / "frames" / "frame1.png"
    res = cli("infer", "--bundle", rvm, "--input", image, "--out", tmp_path / "o",
              "--warmup-frames", 3, "--quiet")
    assert res.exit_code == 0, res.output
    from matting_deploy.data.imaging import load_image

    src, geo = to_model_input(load_image(image), H, W)
    runner = open_runner(rvm, "fp32", "cpu")
    outs = [runner.run(src) for _ in range(3)]
    got = load_matte(tmp_path / "o" / "alpha" / "frame1.png")
    assert np.abs(got - alpha_to_source(outs[-1]["pha"], geo)).max() <= 0.5 / 255 + 1e-6
    assert np.abs(got - alpha_to_source(outs[0]["pha"], geo)).max() > 2 / 255
    assert json.loads((tmp_path / "o" / "infer.json").read_text())["warmup_frames"] == 3
