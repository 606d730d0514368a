"""Without the openvino package every OpenVINO path is one line naming the extra, exit 2 (runs whether
or not openvino is installed: it is made unimportable here)."""

from __future__ import annotations

import sys

import numpy as np
from click.testing import CliRunner
from PIL import Image

from matting_deploy.cli import main
from matting_deploy.runtimes import openvino_runner
from tests.fixtures import frames, make_runtime_bundle


def test_missing_openvino_is_one_line(tmp_path, monkeypatch):
    rvm = make_runtime_bundle(tmp_path / "rvm", "rvm")
    monkeypatch.setattr(openvino_runner, "_core", None)
    monkeypatch.setitem(sys.modules, "openvino", None)
    (tmp_path / "in").mkdir()
    Image.fromarray((frames(1)[0][0].transpose(1, 2, 0) * 255).astype(np.uint8)).save(tmp_path / "in" / "a.png")
    res = CliRunner().invoke(main, ["infer", "--bundle", str(rvm), "--input", str(tmp_path / "in"), "--out",
                                    str(tmp_path / "out"), "--quiet", "--backend", "openvino"])
    assert res.exit_code == 2
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("error: --backend openvino: OpenVINO is not installed")
    assert "pip install -e '.[openvino]'" in line
    res = CliRunner().invoke(main, ["build", "--bundle", str(rvm), "--target", "openvino"])
    assert res.exit_code == 2 and "pip install -e '.[openvino]'" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (rvm / "model.xml").exists()
