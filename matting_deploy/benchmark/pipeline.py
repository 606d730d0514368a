"""``bench`` as a function: latency percentiles, FPS and the runner's overhead over a bare call."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import __version__
from ..bundle import Bundle
from ..data.preprocess import extra_inputs
from ..errors import MattingDeployError
from ..optional import versions
from ..runtimes.base import Runner
from ..runtimes.open import io_spec, open_runner

BLOCK = 1  # runner and bare calls alternate, so noise from neighbours hits both alike


def default_artifacts(bundle: Bundle, backend: str) -> list[str]:
    """Every ONNX artifact (fp32, fp16, int8 first), or every built engine for ``tensorrt``."""
    return bundle.engines() if backend == "tensorrt" else list(bundle.onnx_artifacts())


def runner_cost_us(runner: Runner, src: np.ndarray, calls: int = 500,
                   extra: dict[str, np.ndarray] | None = None) -> float | None:
    """The runner's own time per call (feed, state, dict building) with the engine taken out:
    median microseconds of ``run`` while the engine returns cached outputs (onnxruntime)."""
    extra = extra or {}
    cached = runner.cached_engine(src, **extra)
    if cached is None:
        return None
    with cached:
        times = []
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            runner.run(src, **extra)
            times.append((time.perf_counter_ns() - t0) / 1e3)
    return float(np.median(times))


def stats(ms: np.ndarray) -> dict[str, float]:
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    mean = float(ms.mean())
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": mean,
            "fps": 1000.0 / mean if mean > 0 else float("inf")}


def measure(runner: Runner, src: np.ndarray, iters: int, warmup: int,
            extra: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Time ``runner.run(src, **extra)`` and its bare call, interleaved in blocks; milliseconds."""
    extra = extra or {}
    cost = runner_cost_us(runner, src, extra=extra)
    bare = runner.bare_call(src, **extra)
    for _ in range(warmup):
        runner.run(src, **extra)
        if bare is not None:
            bare()
    run_ms, bare_ms = [], []
    clock = time.perf_counter_ns
    while len(run_ms) < iters:
        for _ in range(min(BLOCK, iters - len(run_ms))):
            t0 = clock()
            runner.run(src, **extra)
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
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Benchmark each artifact of ``bundle`` on ``backend``; returns the JSON-ready result."""
    bun = Bundle.open(bundle)
    names = artifacts or default_artifacts(bun, backend)
    if not names:
        raise MattingDeployError(f"{bun.root}: nothing to benchmark on backend '{backend}'")
    spec = io_spec(bun)
    h, w = (spec.h or bun.input_hw[0]), (spec.w or bun.input_hw[1])
    rng = np.random.default_rng(seed)
    src = rng.random((spec.n or 1, 3, h, w), dtype=np.float32)
    # Extra inputs (BGM: plate and mask): random too; the cost of a static graph does not
    # depend on the values.
    extra = {name: rng.random((spec.n or 1, 1 if name == "seg" else 3, h, w), dtype=np.float32)
             for name in extra_inputs(bun.model)}
    rows = []
    for name in names:
        with open_runner(bun, name, backend, threads=threads) as runner:
            row = {"artifact": name, "backend": backend, **measure(runner, src, iters, warmup, extra)}
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
        "versions": {"matting-deploy": __version__,
                     **versions(["onnxruntime", "numpy"] + (["tensorrt"] if backend == "tensorrt" else []))},
    }


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
