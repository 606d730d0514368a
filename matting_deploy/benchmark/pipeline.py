"""``matting-deploy bench``: latency percentiles, FPS and the runner's overhead over a bare call."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

BLOCK = 1  # runner and bare calls alternate, so noise from neighbours hits both alike


def _split(text: str | None) -> list[str] | None:
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    return list(dict.fromkeys(items)) or None


def default_artifacts(bundle: Any, backend: str) -> list[str]:
    """Every ONNX artifact (fp32, fp16, int8 first), or every built engine for ``tensorrt``."""
    from ..bundle import ENGINE_FILE
    from .open import PRECISIONS

    if backend == "tensorrt":
        return [p for p in PRECISIONS if (bundle.root / ENGINE_FILE.format(precision=p)).is_file()]
    onnx = [a for a, f in bundle.artifacts.items() if f.endswith(".onnx")]
    return sorted(onnx, key=lambda a: (PRECISIONS.index(a) if a in PRECISIONS else 9, a))


def bare_call(runner: Any, src: np.ndarray) -> Callable[[], Any] | None:
    """The engine call with nothing around it: ``session.run`` on a prepared feed (onnxruntime),
    enqueue + sync without copies (TensorRT); None when the runner has neither."""
    if hasattr(runner, "session") and hasattr(runner, "feed"):
        session, feed = runner.session, runner.feed(src)
        return lambda: session.run(None, feed)
    if hasattr(runner, "execute_only"):
        return runner.execute_only
    return None


class _CachedSession:
    """Stands in for an InferenceSession: returns one run's outputs again, in no time."""

    def __init__(self, outputs: list[Any]):
        self.outputs = outputs

    def run(self, names: Any, feed: dict[str, Any]) -> list[Any]:
        return self.outputs


def runner_cost_us(runner: Any, src: np.ndarray, calls: int = 500) -> float | None:
    """The runner's own time per call (feed, state, dict building) with the engine taken out:
    median microseconds of ``run`` over a session that returns cached outputs (onnxruntime)."""
    if not (hasattr(runner, "session") and hasattr(runner, "feed")):
        return None
    real = runner.session
    runner.session = _CachedSession(real.run(None, runner.feed(src)))
    try:
        times = []
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            runner.run(src)
            times.append((time.perf_counter_ns() - t0) / 1e3)
    finally:
        runner.session = real
        runner.reset()
    return float(np.median(times))


def stats(ms: np.ndarray) -> dict[str, float]:
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    mean = float(ms.mean())
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": mean,
            "fps": 1000.0 / mean if mean > 0 else float("inf")}


def measure(runner: Any, src: np.ndarray, iters: int, warmup: int) -> dict[str, Any]:
    """Time ``runner.run(src)`` and its bare call, interleaved in blocks; milliseconds."""
    cost = runner_cost_us(runner, src)
    bare = bare_call(runner, src)
    for _ in range(warmup):
        runner.run(src)
        if bare is not None:
            bare()
    run_ms, bare_ms = [], []
    clock = time.perf_counter_ns
    while len(run_ms) < iters:
        for _ in range(min(BLOCK, iters - len(run_ms))):
            t0 = clock()
            runner.run(src)
            run_ms.append((clock() - t0) / 1e6)
        if bare is not None:
            for _ in range(min(BLOCK, iters - len(bare_ms))):
                t0 = clock()
                bare()
                bare_ms.append((clock() - t0) / 1e6)
    row: dict[str, Any] = stats(np.array(run_ms))
    if bare_ms:
        b = stats(np.array(bare_ms))
        row["bare"] = b
        row["overhead_pct"] = 100.0 * (row["p50_ms"] - b["p50_ms"]) / b["p50_ms"]
        row["overhead_mean_pct"] = 100.0 * (row["mean_ms"] - b["mean_ms"]) / b["mean_ms"]
    if cost is not None:
        row["runner_cost_us"] = cost
        row["runner_cost_pct"] = 100.0 * cost / 1e3 / row.get("bare", row)["p50_ms"]
    return row


def run_bench(
    bundle: str | os.PathLike,
    artifacts: list[str] | None = None,
    backend: str = "cpu",
    iters: int = 200,
    warmup: int = 20,
    threads: int = 0,
    seed: int = 0,
    log: Callable[[str], None] = click.echo,
) -> dict[str, Any]:
    """Benchmark each artifact of ``bundle`` on ``backend``; returns the JSON-ready result."""
    from .. import __version__
    from ..bundle import Bundle
    from ..errors import MattingDeployError
    from .open import io_spec, open_runner

    bun = Bundle.open(bundle)
    names = artifacts or default_artifacts(bun, backend)
    if not names:
        raise MattingDeployError(f"{bun.root}: nothing to benchmark on backend '{backend}'")
    spec = io_spec(bun)
    h, w = (spec.h or bun.input_hw[0]), (spec.w or bun.input_hw[1])
    src = np.random.default_rng(seed).random((spec.n or 1, 3, h, w), dtype=np.float32)
    rows = []
    for name in names:
        runner = open_runner(bun, name, backend, threads=threads)
        try:
            row = {"artifact": name, "backend": backend, **measure(runner, src, iters, warmup)}
        finally:
            runner.close()
        rows.append(row)
        log(f"{name} ({backend}): p50 {row['p50_ms']:.2f} ms")
    fp32 = next((r for r in rows if r["artifact"] == "fp32"), None)
    speedups = {r["artifact"]: fp32["p50_ms"] / r["p50_ms"] for r in rows
                if fp32 is not None and r is not fp32}
    return {
        "bundle": str(bun.root),
        "model": bun.model,
        "input": [spec.n or 1, 3, h, w],
        "backend": backend,
        "iters": iters,
        "warmup": warmup,
        "threads": threads or "default",
        "rows": rows,
        "speedup_vs_fp32_p50": speedups,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "versions": _versions(__version__, backend),
    }


def _versions(ours: str, backend: str) -> dict[str, str]:
    import onnxruntime

    out = {"matting-deploy": ours, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}
    if backend == "tensorrt":
        import tensorrt

        out["tensorrt"] = tensorrt.__version__
    return out


def format_table(result: dict[str, Any]) -> str:
    """The result as a plain-text table (one row per artifact) plus speed-ups against FP32."""
    head = ("artifact", "backend", "p50 ms", "p90 ms", "p99 ms", "FPS", "bare p50 ms", "overhead",
            "runner cost")
    lines = [head]
    for r in result["rows"]:
        bare = r.get("bare")
        lines.append((
            r["artifact"], r["backend"], f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}",
            f"{r['p99_ms']:.2f}", f"{r['fps']:.1f}",
            f"{bare['p50_ms']:.2f}" if bare else "-",
            f"{r['overhead_pct']:+.2f}%" if bare else "-",
            f"{r['runner_cost_us']:.0f} us ({r['runner_cost_pct']:.3f}%)"
            if "runner_cost_us" in r else "-",
        ))
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    text = [
        "  ".join(c.ljust(wd) if i < 2 else c.rjust(wd) for i, (c, wd) in
                  enumerate(zip(row, widths, strict=True)))
        for row in lines
    ]
    text.insert(1, "  ".join("-" * wd for wd in widths))
    n, c, h, w = result["input"]
    title = (f"{result['model']} {n}x{c}x{h}x{w}, {result['iters']} iterations after "
             f"{result['warmup']} warm-up, threads {result['threads']}")
    out = [title, *text, "overhead: (runner p50 - bare p50) / bare p50, interleaved calls; "
           "runner cost: run() with the engine replaced by cached outputs"]
    for name, s in result["speedup_vs_fp32_p50"].items():
        out.append(f"{name} vs fp32 (p50): {s:.2f}x {'faster' if s >= 1 else 'slower'}")
    return "\n".join(out)


@click.command()
@click.option("--bundle", type=click.Path(file_okay=False), required=True, help="Bundle folder.")
@click.option("--artifacts", help="Comma list, e.g. fp32,int8 (default: every ONNX artifact; "
              "with --backend tensorrt every built engine).")
@click.option("--backend", type=click.Choice(["cpu", "cuda", "ort-trt", "tensorrt"]),
              default="cpu", show_default=True)
@click.option("--iters", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="onnxruntime intra-op threads (0 = onnxruntime's default).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write results as JSON.")
@click.option("--force", is_flag=True, help="Overwrite an existing --json file.")
def bench(bundle, artifacts, backend, iters, warmup, threads, json_out, force):
    """Latency (p50/p90/p99), FPS and runner overhead over a bare engine call, per artifact."""
    from ..fileio import check_writable, write_json

    if json_out:
        check_writable(Path(json_out), force)
    result = run_bench(bundle, _split(artifacts), backend, iters, warmup, threads)
    click.echo("\n" + format_table(result))
    if json_out:
        write_json(json_out, result, force=force)
        click.echo(f"\njson: {json_out}")
