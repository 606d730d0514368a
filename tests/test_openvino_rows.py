"""OpenVINO rows in validate and bench: ``--backends cpu,openvino`` scores both (bf16 on OpenVINO
only), bench times both backends in one interleaved run and advises from the validate report."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from matting_deploy.bundle import Bundle
from matting_deploy.cli import main
from matting_deploy.validate.jobs import default_artifacts, plan_jobs
from tests.fixtures import make_clip, make_ppm_data, make_runtime_bundle

pytest.importorskip("openvino", reason="openvino is not installed (pip install -e '.[openvino]')")


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


@pytest.fixture()
def rvm(tmp_path):
    return make_runtime_bundle(tmp_path / "rvm", "rvm", int8=True)


def _bf16() -> bool:
    from matting_deploy.runtimes.openvino_runner import core

    return "BF16" in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def cli(*args):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


def test_plan_runs_bf16_on_openvino_only_and_openvino_only_when_named(rvm):
    bun = Bundle.open(rvm)
    names = default_artifacts(bun, ["cpu", "openvino"])
    assert names == ["fp32", "int8", "bf16"]
    jobs, notes = plan_jobs(bun, names, ["cpu", "openvino"])
    assert [j.label for j in jobs] == ["fp32 (cpu)", "int8 (cpu)", "fp32 (openvino)", "int8 (openvino)",
                                       "bf16 (openvino)"]
    assert jobs[-1].path.name == "model.onnx"
    jobs, notes = plan_jobs(bun, default_artifacts(bun, None), None)
    assert {j.backend for j in jobs} == {"cpu"} and any("add --backends cpu,openvino" in n for n in notes)
    jobs, notes = plan_jobs(bun, ["fp32", "bf16"], ["cpu"])
    assert [j.label for j in jobs] == ["fp32 (cpu)"] and any(n.startswith("bf16: skipped") for n in notes)


def test_validate_scores_openvino_beside_onnxruntime(tmp_path, rvm):
    data = make_ppm_data(tmp_path / "data", n=2)
    make_clip(data / "clip", frames=4)
    artifacts = "fp32,int8,bf16" if _bf16() else "fp32,int8"
    res = cli("validate", "--bundle", rvm, "--data", data, "--backends", "cpu,openvino", "--artifacts", artifacts,
              "--report", tmp_path / "r", "--max-mse-ratio", "100", "--max-miou-drop", "1")
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "r" / "report.json").read_text())["results"]
    assert {(r["artifact"], r["backend"]) for r in results} >= {("fp32", "openvino"), ("int8", "openvino")}
    fp32 = {r["backend"]: r["metrics"]["mse"] for r in results if r["artifact"] == "fp32"}
    assert fp32["openvino"] == pytest.approx(fp32["cpu"], rel=1e-3, abs=1e-7)
    line = next(x for x in res.output.splitlines() if x.startswith("fp32 (openvino): alpha max |difference|"))
    assert float(line.split("fp32 (cpu) ")[1].split()[0]) < 1e-4  # state carried over the clip frames too


def test_bench_compares_both_backends_in_one_run_and_advises(tmp_path, rvm):
    res = cli("bench", "--bundle", rvm, "--backend", "cpu,openvino", "--artifacts", "fp32,int8",
              "--iters", "3", "--warmup", "1", "--threads", "1", "--json", tmp_path / "b.json")
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "b.json").read_text())
    assert [(r["artifact"], r["backend"]) for r in result["rows"]] == [
        ("fp32", "cpu"), ("int8", "cpu"), ("fp32", "openvino"), ("int8", "openvino")]
    assert result["backend"] == "cpu,openvino" and result["baseline"] == "fp32 (cpu)"
    assert "int8 (openvino): " in res.output and "than fp32 (cpu) (p50)" in res.output
    assert res.output.splitlines()[-1].startswith("use: ")
    assert "openvino" in result["versions"]


def test_bench_openvino_defaults_include_bf16(rvm):
    from matting_deploy.benchmark.plan import plan_cases

    cases = plan_cases(Bundle.open(rvm), None, ["openvino"], log=lambda m: None)
    assert cases == [("fp32", "openvino"), ("int8", "openvino"), ("bf16", "openvino")]


def test_demo_validates_the_openvino_rows_when_installed(monkeypatch):
    from matting_deploy import optional
    from matting_deploy.commands.demo import validate_backends

    backends = validate_backends()
    assert backends[0] == "--backends" and backends[1].split(",")[0] == "cpu" and backends[1].endswith(",openvino")
    monkeypatch.setattr(optional, "unavailable", lambda name: "not installed")
    assert validate_backends() == []
