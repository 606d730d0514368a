"""bench guides: an estimate and progress up front, one closing advice line, and the one-line refusals
(tensorrt without an engine, cuda without onnxruntime-gpu) before any timing."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from matting_deploy.benchmark.advice import advice
from matting_deploy.benchmark.pipeline import format_table, run_bench
from matting_deploy.bundle import Bundle
from matting_deploy.cli import main
from tests.fixtures import make_bundle


def bench(*args):
    return CliRunner().invoke(main, ["bench", *map(str, args)], catch_exceptions=False)


@pytest.fixture()
def bundle(tmp_path):
    return make_bundle(tmp_path / "b", artifacts={"fp32": {}, "int8": {}})


def _row(artifact, backend, p50):
    return {"artifact": artifact, "backend": backend, "p50_ms": p50}


def _report(bundle, rows):
    (bundle / "report").mkdir()
    results = [{"artifact": a, "backend": b, "ok": ok} for a, b, ok in rows]
    (bundle / "report" / "report.json").write_text(json.dumps({"results": results}))


def test_bench_says_how_long_shows_progress_and_ends_with_one_advice_line(bundle):
    res = bench("--bundle", bundle, "--iters", "8", "--warmup", "1")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    timing = next(i for i, line in enumerate(lines) if line.startswith("timing "))
    estimate = next(i for i, line in enumerate(lines) if line.startswith("first round"))
    assert timing < estimate and " to go (8 more rounds)" in lines[estimate]
    assert sum(line.startswith(("fp32 (cpu): opened", "int8 (cpu): opened")) for line in lines) == 2
    # not a terminal: a line per quarter instead of a bar
    assert [line.split(",")[0] for line in lines if line.startswith("timing: ")] == \
        ["timing: 2/8 rounds", "timing: 4/8 rounds", "timing: 6/8 rounds"]
    assert lines[-1].startswith("use: ") and "--target cpu" in lines[-1]
    # on onnxruntime CPU: no device column, no "session.run (cpu)" lines
    assert "device p50" not in res.output and "session.run" not in res.output


def test_advice_picks_the_fastest_row_that_passes_the_gates(bundle):
    bun = Bundle.open(bundle)
    rows = [_row("fp32", "cpu", 10.0), _row("int8", "cpu", 5.0), _row("fp16", "cpu", 8.0)]
    result = {"rows": rows}
    line = advice(result, bun)
    assert line.startswith("use: fp32 on cpu (FP32: no drift to check)")
    assert "int8 (cpu) is 2.00x the speed of fp32 (cpu) but its drift is unmeasured" in line
    assert f"validate --bundle {bun.root} --data YOUR_DATA --backends cpu --artifacts int8" in line
    _report(bundle, [("fp32", "cpu", True), ("int8", "cpu", False), ("fp16", "cpu", True)])
    line = advice(result, bun)
    assert line.startswith("use: fp16 on cpu (1.25x the speed of fp32 (cpu), the fastest that passes")
    assert "int8 (cpu) is 2.00x the speed of fp32 (cpu) but fails the drift gates" in line


def test_advice_on_cpu_names_the_tensorrt_layout_and_int8_cpu(bundle):
    line = advice({"rows": [_row("fp32", "cpu", 10.0), _row("int8", "cpu", 11.0)]}, Bundle.open(bundle))
    assert "int8 is the TensorRT Q/DQ layout, no faster on onnxruntime CPU" in line
    assert "calibrate --int8 --target cpu" in line and "openvino" in line.lower()
    assert "\n" not in line


def test_advice_on_openvino_passes_over_a_failing_int8_and_names_int8_cpu(bundle):
    bun = Bundle.open(bundle)
    rows = [_row("fp32", "openvino", 10.0), _row("bf16", "openvino", 6.0), _row("int8", "openvino", 5.0)]
    _report(bundle, [("fp32", "openvino", True), ("bf16", "openvino", True), ("int8", "openvino", False)])
    line = advice({"rows": rows}, bun)
    assert line.startswith("use: bf16 on openvino (1.67x the speed of fp32 (openvino), the fastest that passes")
    assert "int8 (openvino) is 2.00x the speed of fp32 (openvino) but fails the drift gates" in line
    assert "is int8-cpu: matting-deploy calibrate --int8 --target cpu" in line  # the bundle has no int8-cpu
    assert "pip install" not in line and "\n" not in line


def test_tensorrt_without_an_engine_says_build_before_timing(bundle):
    res = bench("--bundle", bundle, "--backend", "tensorrt")
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "matting-deploy build --bundle" in res.output
    assert "timing" not in res.output


def test_cuda_without_onnxruntime_gpu_names_the_package_before_timing(bundle):
    from matting_deploy.runtimes.onnxruntime_runner import available_backends

    if "cuda" in available_backends():
        pytest.skip("this onnxruntime has CUDA")
    res = bench("--bundle", bundle, "--backend", "cuda")
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "onnxruntime-gpu" in res.output and "timing" not in res.output


def test_a_backend_list_must_name_known_backends(bundle):
    res = bench("--bundle", bundle, "--backend", "cpu,tpu")
    assert res.exit_code == 2 and "unknown backend 'tpu'" in res.output


def test_bf16_without_openvino_in_the_list_is_refused(bundle):
    res = bench("--bundle", bundle, "--artifacts", "bf16")
    assert res.exit_code == 2 and "add --backend openvino" in res.output


def test_table_keeps_the_device_column_where_a_row_has_one(bundle):
    result = run_bench(bundle, ["fp32"], iters=2, warmup=0, log=lambda m: None)
    assert "device p50 ms" not in format_table(result)
    result["rows"][0]["device"] = {"p50_ms": 1.0}
    assert "device p50 ms" in format_table(result)
