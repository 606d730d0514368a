"""``matting-deploy bench``: latency percentiles, FPS and the runner's overhead over a bare call."""

from __future__ import annotations

from pathlib import Path

import click

from .options import artifact_option, backend_option, examples


@click.command(epilog=examples(
    "matting-deploy bench --bundle bundles/rvm",
    "matting-deploy bench --bundle bundles/rvm --artifacts fp32,int8 --iters 50 --warmup 5 --json bench.json",
    "matting-deploy bench --bundle bundles/rvm --backends tensorrt   # the built engines, on the GPU",
    "matting-deploy bench --bundle bundles/rvm --artifacts fp32,int8-cpu --profile-ops 20",
    "matting-deploy bench --bundle bundles/rvm --backends cpu,openvino   # onnxruntime and OpenVINO, one run",
))
@click.option("--bundle", type=click.Path(file_okay=False), required=True, help="Bundle folder.")
@artifact_option(many=True, help=" (default: every artifact the backend runs: the ONNX ones, with openvino also "
                "bf16, with tensorrt every built engine).")
@backend_option(many=True, help=" (default cpu; several are timed in one interleaved run): onnxruntime "
                "CPU/CUDA/TensorRT provider, the bundle's built TensorRT engines, OpenVINO.")
@click.option("--iters", type=click.IntRange(min=1), default=200, show_default=True,
              help="Timed calls per artifact (each paired with a bare engine call).")
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True,
              help="Untimed calls per artifact before timing.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="onnxruntime intra-op / OpenVINO inference threads (0 = the runtime's default).")
@click.option("--anchor", type=click.Choice(["torch"]),
              help="Time the same network in PyTorch on the same device beside each row (CUDA "
              "graph with pinned host I/O on a GPU, eager on CPU) and print the ratio. Needs "
              "PyTorch; bundles without PyTorch weights get random weights (speed only).")
@click.option("--profile-ops", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Also profile N runs per artifact and print onnxruntime's kernel time per op type "
              "(where the time goes, e.g. FP32 vs INT8; onnxruntime backends).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write results as JSON.")
@click.option("--force", is_flag=True, help="Overwrite an existing --json file.")
def bench(bundle, artifacts, backends, iters, warmup, threads, anchor, profile_ops, json_out, force):
    """Latency (p50/p90/p99), FPS and runner overhead over a bare engine call, per artifact.

    Says up front about how long it takes, shows progress, and ends with one line naming the
    artifact to use on the backend and why (drift from the bundle's validate report)."""
    from ..benchmark.pipeline import format_table, run_bench
    from ..fileio import check_dir_writable, check_writable, write_json

    if json_out:
        check_writable(Path(json_out), force)
        check_dir_writable(Path(json_out).parent)
    result = run_bench(bundle, artifacts, backends or ["cpu"], iters, warmup, threads,
                       log=click.echo, anchor=anchor, profile_runs=profile_ops)
    click.echo("\n" + format_table(result))
    if json_out:
        write_json(json_out, result, force=force)
        click.echo(f"json: {json_out}")
    click.echo(result["advice"])
