"""A table of bad inputs against every command: exit code 2, exactly one ``error:`` line naming
the file or option, no traceback, and every folder the case touches byte-identical afterwards.

Fixtures are tiny and built once per module; each case runs in-process on copies of them.
Faults (signals, read-only and full file systems, locks) are in test_faults.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from matting_deploy.bundle import StateSpec
from matting_deploy.cli import main
from tests.fixtures import (
    H,
    W,
    io,
    make_bundle,
    make_calib_bundle,
    make_images,
    make_ppm_data,
    official_rvm_like,
    tiny_graph,
    write_bundle,
)
from tests.fixtures.faults import (
    Case,
    bomb_png,
    error_lines,
    fake_rvm_pha3,
    float_tiff,
    pha3_graph,
    rvm_pha3_graph,
    snapshot,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Every input a case starts from (never modified: cases work on copies)."""
    root = tmp_path_factory.mktemp("world")
    w = {"modnet": make_bundle(root / "modnet"), "data": make_ppm_data(root / "data", n=3)}
    w["calib"] = make_calib_bundle(root / "calib")
    w["images"] = make_images(root / "images", n=5)
    w["calibrated"] = root / "calibrated"
    shutil.copytree(w["calib"], w["calibrated"])
    res = CliRunner().invoke(main, ["calibrate", "--int8", "--bundle", str(w["calibrated"]),
                                    "--data", str(w["images"]), "--num", "3"])
    assert res.exit_code == 0, res.output
    report = root / "report"
    res = CliRunner().invoke(main, ["validate", "--bundle", str(w["modnet"]), "--data", str(w["data"]),
                                    "--report", str(report)])
    assert res.exit_code == 0, res.output
    w["ref"] = report / "report.json"
    w["rvm_src"] = root / "rvm.onnx"
    official_rvm_like(w["rvm_src"])
    w["pha3_src"] = fake_rvm_pha3(root / "pha3.onnx")
    w["nonrvm"] = root / "tiny.onnx"
    tiny_graph(w["nonrvm"])
    w["garbage"] = root / "garbage.onnx"
    w["garbage"].write_bytes(b"\x00not an onnx model" * 10)
    w["text"] = root / "notes.txt"
    w["text"].write_text("not an image\n")
    w["bomb"] = bomb_png(root / "bomb.png")
    w["nan"] = float_tiff(root / "nan.tif", float("nan"))
    w["inf"] = float_tiff(root / "inf.tif", float("inf"))
    w["image"] = w["data"] / "image" / "000.png"
    w["pha3_bundle"] = write_bundle(root / "pha3b", "modnet", H, W, {"fp32": pha3_graph},
                                    [io("src", [1, 3, H, W])], [io("pha", [1, 1, H, W])])
    w["rvm_bundle"] = write_bundle(
        root / "rvmb", "rvm", H, W, {"fp32": lambda p: tiny_graph(p, recurrent=True)},
        [io("src", [1, 3, H, W])], [io("pha", [1, 1, H, W])], [StateSpec("r1i", "r1o", (1, 1, H, W))])
    w["rvm_pha3_bundle"] = write_bundle(
        root / "rvmpha3", "rvm", H, W, {"fp32": rvm_pha3_graph}, [io("src", [1, 3, H, W])],
        [io("fgr", [1, 3, H, W]), io("pha", [1, 1, H, W])], [StateSpec("r1i", "r1o", (1, 1, H, W))])
    return w


def _fp32_row(report: dict) -> dict:
    return next(r for r in report["results"] if r["artifact"] == "fp32")


def _set(path: str, value):
    """An edit setting a dotted manifest/report path (``input.height``) to ``value``."""
    def edit(obj):
        *head, last = path.split(".")
        for key in head:
            obj = obj[key]
        obj[last] = value
    return edit


def _drop(path: str):
    def edit(obj):
        *head, last = path.split(".")
        for key in head:
            obj = obj[key]
        del obj[last]
    return edit


def _artifact_file(name: str, keep_entry: bool = True):
    """Point artifact fp32 at ``name`` (listed under files with the real sha256 if ``keep_entry``)."""
    def edit(m):
        old = m["artifacts"]["fp32"]
        m["artifacts"]["fp32"] = name
        if keep_entry:
            m["files"][name] = m["files"][old]
    return edit


def _ref_metric(metric: str, value):
    return lambda r: _fp32_row(r)["metrics"].__setitem__(metric, value)


def _ref_drop_metric(metric: str):
    return lambda r: _fp32_row(r)["metrics"].pop(metric)


def _rogue_name(m):
    m["artifacts"]["../../escape"] = m["artifacts"]["int8"]


def _rvm_pha3_manifest(m):
    m["outputs"][0]["shape"] = [1, 3, H, W]


def _unreadable_images(c: Case) -> Path:
    folder = c.tmp / "unreadable"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (folder / "b.jpg").write_bytes(b"nope")
    return folder


def _size_mismatch(c: Case) -> Path:
    data = c.copy("data")
    from PIL import Image

    Image.fromarray(np.zeros((10, 10), np.uint8)).save(data / "matte" / "000.png")
    return data


def _file_parent(c: Case, child: str) -> str:
    (c.tmp / "afile").write_text("x")
    return str(c.tmp / "afile" / child)


def V(c: Case, *extra, bundle="modnet", data=None):
    """validate arguments."""
    return ["validate", "--bundle", c.copy(bundle) if isinstance(bundle, str) else bundle,
            "--data", data or c.copy("data"), "--report", c.tmp / "rep", *extra]


def C(c: Case, *extra, bundle="calib", data=None):
    """calibrate arguments."""
    return ["calibrate", "--int8", "--bundle", c.copy(bundle) if isinstance(bundle, str) else bundle,
            "--data", data or c.copy("images"), "--num", "3", *extra]


def E(c: Case, *extra, src="rvm_src"):
    """export --from-onnx arguments."""
    return ["export", "--model", "rvm", "--from-onnx", c.copy(src), "--height", "64", "--width", "48",
            "--out", c.tmp / "out", *extra]


def I(c: Case, *extra, bundle="modnet", image=None):  # noqa: E743
    """infer arguments."""
    return ["infer", "--bundle", c.copy(bundle) if isinstance(bundle, str) else bundle, "--input",
            image or c.copy("image"), "--out", c.tmp / "inf", "--quiet", *extra]


def B(c: Case, *extra, bundle="modnet"):
    """bench arguments."""
    return ["bench", "--bundle", c.copy(bundle) if isinstance(bundle, str) else bundle, "--iters", "2",
            "--warmup", "0", *extra]


# (id, arguments from a Case, text the one error line must contain)
CASES = [
    # ---------------------------------------------------------------- export
    ("export-model-unknown", lambda c: ["export", "--model", "foo", "--out", c.tmp / "o"], "--model"),
    ("export-model-missing", lambda c: ["export", "--out", c.tmp / "o"], "--model"),
    ("export-height-text", lambda c: E(c, "--height", "abc"), "--height"),
    ("export-height-negative", lambda c: E(c, "--height", "-5"), "--height"),
    ("export-ratio-zero", lambda c: E(c, "--downsample-ratio", "0"), "--downsample-ratio"),
    ("export-ratio-nan", lambda c: E(c, "--downsample-ratio", "nan"), "--downsample-ratio"),
    ("export-opset-old", lambda c: E(c, "--opset", "5"), "--opset"),
    ("export-onnx-missing", lambda c: ["export", "--model", "rvm", "--from-onnx", c.tmp / "nope.onnx",
                                       "--out", c.tmp / "o"], "nope.onnx"),
    ("export-onnx-garbage", lambda c: E(c, src="garbage"), "garbage.onnx"),
    ("export-onnx-not-rvm", lambda c: E(c, src="nonrvm"), "tiny.onnx"),
    ("export-onnx-pha-3-channels", lambda c: E(c, src="pha3_src"), "pha3.onnx"),
    ("export-from-onnx-modnet-given-rvm", lambda c: ["export", "--model", "modnet", "--from-onnx",
                                                     c.copy("rvm_src"), "--out", c.tmp / "o"], "rvm.onnx"),
    ("export-from-onnx-dynamic", lambda c: E(c, "--dynamic"), "--dynamic"),
    ("export-modnet-size-not-32", lambda c: ["export", "--model", "modnet", "--height", "100",
                                             "--out", c.tmp / "o"], "--height"),
    ("export-weights-missing", lambda c: ["export", "--model", "modnet", "--weights", c.tmp / "w.ckpt",
                                          "--height", "64", "--width", "64", "--out", c.tmp / "o"], "w.ckpt"),
    ("export-weights-garbage", lambda c: ["export", "--model", "modnet", "--weights", c.copy("text"),
                                          "--height", "64", "--width", "64", "--out", c.tmp / "o"], "notes.txt"),
    ("export-out-is-file", lambda c: ["export", "--model", "rvm", "--from-onnx", c.copy("rvm_src"),
                                      "--out", c.copy("text")], "notes.txt"),
    ("export-out-under-file", lambda c: E(c)[:-2] + ["--out", _file_parent(c, "b")], "afile"),
    ("export-out-exists", lambda c: E(c)[:-2] + ["--out", c.copy("modnet")], "already exists"),
    ("export-out-unwritable", lambda c: E(c)[:-2] + ["--out", "/proc/md-no-such/bundle"], "/proc"),
    # ---------------------------------------------------------------- calibrate
    ("calibrate-no-int8", lambda c: C(c)[:1] + C(c)[2:], "--int8"),
    ("calibrate-bundle-missing", lambda c: C(c, bundle=c.tmp / "nob"), "nob"),
    ("calibrate-no-manifest", lambda c: C(c, bundle=c.tmp), "manifest.json"),
    ("calibrate-manifest-not-json", lambda c: C(c, bundle=_write(c, "calib", "manifest.json", "{oops")),
     "manifest.json"),
    ("calibrate-manifest-list", lambda c: C(c, bundle=_write(c, "calib", "manifest.json", "[]")),
     "manifest.json"),
    ("calibrate-height-missing", lambda c: C(c, bundle=c.manifest("calib", _drop("input.height"))),
     "input.height"),
    ("calibrate-height-text", lambda c: C(c, bundle=c.manifest("calib", _set("input.height", "abc"))),
     "input.height"),
    ("calibrate-height-negative", lambda c: C(c, bundle=c.manifest("calib", _set("input.height", -5))),
     "input.height"),
    ("calibrate-artifacts-list", lambda c: C(c, bundle=c.manifest("calib", _set("artifacts", ["fp32"]))),
     "artifacts"),
    ("calibrate-state-absurd", lambda c: C(c, bundle=c.manifest(
        "rvm_bundle", lambda m: m["states"][0].__setitem__("shape", [1, 10**9, 1, 1]))), "states[0].shape"),
    ("calibrate-path-escape", lambda c: C(c, bundle=c.manifest("calib", _artifact_file("../x.onnx"))),
     "outside the bundle"),
    ("calibrate-path-absolute", lambda c: C(c, bundle=c.manifest("calib", _artifact_file("/etc/hostname"))),
     "outside the bundle"),
    ("calibrate-artifact-unlisted", lambda c: C(c, bundle=c.manifest("calib", _artifact_file("x.onnx", False))),
     "artifacts.fp32"),
    ("calibrate-sha-not-hex", lambda c: C(c, bundle=c.manifest(
        "calib", lambda m: m["files"]["model.onnx"].__setitem__("sha256", "xyz"))), "files.model.onnx"),
    ("calibrate-format-newer", lambda c: C(c, bundle=c.manifest("calib", _set("format", 99))), "format 99"),
    ("calibrate-model-unknown", lambda c: C(c, bundle=c.manifest("calib", _set("model", "unet"))), "model"),
    ("calibrate-model-changed", lambda c: C(c, bundle=_touch_file(c, "calib", "model.onnx")), "sha256"),
    ("calibrate-data-missing", lambda c: C(c, data=c.tmp / "nodata"), "nodata"),
    ("calibrate-data-unreadable", lambda c: C(c, data=_unreadable_images(c)), "unreadable"),
    ("calibrate-data-text-file", lambda c: C(c, data=c.copy("text")), "notes.txt"),
    ("calibrate-num-zero", lambda c: C(c, "--num", "0"), "--num"),
    ("calibrate-num-text", lambda c: C(c, "--num", "abc"), "--num"),
    ("calibrate-seed-negative", lambda c: C(c, "--seed", "-1"), "--seed"),
    ("calibrate-max-drift-negative", lambda c: C(c, "--max-drift", "-1"), "--max-drift"),
    ("calibrate-max-drift-nan", lambda c: C(c, "--max-drift", "nan"), "--max-drift"),
    ("calibrate-warmup-zero", lambda c: C(c, "--warmup-frames", "0"), "--warmup-frames"),
    ("calibrate-method-unknown", lambda c: C(c, "--method", "magic"), "--method"),
    ("calibrate-exists", lambda c: C(c, bundle="calibrated"), "model.int8.onnx"),
    ("calibrate-bundle-pha-3-channels", lambda c: C(c, bundle=c.manifest("rvm_bundle", _rvm_pha3_manifest)),
     "outputs[0].shape"),
    ("calibrate-rvm-graph-pha-3-channels", lambda c: C(c, bundle="rvm_pha3_bundle"), "output 'pha'"),
    ("calibrate-cpu-rvm-graph-pha-3-channels", lambda c: C(c, "--target", "cpu", bundle="rvm_pha3_bundle"),
     "output 'pha'"),
    ("calibrate-nothing-to-quantize", lambda c: C(c, bundle="rvm_bundle"), "nothing to quantize"),
    # ---------------------------------------------------------------- validate
    ("validate-mse-ratio-negative", lambda c: V(c, "--max-mse-ratio", "-1"), "--max-mse-ratio"),
    ("validate-mse-ratio-nan", lambda c: V(c, "--max-mse-ratio", "nan"), "--max-mse-ratio"),
    ("validate-mse-ratio-inf", lambda c: V(c, "--max-mse-ratio", "inf"), "--max-mse-ratio"),
    ("validate-mse-ratio-text", lambda c: V(c, "--max-mse-ratio", "abc"), "--max-mse-ratio"),
    ("validate-miou-drop-negative", lambda c: V(c, "--max-miou-drop", "-0.1"), "--max-miou-drop"),
    ("validate-limit-zero", lambda c: V(c, "--limit", "0"), "--limit"),
    ("validate-resize-unknown", lambda c: V(c, "--resize", "crop"), "--resize"),
    ("validate-backend-unknown", lambda c: V(c, "--backends", "tpu"), "--backends"),
    ("validate-artifact-escape", lambda c: V(c, "--artifacts", "../../etc"), "../../etc"),
    ("validate-artifact-name-escape", lambda c: V(c, bundle=c.manifest("modnet", _rogue_name)), "artifacts"),
    ("validate-data-missing", lambda c: V(c, data=c.tmp / "nodata"), "nodata"),
    ("validate-image-nan-tiff", lambda c: V(c, data=c.data_with("image", "nan")), "000.tif"),
    ("validate-matte-inf-tiff", lambda c: V(c, data=c.data_with("matte", "inf")), "000.tif"),
    ("validate-image-bomb", lambda c: V(c, data=c.data_with("image", "bomb")), "000.png"),
    ("validate-matte-size", lambda c: V(c, data=_size_mismatch(c)), "000.png"),
    ("validate-model-changed", lambda c: V(c, bundle=_touch_file(c, "modnet", "model.onnx")), "sha256"),
    ("validate-pha-3-channels", lambda c: V(c, bundle="pha3_bundle"), "model.onnx"),
    ("validate-report-exists", lambda c: V(c)[:-2] + ["--report", c.copy("data")], "already exists"),
    ("validate-report-under-file", lambda c: V(c)[:-2] + ["--report", _file_parent(c, "r")], "afile"),
    ("validate-ref-missing", lambda c: V(c, "--reference", c.tmp / "noref.json"), "noref.json"),
    ("validate-ref-not-json", lambda c: V(c, "--reference", c.copy("text")), "notes.txt"),
    ("validate-ref-top-list", lambda c: V(c, "--reference", _write(c, None, "list.json", "[1]")), "list.json"),
    ("validate-ref-no-mse", lambda c: V(c, "--reference", c.ref(_ref_drop_metric("mse"))), "mse"),
    ("validate-ref-no-miou", lambda c: V(c, "--reference", c.ref(_ref_drop_metric("miou"))), "miou"),
    ("validate-ref-null-metrics", lambda c: V(c, "--reference", c.ref(
        lambda r: _fp32_row(r).__setitem__("metrics", None))), "fp32.metrics"),
    ("validate-ref-mse-huge", lambda c: V(c, "--reference", c.ref(_ref_metric("mse", 1e9))), "mse"),
    ("validate-ref-mse-text", lambda c: V(c, "--reference", c.ref(_ref_metric("mse", "abc"))), "mse"),
    ("validate-ref-mse-negative", lambda c: V(c, "--reference", c.ref(_ref_metric("mse", -0.1))), "mse"),
    ("validate-ref-miou-nan", lambda c: V(c, "--reference", c.ref(_ref_metric("miou", float("nan")))), "miou"),
    ("validate-ref-sad-bool", lambda c: V(c, "--reference", c.ref(_ref_metric("sad", True))), "sad"),
    ("validate-ref-protocol-text", lambda c: V(c, "--reference", c.ref(_set("protocol", "x"))), "ref.json"),
    ("validate-ref-results-object", lambda c: V(c, "--reference", c.ref(_set("results", {}))), "ref.json"),
    ("validate-ref-no-fp32", lambda c: V(c, "--reference", c.ref(
        lambda r: r.__setitem__("results", [x for x in r["results"] if x["artifact"] != "fp32"]))), "fp32"),
    ("validate-ref-other-data", lambda c: V(c, "--reference", c.ref(_set("protocol.digest", "0"))), "digest"),
    # ---------------------------------------------------------------- build
    ("build-precision-unknown", lambda c: ["build", "--bundle", c.copy("modnet"), "--precision", "int4"],
     "--precision"),
    ("build-workspace-zero", lambda c: ["build", "--bundle", c.copy("modnet"), "--precision", "fp16",
                                        "--workspace", "0"], "--workspace"),
    ("build-bundle-missing", lambda c: ["build", "--bundle", c.tmp / "nob", "--precision", "fp16"], "nob"),
    ("build-no-tensorrt-or-bad-manifest", lambda c: ["build", "--bundle", c.manifest(
        "modnet", _set("input", [])), "--precision", "fp16"], "input"),
    # ---------------------------------------------------------------- bench
    ("bench-iters-zero", lambda c: B(c, "--iters", "0"), "--iters"),
    ("bench-backend-unknown", lambda c: B(c, "--backend", "tpu"), "--backend"),
    ("bench-artifact-unknown", lambda c: B(c, "--artifacts", "int9"), "int9"),
    ("bench-json-exists", lambda c: B(c, "--json", c.copy("text")), "notes.txt"),
    ("bench-json-under-file", lambda c: B(c, "--json", _file_parent(c, "r.json")), "afile"),
    ("bench-model-changed", lambda c: B(c, bundle=_touch_file(c, "modnet", "model.onnx")), "sha256"),
    # ---------------------------------------------------------------- infer
    ("infer-input-missing", lambda c: I(c, image=c.tmp / "nope.png"), "--input"),
    ("infer-input-text", lambda c: I(c, image=c.copy("text")), "notes.txt"),
    ("infer-input-bomb", lambda c: I(c, image=c.copy("bomb")), "bomb.png"),
    ("infer-input-nan-tiff", lambda c: I(c, image=c.copy("nan")), "nan.tif"),
    ("infer-background-unknown", lambda c: I(c, "--background", "plaid"), "plaid"),
    ("infer-artifact-unknown", lambda c: I(c, "--artifact", "int9"), "int9"),
    ("infer-ofd-threshold", lambda c: I(c, "--ofd-threshold", "2"), "--ofd-threshold"),
    ("infer-out-under-file", lambda c: I(c)[:-3] + ["--out", _file_parent(c, "o"), "--quiet"], "afile"),
    ("infer-out-exists", lambda c: I(c)[:-3] + ["--out", _infer_done(c), "--quiet"], "already exists"),
    ("infer-pha-3-channels", lambda c: I(c, bundle="pha3_bundle"), "pha"),
    # ---------------------------------------------------------------- demo (no download reached)
    ("demo-images-one", lambda c: ["demo", "--out", c.tmp / "d", "--images", "1"], "--images"),
    ("demo-images-text", lambda c: ["demo", "--out", c.tmp / "d", "--images", "x"], "--images"),
    ("demo-exists", lambda c: ["demo", "--out", c.copy("data", "d/data").parent], "data"),
    # ---------------------------------------------------------------- the group
    ("cli-unknown-command", lambda c: ["frobnicate"], "frobnicate"),
    ("cli-unknown-option", lambda c: V(c, "--bogus"), "--bogus"),
]


def _write(c: Case, bundle: str | None, name: str, text: str) -> Path:
    root = c.copy(bundle) if bundle else c.tmp
    (root / name).write_text(text)
    return root if bundle else root / name


def _touch_file(c: Case, bundle: str, name: str) -> Path:
    root = c.copy(bundle)
    with open(root / name, "ab") as f:
        f.write(b"\0")
    return root


def _infer_done(c: Case) -> Path:
    out = c.tmp / "done"
    (out / "alpha").mkdir(parents=True)
    return out


@pytest.mark.parametrize("name,make,names", CASES, ids=[c[0] for c in CASES])
def test_bad_input(world, tmp_path, name, make, names):
    args = [str(a) for a in make(Case(world, tmp_path))]
    before = snapshot(tmp_path)
    res = CliRunner().invoke(main, args)
    text = res.output + (res.stderr if res.stderr not in res.output else "")
    assert "Traceback" not in text, text
    assert isinstance(res.exception, SystemExit), (res.exception, text)
    assert res.exit_code == 2, text
    errors = error_lines(res.stderr)
    assert len(errors) == 1 and len(error_lines(res.output)) == 1, text
    assert names in errors[0], errors[0]
    assert snapshot(tmp_path) == before, "files changed: " + text


def test_the_table_is_large_enough():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)
