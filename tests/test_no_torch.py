"""Without PyTorch (the optional [torch] extra), every command but a PyTorch export still runs.

The commands run in a subprocess whose ``sitecustomize`` makes ``torch`` unimportable, as on a
machine where only ``pip install -e '.[dev]'`` was run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures import H, W, make_images, make_ppm_data, official_modnet_like, official_rvm_like

ROOT = Path(__file__).resolve().parents[1]
BLOCKER = '''
import sys

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoTorch())
'''
# Runs each command line in one process (onnxruntime is imported once), prints exit codes and output.
DRIVER = '''
import json, sys
from click.testing import CliRunner
from matting_deploy.cli import main
results = []
for args in json.loads(sys.argv[1]):
    res = CliRunner().invoke(main, args)
    results.append({"args": args, "code": res.exit_code, "output": res.output,
                    "error": repr(res.exception) if res.exit_code not in (0, 2) else None})
loaded = "torch" in sys.modules
try:
    import torch  # noqa: F401
    blocked = False
except ModuleNotFoundError:
    blocked = True
results.append({"torch_loaded": loaded, "torch_blocked": blocked})
print(json.dumps(results))
'''


def test_commands_run_without_torch(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    rvm_onnx, modnet_onnx = tmp_path / "rvm.onnx", tmp_path / "modnet.onnx"
    official_rvm_like(rvm_onnx)
    official_modnet_like(modnet_onnx)
    make_images(tmp_path / "calib", n=4)
    data = make_ppm_data(tmp_path / "data", n=2)
    weights = tmp_path / "w.ckpt"
    weights.write_bytes(b"reading a checkpoint needs torch")
    b, m = str(tmp_path / "b"), str(tmp_path / "m")
    commands = [
        [name, "--help"] for name in ("export", "calibrate", "validate", "build", "bench", "infer", "demo")
    ] + [
        ["export", "--model", "rvm", "--from-onnx", str(rvm_onnx), "--height", str(H), "--width", str(W),
         "--fp16", "--out", b],
        ["export", "--model", "modnet", "--from-onnx", str(modnet_onnx), "--height", "64", "--width", "64",
         "--out", m],
        ["calibrate", "--int8", "--bundle", b, "--data", str(tmp_path / "calib"), "--num", "2",
         "--warmup-frames", "2"],
        ["validate", "--bundle", b, "--data", str(data), "--report", str(tmp_path / "report"),
         "--max-mse-ratio", "100", "--max-miou-drop", "1"],
        ["bench", "--bundle", b, "--iters", "2", "--warmup", "0"],
        ["infer", "--bundle", m, "--input", str(data / "image"), "--out", str(tmp_path / "out")],
        ["export", "--model", "modnet", "--out", str(tmp_path / "needs-torch")],
        ["export", "--model", "modnet", "--weights", str(weights), "--out", str(tmp_path / "needs-torch")],
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(commands)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    *results, loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == {"torch_loaded": False, "torch_blocked": True}
    for res in results[:-2]:
        assert res["code"] == 0, (res["args"], res["output"], res["error"])
    for refused, named in zip(results[-2:], ["export --model modnet without --from-onnx", str(weights)], strict=True):
        assert refused["code"] == 2 and refused["output"].startswith(f"error: {named}: PyTorch is not installed")
        assert "pip install 'matting-deploy[torch]'" in refused["output"]
        assert len(refused["output"].strip().splitlines()) == 1
    assert not (tmp_path / "needs-torch").exists()
    assert (tmp_path / "b" / "model.int8.onnx").is_file() and (tmp_path / "report" / "report.json").is_file()
