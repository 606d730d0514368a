"""Faults: SIGINT/SIGTERM/SIGKILL at named points (subprocesses paused there by the test-only
``MATTING_DEPLOY_TEST_PAUSE`` hook), the bundle lock, leftovers of killed runs, what ``--force``
removes, output modes, read-only and full file systems (skipped where mounts are not allowed)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from matting_deploy.bundle import Bundle
from matting_deploy.bundle.lock import bundle_lock
from matting_deploy.cli import main
from tests.fixtures import make_calib_bundle, make_images, make_ppm_data, official_rvm_like
from tests.fixtures.faults import error_lines, mount, run_cli, snapshot, umount


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("faults")
    b = {"calib": make_calib_bundle(root / "calib"), "images": make_images(root / "images", n=5),
         "data": make_ppm_data(root / "data", n=2, size=(96, 64)), "onnx": root / "rvm.onnx"}
    official_rvm_like(b["onnx"])
    b["rvm"] = root / "rvm"
    res = CliRunner().invoke(main, ["export", "--model", "rvm", "--from-onnx", str(b["onnx"]), "--height", "64",
                                    "--width", "96", "--out", str(b["rvm"])])
    assert res.exit_code == 0, res.output
    return b


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _complete(root: Path) -> None:
    """Every file the manifest lists is there with its sha256; nothing else but the report."""
    bundle = Bundle.open(root)
    for name in bundle.manifest["files"]:
        bundle.file_path(name)
    listed = set(bundle.manifest["files"]) | {"manifest.json", "report", ".calib-cache"}
    assert {p.name for p in root.iterdir()} <= listed, sorted(p.name for p in root.iterdir())


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _paused(args: list, point: str, tmp: Path) -> tuple[subprocess.Popen, list[str], Path]:
    """Start ``args`` paused at ``point``; returns the process, stderr lines so far, the go file."""
    go = tmp / "go"
    (tmp / "tmpdir").mkdir(exist_ok=True)
    p = run_cli(args, env={"MATTING_DEPLOY_TEST_PAUSE": point, "MATTING_DEPLOY_TEST_PAUSE_GO": str(go),
                           "TMPDIR": str(tmp / "tmpdir")})
    timer = threading.Timer(120, p.kill)
    timer.start()
    lines = []
    for line in p.stderr:
        lines.append(line)
        if f"test-pause: {point}" in line:  # a progress bar may share its line
            break
    timer.cancel()
    assert lines and f"test-pause: {point}" in lines[-1], "".join(lines)
    return p, lines, go


def _finish(p: subprocess.Popen, lines: list[str]) -> tuple[int, str]:
    out, err = p.communicate(timeout=120)
    return p.returncode, out + "".join(lines) + err


def _calibrate(b, tmp):
    bundle = _copy(b["calib"], tmp / "w" / "b")
    return ["calibrate", "--int8", "--bundle", bundle, "--data", b["images"], "--num", "3"], tmp / "w"


def _calibrate_force(b, tmp):
    args, watch = _calibrate(b, tmp)
    assert CliRunner().invoke(main, [str(a) for a in args]).exit_code == 0
    return [*args, "--force", "--seed", "1"], watch


def _validate(b, tmp):
    bundle = _copy(b["rvm"], tmp / "w" / "b")
    return ["validate", "--bundle", bundle, "--data", b["data"]], tmp / "w"


def _validate_again(b, tmp):
    args, watch = _validate(b, tmp)
    assert CliRunner().invoke(main, [str(a) for a in args]).exit_code == 0
    return [*args, "--force"], watch


def _export(b, tmp):
    (tmp / "w").mkdir()
    return ["export", "--model", "rvm", "--from-onnx", b["onnx"], "--height", "64", "--width", "96", "--fp16",
            "--out", tmp / "w" / "new" / "b"], tmp / "w"


def _export_force(b, tmp):
    args, watch = _export(b, tmp)
    _copy(b["rvm"], tmp / "w" / "new" / "b")
    return [*args, "--force"], watch


def _infer(b, tmp):
    (tmp / "w").mkdir()
    return ["infer", "--bundle", b["rvm"], "--input", b["data"] / "image", "--out", tmp / "w" / "o"], tmp / "w"


INT, TERM = signal.SIGINT, signal.SIGTERM
SIGNAL_CASES = [
    ("export-staged", _export, INT), ("export-staged", _export_force, TERM),
    ("calibrate-collect", _calibrate, INT), ("calibrate-collect", _calibrate, TERM),
    ("calibrate-staged", _calibrate, TERM), ("calibrate-staged", _calibrate_force, INT),
    ("validate-scored", _validate, INT), ("validate-scored", _validate, TERM),
    ("report-staged", _validate_again, TERM), ("report-staged", _validate_again, INT),
    ("infer-frames", _infer, INT), ("infer-frames", _infer, TERM),
]


@pytest.mark.parametrize("point,make,sig", SIGNAL_CASES,
                         ids=[f"{p}-{m.__name__[1:]}-{s.name}" for p, m, s in SIGNAL_CASES])
def test_interrupt_leaves_nothing(base, tmp_path, point, make, sig):
    args, watch = make(base, tmp_path)
    before = snapshot(watch)
    p, lines, go = _paused(args, point, tmp_path)
    p.send_signal(sig)
    go.touch()
    code, text = _finish(p, lines)
    assert code == 128 + sig, text
    assert "Traceback" not in text and error_lines(text) == [
        f"error: interrupted by {sig.name}; nothing half-written was kept"], text
    assert snapshot(watch) == before
    left = [x.name for x in (tmp_path / "tmpdir").iterdir() if x.name != ".ses"]  # .ses: not ours
    assert not left, f"temporary files left behind: {left}"


@pytest.mark.parametrize("sig", [TERM, INT], ids=["TERM", "INT"])
def test_signal_while_the_temp_folder_is_removed_still_removes_it(base, tmp_path, sig):
    """A signal right after calibrate committed model.int8.onnx, while its md-calib-* folder is
    being removed: the removal finishes, then the signal acts."""
    args, watch = _calibrate(base, tmp_path)
    p, lines, go = _paused(args, "cleanup-md-calib-", tmp_path)
    assert (watch / "b" / "model.int8.onnx").is_file()  # committed before the temp folder goes
    p.send_signal(sig)
    go.touch()
    code, text = _finish(p, lines)
    assert code == 128 + sig, text
    left = [x.name for x in (tmp_path / "tmpdir").iterdir() if x.name != ".ses"]
    assert not left, f"temporary files left behind: {left}"
    _complete(watch / "b")


def test_signal_during_commit_waits_for_it(base, tmp_path):
    """SIGTERM inside the commit is held until the renames are done: the new state, complete."""
    args, _ = _calibrate(base, tmp_path)
    p, lines, go = _paused(args, "commit", tmp_path)
    p.send_signal(signal.SIGTERM)
    go.touch()
    code, text = _finish(p, lines)
    assert code == 128 + signal.SIGTERM and "Traceback" not in text, text
    _complete(args[3])
    assert "int8" in Bundle.open(args[3]).artifacts


def test_kill_mid_commit_is_finished_by_the_next_command(base, tmp_path):
    args, _ = _calibrate(base, tmp_path)
    p, lines, _ = _paused(args, "commit", tmp_path)
    p.kill()
    p.communicate(timeout=60)
    bundle = args[3]
    assert (bundle / ".commit.json").exists()
    res = CliRunner().invoke(main, ["infer", "--bundle", str(bundle), "--artifact", "int8", "--input",
                                    str(base["images"] / "im00.png"), "--out", str(tmp_path / "o"), "--quiet"])
    assert res.exit_code == 0 and "finished a commit" in res.output, res.output
    _complete(bundle)
    assert "int8" in Bundle.open(bundle).artifacts and not list(bundle.glob(".staging-*"))


def test_second_writer_fails_fast_and_a_stale_lock_is_taken_over(base, tmp_path):
    args, watch = _calibrate(base, tmp_path)
    before = snapshot(watch)
    with bundle_lock(args[3]):
        p = run_cli(args)
        out, err = p.communicate(timeout=120)
    assert p.returncode == 2 and error_lines(err) == [
        f"error: {args[3]}: locked by pid {os.getpid()} (another matting-deploy command is writing this "
        "bundle); wait for it to finish"], err
    assert snapshot(watch) == before
    dead = _dead_pid()
    (args[3] / ".lock").write_text(f"{dead}\n")
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0 and f"taking over the lock left by pid {dead} (no longer running)" in res.output
    assert not (args[3] / ".lock").exists()
    _complete(args[3])


def test_rerun_clears_leftovers_of_killed_runs(base, tmp_path):
    args, _ = _calibrate(base, tmp_path)
    bundle, dead = args[3], _dead_pid()
    (bundle / f".staging-{dead}-abc").mkdir()
    (bundle / f".staging-{dead}-abc" / "model.int8.onnx").write_bytes(b"x" * 100)
    (bundle / "model.int8.onnx").write_bytes(b"uncommitted")  # unlisted: an old run's leftover
    tmpdir = tmp_path / "tmpdir"
    (tmpdir / f"md-calib-{dead}-xyz").mkdir(parents=True)
    (tmpdir / f"md-calib-{os.getpid()}-mine").mkdir()  # a live owner's: kept
    p = run_cli(args, env={"TMPDIR": str(tmpdir)})
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and "left by an interrupted run); replacing it" in err, err
    assert sorted(x.name for x in tmpdir.glob("md-*")) == [f"md-calib-{os.getpid()}-mine"]
    assert not list(bundle.glob(".staging-*"))
    _complete(bundle)


def test_export_force_removes_what_the_old_model_made(base, tmp_path):
    bundle = _copy(base["rvm"], tmp_path / "b")
    for args in (["calibrate", "--int8", "--bundle", bundle, "--data", base["images"], "--num", "2"],
                 ["validate", "--bundle", bundle, "--data", base["data"]]):
        res = CliRunner().invoke(main, [str(a) for a in args])
        assert res.exit_code == 0, res.output
    assert {"model.int8.onnx", "calib.cache", "calib.json", "report", ".calib-cache"} <= {
        p.name for p in bundle.iterdir()}
    res = CliRunner().invoke(main, ["export", "--model", "rvm", "--from-onnx", str(base["onnx"]), "--height",
                                    "64", "--width", "96", "--out", str(bundle), "--force"])
    assert res.exit_code == 0, res.output
    assert ("removed what the old model made stale: model.int8.onnx, calib.cache, calib.json, "
            "model.int8-implicit.onnx, report, .calib-cache") in res.output
    assert sorted(p.name for p in bundle.iterdir()) == ["manifest.json", "model.onnx"]
    _complete(bundle)


def test_outputs_have_normal_modes(base, tmp_path):
    old = os.umask(0o022)
    try:
        args, _ = _calibrate(base, tmp_path)
        assert CliRunner().invoke(main, [str(a) for a in args]).exit_code == 0
        res = CliRunner().invoke(main, ["validate", "--bundle", str(base["rvm"]), "--data", str(base["data"]),
                                        "--report", str(tmp_path / "rep")])
        assert res.exit_code == 0, res.output
        res = CliRunner().invoke(main, ["infer", "--bundle", str(base["rvm"]), "--input", str(base["data"] / "image"),
                                        "--out", str(tmp_path / "inf"), "--quiet"])
        assert res.exit_code == 0, res.output
    finally:
        os.umask(old)
    for root in (args[3], tmp_path / "rep", tmp_path / "inf"):
        modes = {k: v[-1] for k, v in snapshot(root).items() if v[0] != "link"}
        modes[root.name] = root.stat().st_mode & 0o7777
        assert set(modes.values()) <= {0o644, 0o755}, {k: oct(v) for k, v in modes.items()}


def test_infer_frames_sharing_a_stem_get_one_output_each(base, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    src = base["data"] / "image" / "000.png"
    shutil.copy(src, frames / "a.png")
    from PIL import Image

    Image.open(src).convert("RGB").save(frames / "a.jpg")
    res = CliRunner().invoke(main, ["infer", "--bundle", str(base["rvm"]), "--input", str(frames),
                                    "--out", str(tmp_path / "o"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "o" / "alpha").iterdir()) == ["a.jpg.png", "a.png.png"]


def test_calibrate_picks_among_readable_images(base, tmp_path):
    args, _ = _calibrate(base, tmp_path)  # 5 good images + broken.png; --num 3 of the readable ones
    for seed in range(4):
        res = CliRunner().invoke(main, [*map(str, args), "--seed", str(seed), "--force"])
        assert res.exit_code == 0, res.output
        calib = json.loads((args[3] / "calib.json").read_text())
        assert calib["image_count"] == 3 and "broken.png" not in calib["images"], calib["images"]


POISONS = {
    "nan": lambda r, t: r.__setitem__(t, [float("nan"), 1.0]),
    "huge": lambda r, t: r.__setitem__(t, [-1e30, 1e30]),
    "min-above-max": lambda r, t: r.__setitem__(t, [2.0, 1.0]),
    "string": lambda r, t: r.__setitem__(t, ["a", "b"]),
    "scalar": lambda r, t: r.__setitem__(t, 3.0),
    "unknown-tensor": lambda r, t: r.__setitem__("no-such-tensor", [0.0, 1.0]),
}


@pytest.fixture(scope="module")
def calibrated(base, tmp_path_factory) -> list:
    args, _ = _calibrate(base, tmp_path_factory.mktemp("calibrated"))
    assert CliRunner().invoke(main, [str(a) for a in args]).exit_code == 0
    return args


@pytest.mark.parametrize("poison", POISONS)
def test_poisoned_range_cache_is_recomputed(calibrated, tmp_path, poison):
    bundle = _copy(calibrated[3], tmp_path / "b")
    (entry,) = (bundle / ".calib-cache").iterdir()
    cache = json.loads(entry.read_text())
    POISONS[poison](cache["ranges"], sorted(cache["ranges"])[0])
    entry.write_text(json.dumps(cache))
    res = CliRunner().invoke(main, [*map(str, calibrated[:3]), str(bundle), *map(str, calibrated[4:]), "--force"])
    assert res.exit_code == 0 and "cached ranges rejected" in res.output, res.output
    assert json.loads((bundle / "calib.json").read_text())["cache_hit"] is False
    _complete(bundle)


# ---------------------------------------------------------------- read-only and full file systems


@pytest.fixture()
def mounted(tmp_path):
    """mount(kind, folder, options) for the test, unmounted afterwards; skips where not allowed."""
    done = []

    def do(kind: str, folder: Path, options: str = "") -> Path:
        if not mount(kind, folder, options):
            pytest.skip(f"cannot mount {kind} here (needs CAP_SYS_ADMIN)")
        done.append(folder)
        return folder

    yield do
    for folder in reversed(done):
        umount(folder)


def _commands(base, bundle: Path, out: Path) -> dict[str, list]:
    return {
        "calibrate": ["calibrate", "--int8", "--bundle", bundle, "--data", base["images"], "--num", "2"],
        "validate": ["validate", "--bundle", bundle, "--data", base["data"]],
        "export": ["export", "--model", "rvm", "--from-onnx", base["onnx"], "--height", "64", "--width", "96",
                   "--out", out / "new"],
        "export-force": ["export", "--model", "rvm", "--from-onnx", base["onnx"], "--height", "64", "--width",
                         "96", "--out", bundle, "--force"],
        "infer": ["infer", "--bundle", bundle, "--input", base["data"] / "image", "--out", out / "inf", "--quiet"],
        "bench-json": ["bench", "--bundle", bundle, "--iters", "2", "--json", out / "b.json"],
        "build": ["build", "--bundle", bundle, "--precision", "fp16"],
    }


def _bad(res, watch: Path, before: dict, expect: str) -> None:
    text = res.output
    assert res.exit_code == 2 and "Traceback" not in text, text
    errors = error_lines(res.stderr)
    assert len(errors) == 1 and expect in errors[0], text
    assert snapshot(watch) == before


@pytest.mark.parametrize("command", ["calibrate", "validate", "export", "export-force", "infer", "bench-json",
                                     "build"])
def test_read_only_folder(base, tmp_path, mounted, command):
    ro = tmp_path / "ro"
    bundle = _copy(base["rvm"], ro / "b")
    mounted("bind-ro", ro)
    before = snapshot(ro)
    res = CliRunner().invoke(main, [str(a) for a in _commands(base, bundle, ro)[command]])
    _bad(res, ro, before, "not writable (Read-only file system)")


@pytest.mark.parametrize("command", ["calibrate", "validate", "export", "export-force", "infer"])
def test_full_file_system(base, tmp_path, mounted, command):
    fs = mounted("tmpfs", tmp_path / "small", "size=1m")
    bundle = _copy(base["rvm"], fs / "b")
    try:
        with open(fs / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    before = snapshot(fs)
    res = CliRunner().invoke(main, [str(a) for a in _commands(base, bundle, fs)[command]])
    _bad(res, fs, before, "No space left on device")
