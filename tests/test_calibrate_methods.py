"""calibrate --method: each method computes what its help says; the ranges cache is keyed on the
images used, not on --num/--seed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from matting_deploy.cli import main
from matting_deploy.quantize import METHOD_HELP, collect, ranges
from tests.fixtures import make_calib_bundle, make_images


def run_cli(*args):
    return CliRunner().invoke(main, ["calibrate", "--int8", *map(str, args)])


def calibrated(bundle_dir) -> dict:
    return json.loads((bundle_dir / "calib.json").read_text())


def test_percentile_range_is_the_percentile_of_abs_values():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=50_000), rng.normal(scale=30, size=20)]).astype(np.float32)
    col = collect._FastCollector("percentile", True, 2048, 128, 99.9, "same")
    col.collect({"t": [x]})
    lo, hi = col.compute_percentile()["t"][:2]
    want = np.percentile(np.abs(x), 99.9)
    step = float(col.histogram_dict["t"][1][1] - col.histogram_dict["t"][1][0])
    assert lo == -hi and want <= hi <= want + step  # the upper edge of the bin holding it
    assert hi < 0.2 * np.abs(x).max()  # the outliers are clipped


@pytest.fixture(scope="module")
def rvm_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("methods")
    return tmp, make_images(tmp / "data", n=8)


def test_methods_give_different_ranges_and_say_what_they_are(rvm_setup):
    tmp, data = rvm_setup
    got = {}
    for method in ("entropy", "percentile", "minmax"):
        bundle_dir = make_calib_bundle(tmp / method, kind="rvm")
        res = run_cli("--bundle", bundle_dir, "--data", data, "--method", method)
        assert res.exit_code == 0, res.output
        assert f"calibration: {method} ranges ({METHOD_HELP[method]})" in res.output
        info = calibrated(bundle_dir)
        assert info["method"] == method and info["ranges"] == METHOD_HELP[method]
        assert info["range_guard_applied"] is (method == "entropy")
        got[method] = {k: (v["min"], v["max"]) for k, v in info["tensors"].items()}
        if method != "entropy":  # the least-error guard belongs to the entropy method only
            assert all(v.get("range_from", "method") == "method" for v in info["tensors"].values())
    assert got["percentile"].keys() == got["entropy"].keys()
    differ = [t for t in got["entropy"] if got["percentile"][t] != pytest.approx(got["entropy"][t], rel=1e-3)]
    assert differ, "percentile gave the entropy (least-error) ranges"
    for t, (lo, hi) in got["minmax"].items():  # minmax covers everything seen: the widest range
        assert max(-lo, hi) >= max(-got["percentile"][t][0], got["percentile"][t][1]) * (1 - 1e-6)


def test_ranges_cache_is_keyed_on_the_images_used_not_on_num(rvm_setup):
    """The demo's case: calibrated with all of a small folder, then --target cpu without --num
    (default 100) uses the same images and must reuse the ranges; so must another --seed."""
    tmp, data = rvm_setup
    bundle_dir = make_calib_bundle(tmp / "cache", kind="rvm")
    first = run_cli("--bundle", bundle_dir, "--data", data, "--num", 8)
    assert first.exit_code == 0 and "reusing" not in first.output
    cpu = run_cli("--bundle", bundle_dir, "--data", data, "--target", "cpu")
    assert cpu.exit_code == 0, cpu.output
    assert "reusing cached ranges" in cpu.output
    again = run_cli("--bundle", bundle_dir, "--data", data, "--seed", 5, "--force")
    assert again.exit_code == 0 and "reusing cached ranges" in again.output
    fewer = run_cli("--bundle", bundle_dir, "--data", data, "--num", 5, "--force")
    assert fewer.exit_code == 0 and "reusing" not in fewer.output  # other images: calibrated again


def test_percentile_range_checks_its_argument():
    with pytest.raises(ValueError):
        ranges.percentile_range((np.ones(4), np.linspace(-1, 1, 5), -1.0, 1.0), 101)


def test_calibrate_on_a_folder_without_images_lists_the_extensions(tmp_path):
    bundle_dir = make_calib_bundle(tmp_path / "b")
    (tmp_path / "empty").mkdir()
    res = run_cli("--bundle", bundle_dir, "--data", tmp_path / "empty")
    assert res.exit_code == 2 and len(res.output.splitlines()) == 1
    assert "no calibration images found (accepted: .jpg .jpeg .png" in res.output and ".mp4" in res.output
