"""Background Matting v1 through every stage on a tiny generated BGM-layout set (64x64 bundle):
export (parity, FP16 guard), calibrate, validate, --seg-bundle, runners, infer, bench, C surface."""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from matting_deploy.bundle import Bundle
from matting_deploy.check import TARGETS
from matting_deploy.check.load import check_bundle_dir
from matting_deploy.cli import main
from matting_deploy.data.bgm import BgmInputs, official_seg
from matting_deploy.data.imaging import resize_plane
from matting_deploy.errors import MattingDeployError
from matting_deploy.export.parity import parity_frames
from matting_deploy.export.pipeline import ExportOptions, export_bundle
from matting_deploy.infer.postprocess import official
from matting_deploy.runtimes import capi
from matting_deploy.runtimes.onnxruntime_runner import OrtRunner
from matting_deploy.runtimes.segmenter import BundleSegmenter
from tests.fixtures import NEEDS_TORCH, make_runtime_bundle
from tests.fixtures.images import _save, _scene

HW = 64


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    pytest.importorskip("torch", reason=NEEDS_TORCH)  # the BGM bundle is exported from the PyTorch network
    out = tmp_path_factory.mktemp("bgm") / "bundle"
    export_bundle(ExportOptions("bgm", out, height=HW, width=HW, fp16=True), log=lambda m: None)
    return out


def make_bgm_data(root: Path, n: int = 4, size: tuple[int, int] = (64, 48), seg: bool = True) -> Path:
    """PPM-100 layout plus back/ (the exact plate of each composite) and seg/ (a loose mask)."""
    rng = np.random.default_rng(3)
    w, h = size
    for i in range(n):
        _, matte = _scene(rng, h, w, h * rng.uniform(0.45, 0.6), w * rng.uniform(0.35, 0.65))
        plate = np.clip(0.3 + 0.2 * rng.standard_normal((h, w, 3)), 0, 1)
        fg = np.clip(0.8 + 0.1 * rng.standard_normal((h, w, 3)), 0, 1)
        _save(root / "image" / f"{i:03d}.png", matte[..., None] * fg + (1 - matte[..., None]) * plate)
        _save(root / "matte" / f"{i:03d}.png", matte)
        _save(root / "back" / f"{i:03d}.png", plate)
        if seg:
            _save(root / "seg" / f"{i:03d}.png", (matte > 0.1).astype(np.float32))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_bgm_data(tmp_path_factory.mktemp("bgmdata"))


def test_export_contract_and_parity(bundle):
    b = Bundle.open(bundle)
    model = onnx.load(bundle / "model.onnx")
    assert [i.name for i in model.graph.input] == ["src", "bgr", "seg"]
    assert [o.name for o in model.graph.output] == ["pha", "fgr"]
    assert b.input_hw == (HW, HW) and set(b.artifacts) == {"fp32", "fp16"}
    parity = b.manifest["parity"]
    assert parity["fp32"]["max_abs_all"] <= 1e-4 and parity["fp16"]["nonfinite"] == 0
    assert 0 < parity["fp32"]["max_activation"] < 65504
    # The parity frames give a non-trivial alpha, so the comparison has teeth.
    runner = OrtRunner.from_bundle(b)
    pha = [runner.run(**f)["pha"] for f in parity_frames("bgm", HW, HW, 2)]
    assert all(p.std() > 0.01 for p in pha) and np.abs(pha[0] - pha[1]).max() > 0.01


@pytest.mark.parametrize("args,message", [
    (["--height", "62"], "divisible by 4"),
    (["--height", "4", "--width", "4"], "at least 8"),
    (["--from-onnx", "x.onnx"], "--from-onnx"),
])
def test_export_bad_sizes_are_one_line(tmp_path, args, message):
    res = cli("export", "--model", "bgm", *args, "--out", tmp_path / "b")
    assert res.exit_code == 2 and message in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_runner_extra_input_errors(bundle):
    runner = OrtRunner.from_bundle(Bundle.open(bundle))
    src = np.zeros((1, 3, HW, HW), np.float32)
    seg = np.zeros((1, 1, HW, HW), np.float32)
    with pytest.raises(MattingDeployError, match="input 'bgr'.*missing.*run\\(src, bgr=..., seg=...\\)"):
        runner.run(src)
    with pytest.raises(MattingDeployError, match="no input 'multi'"):
        runner.run(src, bgr=src, seg=seg, multi=src)
    with pytest.raises(MattingDeployError, match="bgr must be"):
        runner.run(src, bgr=src[..., :8], seg=seg)
    out = runner.run(src, bgr=src, seg=seg)
    assert out["pha"].shape == (1, 1, HW, HW) and out["fgr"].shape == (1, 3, HW, HW)


def test_bound_runner_feeds_every_input(bundle):
    """The I/O-binding path (the CUDA runner's, here on CPU buffers) binds bgr and seg too."""
    b = Bundle.open(bundle)
    plain, bound = OrtRunner.from_bundle(b), OrtRunner.from_bundle(b, binding=True)
    assert bound.bound is not None and set(bound.device_inputs()) == {"src", "bgr", "seg"}
    frames = parity_frames("bgm", HW, HW, 2)
    for frame in frames:
        want, got = plain.run(**frame), bound.run(**frame)
        for name in ("pha", "fgr"):
            np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-6)
    bare = bound.bare_call(**frames[0])()
    np.testing.assert_allclose(bare[0], plain.run(**frames[0])["pha"], rtol=0, atol=1e-6)
    with pytest.raises(MattingDeployError, match="input 'seg'.*missing"):
        bound.run(frames[0]["src"], bgr=frames[0]["bgr"])
    with pytest.raises(MattingDeployError, match="bgr must be"):
        bound.run(frames[0]["src"], bgr=frames[0]["bgr"][..., :8], seg=frames[0]["seg"])
    bound.close()


def test_export_calibrate_validate_end_to_end(bundle, data, tmp_path):
    res = cli("calibrate", "--int8", "--bundle", bundle, "--data", data, "--num", 4, "--force")
    assert res.exit_code == 0, res.output
    calib = json.loads((bundle / "calib.json").read_text())
    assert calib["image_count"] == 4 and calib["quantized_nodes"] > 10
    res = cli("validate", "--bundle", bundle, "--data", data, "--report", tmp_path / "r",
              "--max-mse-ratio", 100, "--max-miou-drop", 1)
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["protocol"]["seg"] == "seg/ files"
    rows = {r["artifact"] for r in report["results"]}
    assert {"fp32", "fp16", "int8", "int8 implicit-emulated"} <= rows  # the emulated row takes bgr/seg too


@pytest.mark.parametrize("target", TARGETS)
def test_int8_artifact_passes_every_tensorrt_rule(bundle, data, target):
    """The calibrated BGM bundle (model.onnx, model.int8.onnx, calib.cache) passes every check rule
    of every target, fp16-outside-qdq on model.int8.onnx (TensorRT 10/11) included."""
    if not (bundle / "model.int8.onnx").exists():
        res = cli("calibrate", "--int8", "--bundle", bundle, "--data", data, "--num", 4, "--force")
        assert res.exit_code == 0, res.output
    report = check_bundle_dir(bundle, target)
    assert not report.failed, report.failed
    ran = {(r.artifact, r.rule) for r in report.results if r.ok}
    if target == "tensorrt-8.6":
        assert {("calib.cache", rule) for rule in ("cache-header", "cache-coverage", "cache-stray-int8")} <= ran
    else:
        assert {("model.int8.onnx", rule) for rule in ("dq-int8", "qdq-zero-point", "weight-scale-axis",
                                                       "activation-per-tensor", "qdq-fusable",
                                                       "fp16-outside-qdq")} <= ran
    assert ("model.onnx", "parser-ops") in ran


def test_missing_back_is_a_one_line_error(bundle, tmp_path):
    data = make_bgm_data(tmp_path / "d", n=2)
    shutil.rmtree(data / "back")
    for args in (["validate", "--bundle", bundle, "--data", data, "--report", tmp_path / "r"],
                 ["calibrate", "--int8", "--bundle", bundle, "--data", data, "--force"]):
        res = cli(*args)
        assert res.exit_code == 2
        assert res.output.strip() == f"error: {data / 'back'}: missing (a Background Matting bundle needs " \
                                     "the clean plates back/NAME.* beside image/)"
    assert not (tmp_path / "r").exists()


def test_official_seg_processing():
    mask = np.zeros((120, 120), np.float32)
    mask[10:110, 20:100] = 0.3  # above the threshold: becomes 1
    mask[3:7, 3:7] = 1.0  # a 4-pixel speck: eroded away
    seg = official_seg(mask)
    assert seg[60, 60] == 1.0 and seg[5, 5] == 0.0
    assert 0 < seg[60, 18] < 0.5 < seg[60, 22] < 1  # eroded 10, dilated 10 back, blurred
    assert seg.max() <= 1 and np.all(np.round(seg * 255) == seg * 255)  # 8-bit steps


def test_seg_bundle_makes_the_mask_and_validate_runs(bundle, tmp_path):
    data = make_bgm_data(tmp_path / "d", n=2, seg=False)
    seg_bundle = make_runtime_bundle(tmp_path / "rvm", "rvm")
    seg = BundleSegmenter(seg_bundle)
    image = np.asarray(np.random.default_rng(0).random((48, 64, 3)), np.float32)
    raw = seg(image)
    extra = BgmInputs(HW, HW, mask_fn=seg).extra(data / "image" / "000.png", image)
    assert raw.shape == (48, 64) and extra["seg"].shape == (1, 1, HW, HW)
    assert np.allclose(extra["seg"][0, 0], resize_plane(official_seg(raw), HW, HW))
    res = cli("validate", "--bundle", bundle, "--data", data, "--artifacts", "fp32", "--report", tmp_path / "r",
              "--seg-bundle", seg_bundle)
    assert res.exit_code == 0, res.output
    assert "--seg-bundle" in json.loads((tmp_path / "r" / "report.json").read_text())["protocol"]["seg"]
    res = cli("validate", "--bundle", bundle, "--data", data, "--artifacts", "fp32", "--report", tmp_path / "r2")
    assert res.exit_code == 2 and "seg/000.*: no person mask" in res.output


def test_official_postprocess():
    alpha = np.zeros((20, 20), np.float32)
    alpha[2:10, 2:10] = 0.99  # the big component
    alpha[15:17, 15:17] = 0.5  # a small one: dropped
    alpha[2:10, 10] = 0.005  # below 0.05: not part of any component
    image, fgr = np.full((20, 20, 3), 0.7, np.float32), np.full((20, 20, 3), 0.2, np.float32)
    a, fg, found = official(alpha, fgr, image)
    assert found and a[5, 5] == pytest.approx(0.99) and a[16, 16] == 0
    assert fg[5, 5, 0] == pytest.approx(0.7) and fg[16, 16, 0] == 0  # image where pha > 0.975
    alpha[2:10, 2:10] = 0.9
    assert official(alpha, fgr, image)[1][5, 5, 0] == pytest.approx(0.2)  # predicted fg below 0.975
    assert official(np.zeros((4, 4), np.float32), fgr[:4, :4], image[:4, :4])[2] is False


def test_infer_with_plate_seg_bundle_and_postprocess(bundle, tmp_path):
    data = make_bgm_data(tmp_path / "d", n=2, seg=False)
    seg_bundle = make_runtime_bundle(tmp_path / "rvm", "rvm")
    res = cli("infer", "--bundle", bundle, "--input", data / "image", "--bgr", data / "back",
              "--seg-bundle", seg_bundle, "--postprocess", "official", "--out", tmp_path / "o", "--quiet")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "o" / "alpha").iterdir()) == ["000.png", "001.png"]
    res = cli("infer", "--bundle", bundle, "--input", data / "image", "--seg-bundle", seg_bundle,
              "--out", tmp_path / "o2")
    assert res.exit_code == 2 and "--bgr" in res.output and not (tmp_path / "o2").exists()


def test_bench_rows(bundle):
    from matting_deploy.benchmark.pipeline import run_bench

    result = run_bench(bundle, ["fp32", "fp16"], iters=2, warmup=0, log=lambda m: None)
    assert [r["artifact"] for r in result["rows"]] == ["fp32", "fp16"]
    assert all(r["p50_ms"] > 0 for r in result["rows"])
    anchored = run_bench(bundle, ["fp32"], iters=2, warmup=0, log=lambda m: None, anchor="torch")
    row = anchored["rows"][0]
    assert row["anchor"]["p50_ms"] > 0 and "eager cpu" in row["anchor"]["label"]


def test_anchor_runs_the_network_on_all_three_inputs(bundle):
    """The PyTorch anchor gets src, bgr and seg like the runner (export's seeded weights: the
    anchor's network is the bundle's, so their outputs agree), and needs every one of them."""
    from matting_deploy.benchmark.anchor import make_anchor

    b = Bundle.open(bundle)
    frame = parity_frames("bgm", HW, HW, 1)[0]
    anchor = make_anchor("torch", b, "fp32", "cpu", frame["src"],
                         extra={"bgr": frame["bgr"], "seg": frame["seg"]})
    pha, fgr = anchor.host_call()
    ref = OrtRunner.from_bundle(b).run(**frame)
    assert np.abs(pha - ref["pha"]).max() < 1e-4 and np.abs(fgr - ref["fgr"]).max() < 1e-4
    assert ref["pha"].std() > 0.01  # a non-trivial matte: the comparison has teeth
    with pytest.raises(MattingDeployError, match="^--anchor torch: .*needs input\\(s\\) seg beside src"):
        make_anchor("torch", b, "fp32", "cpu", frame["src"], extra={"bgr": frame["bgr"]})


DRIVER = r"""
#include <stddef.h>
#include "matting_deploy.h"
int run3(const md_api *api, const char *bundle, const float *src, const float *bgr, const float *seg,
         int hw, float *pha, float *fgr, int *codes)
{
    void *h = NULL;
    const char *names[] = {"seg", "src", "bgr"};  /* any order */
    const float *inputs[] = {seg, src, bgr};
    if (api->abi_version != MD_ABI_VERSION) return -100;
    int rc = api->open(bundle, "fp32", "cpu", &h);
    if (rc != MD_OK) return rc;
    codes[0] = api->run(h, src, 1, hw, hw, pha, fgr);            /* md_run: needs run_ex */
    codes[1] = api->run_ex(h, 2, names + 1, inputs + 1, 1, hw, hw, pha, fgr);  /* seg missing */
    rc = api->run_ex(h, 3, names, inputs, 1, hw, hw, pha, fgr);
    api->close(h);
    return rc;
}
"""


def test_c_caller_run_ex_matches_python(bundle, tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler (cc) on this machine")
    (tmp_path / "d.c").write_text(DRIVER)
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-shared", "-fPIC", "-I", str(capi.header_path().parent),
                    str(tmp_path / "d.c"), "-o", str(tmp_path / "d.so")], check=True)
    dll = ctypes.CDLL(str(tmp_path / "d.so"))
    frame = parity_frames("bgm", HW, HW, 1)[0]
    pha, fgr = np.zeros((1, 1, HW, HW), np.float32), np.zeros((1, 3, HW, HW), np.float32)
    codes = (ctypes.c_int * 2)()
    f32 = ctypes.POINTER(ctypes.c_float)
    ptr = [frame[k].ctypes.data_as(f32) for k in ("src", "bgr", "seg")]
    rc = dll.run3(ctypes.byref(capi.api()), str(bundle).encode(), *ptr, HW, pha.ctypes.data_as(f32),
                  fgr.ctypes.data_as(f32), codes)
    assert rc == 0, capi.last_error()
    assert list(codes) == [capi.MD_ERR_ARGUMENT, capi.MD_ERR_ARGUMENT]
    ref = OrtRunner.from_bundle(Bundle.open(bundle)).run(**frame)
    np.testing.assert_allclose(pha, ref["pha"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(fgr, ref["fgr"], rtol=0, atol=1e-6)
    assert pha.std() > 0.01 and capi.open_handles() == 0


def test_jitter_is_refused_for_bgm_in_one_line_and_nothing_is_written(bundle, data):
    """Jitter crops the image, which would part it from BGM's background plate."""
    before = {p.name: p.read_bytes() for p in bundle.iterdir() if p.is_file()}
    res = cli("calibrate", "--int8", "--bundle", bundle, "--data", data, "--num", 4, "--augment", "jitter", "--force")
    assert res.exit_code == 2 and res.output.strip().splitlines()[-1].startswith("error: --augment: jitter"), res.output
    assert "Traceback" not in res.output
    assert {p.name: p.read_bytes() for p in bundle.iterdir() if p.is_file()} == before
