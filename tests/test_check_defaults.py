"""`check` agrees with `calibrate`: it defaults to the TensorRT version calib.json names, says how to
fix a cache-header failure, and its help says which tensorrt-10 versions are implicit."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from matting_deploy.cli import main
from tests.fixtures import make_images, official_rvm_like

H, W = 64, 96


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def bundle_852(tmp_path_factory):
    """export --from-onnx (fp32 only) + calibrate --int8 --trt-version 8.5.2 (JetPack 5.1)."""
    tmp = tmp_path_factory.mktemp("defaults")
    official_rvm_like(tmp / "src.onnx")
    res = cli("export", "--model", "rvm", "--from-onnx", tmp / "src.onnx", "--height", H, "--width", W,
              "--out", tmp / "b")
    assert res.exit_code == 0, res.output
    res = cli("calibrate", "--int8", "--bundle", tmp / "b", "--data", make_images(tmp / "data"), "--num", 4,
              "--trt-version", "8.5.2")
    assert res.exit_code == 0, res.output
    return tmp / "b"


def test_check_defaults_to_the_calibrated_version(bundle_852):
    res = cli("check", "--bundle", bundle_852)
    assert res.exit_code == 0, res.output
    assert "checking TensorRT 8.5.2" in res.output and "calib.json" in res.output
    assert "TensorRT target tensorrt-8.6 (8.5.2;" in res.output
    assert "TRT-8502-EntropyCalibration2 = TensorRT 8.5.2" in res.output


@pytest.mark.parametrize("args, version", [(("--target", "tensorrt-8.6"), "8.6.1"),
                                           (("--trt-version", "10.0.1"), "10.0.1")])
def test_cache_header_failure_says_what_to_do(bundle_852, args, version):
    res = cli("check", "--bundle", bundle_852, *args)
    assert res.exit_code == 1 and "cache-header" in res.output
    assert "checking TensorRT 8.5.2" not in res.output  # an explicit choice wins
    assert "implicit INT8: model.onnx + calib.cache" in res.output
    assert f"`calibrate --int8 --trt-version {version} --force`" in " ".join(res.output.split())
    assert "`matting-deploy build` re-heads it" in " ".join(res.output.split())


def test_strongly_typed_versions_say_so_and_uncalibrated_bundles_keep_10_1(bundle_852, tmp_path):
    res = cli("check", "--bundle", bundle_852, "--trt-version", "10.1.0")
    assert "INT8: model.int8.onnx (Q/DQ), strongly typed" in res.output
    (bundle_852 / "calib.json").rename(tmp_path / "calib.json")
    try:
        res = cli("check", "--bundle", bundle_852)
    finally:
        (tmp_path / "calib.json").rename(bundle_852 / "calib.json")
    assert "TensorRT target tensorrt-10 (10.1.0;" in res.output and "checking TensorRT" not in res.output


def test_help_says_10_0_is_implicit():
    text = " ".join(cli("check", "--help").output.split())
    assert "tensorrt-10: 10.0.x implicit INT8 from calib.cache, from 10.1 Q/DQ INT8" in text
    assert "the version the bundle was calibrated for (calib.json" in text
