"""``bench`` as a function: latency percentiles, FPS and the runner's overhead over a bare call."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import numpy as np

from .. import __version__
from ..bundle import Bundle
from ..data.preprocess import extra_inputs
from ..errors import MattingDeployError
from ..optional import versions
from ..runtimes import OPENVINO, ORT_BACKENDS
from ..runtimes.base import Runner
from ..runtimes.open import io_spec, open_runner
from .anchor import Anchor, make_anchor, require_anchor


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


def _calls(runner: Runner, src: np.ndarray, inputs: dict[str, np.ndarray],
           anchor: Anchor | None) -> dict[str, Callable[[], Any]]:
    """The calls timed for one artifact: the runner, its bare and device-only calls, the anchor."""
    calls: dict[str, Callable[[], Any]] = {"run": lambda: runner.run(src, **inputs)}
    extra = {"bare": runner.bare_call(src, **inputs), "device": runner.device_call(src, **inputs)}
    if anchor is not None:
        extra.update(anchor=anchor.host_call, anchor_device=anchor.device_call)
    calls.update((k, f) for k, f in extra.items() if f is not None)
    return calls


def measure_together(cases: list[tuple[Runner, Anchor | None]], src: np.ndarray, iters: int,
                     warmup: int, inputs: dict[str, np.ndarray] | None = None,
                     first: Callable[[list[float], float], None] | None = None,
                     tick: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Time each (runner, anchor) case: ``runner.run(src, **inputs)`` (``inputs``: the extra
    inputs, BGM's plate and mask), its bare call, its device-only call and the anchor's calls,
    every call of every case one after the other in each iteration, so noise hits all alike and
    the ratios between artifacts come from one run; one row per case, milliseconds. With several
    cases each one's turn starts with an untimed call: the first call after another model runs
    with cold caches (+35% on RVM 480x288 on CPU), which a model running alone never pays.

    ``first(seconds per case, estimated seconds left)`` is called after one untimed round (the
    first warm-up round; an extra one without warm-up); ``tick()`` after every later round."""
    inputs = inputs or {}
    costs = [runner_cost_us(runner, src, extra=inputs) for runner, _ in cases]
    call_sets = [_calls(runner, src, inputs, anchor) for runner, anchor in cases]
    clock = time.perf_counter_ns
    rewarm = len(call_sets) > 1
    once = []
    for calls in call_sets if warmup or first is not None else []:
        t0 = clock()
        for call in calls.values():
            call()
        once.append((clock() - t0) / 1e9)
    if first is not None:
        rounds = max(warmup - 1, 0) + iters
        extra = sum(o / len(c) for o, c in zip(once, call_sets, strict=True)) if rewarm else 0.0
        first(once, sum(once) * rounds + extra * iters)
    for _ in range(max(warmup - 1, 0)):
        for calls in call_sets:
            for call in calls.values():
                call()
        if tick is not None:
            tick()
    times: list[dict[str, list[float]]] = [{k: [] for k in calls} for calls in call_sets]
    for _ in range(iters):
        for calls, spent in zip(call_sets, times, strict=True):
            if rewarm:
                calls["run"]()
            for name, call in calls.items():
                t0 = clock()
                call()
                spent[name].append((clock() - t0) / 1e6)
        if tick is not None:
            tick()
    return [_row(runner, anchor, spent, cost)
            for (runner, anchor), spent, cost in zip(cases, times, costs, strict=True)]


def measure(runner: Runner, src: np.ndarray, iters: int, warmup: int,
            anchor: Anchor | None = None, inputs: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """:func:`measure_together` for one runner."""
    return measure_together([(runner, anchor)], src, iters, warmup, inputs)[0]


def _row(runner: Runner, anchor: Anchor | None, times: dict[str, list[float]],
         cost: float | None) -> dict[str, Any]:
    row: dict[str, Any] = stats(np.array(times.pop("run")))
    row.update({name: stats(np.array(ms)) for name, ms in times.items()})
    if "bare" in row:
        b = row["bare"]
        row["overhead_pct"] = 100.0 * (row["p50_ms"] - b["p50_ms"]) / b["p50_ms"]
        row["overhead_mean_pct"] = 100.0 * (row["mean_ms"] - b["mean_ms"]) / b["mean_ms"]
    if cost is not None:
        row["runner_cost_us"] = cost
        row["runner_cost_pct"] = 100.0 * cost / 1e3 / row.get("bare", row)["p50_ms"]
    if anchor is not None:
        row["anchor"]["label"] = anchor.label
        row["vs_anchor"] = row["p50_ms"] / row["anchor"]["p50_ms"]
        if "device" in row and "anchor_device" in row:
            row["device_vs_anchor"] = row["device"]["p50_ms"] / row["anchor_device"]["p50_ms"]
    if runner.capture_note:
        row["capture_note"] = runner.capture_note
    return row


def run_bench(
    bundle: str | os.PathLike,
    artifacts: list[str] | None = None,
    backend: str | list[str] = "cpu",
    iters: int = 200,
    warmup: int = 20,
    threads: int = 0,
    seed: int = 0,
    log: Callable[[str], None] = print,
    anchor: str | None = None,
    profile_runs: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Benchmark each artifact of ``bundle`` on ``backend`` (one name, ``"cpu,openvino"`` or a
    list: every artifact of every backend in one interleaved run, so the table compares them;
    beside the ``anchor`` network, e.g. ``"torch"``, when given; with ``profile_runs`` also each
    one's per-op-type kernel time over that many runs); returns the JSON-ready result, whose
    ``advice`` is the closing line (:func:`.advice.advice`)."""
    from .advice import advice
    from .plan import parse_backends, plan_cases

    bun = Bundle.open(bundle)
    backends = parse_backends(backend)
    if anchor == "torch":
        require_anchor(bun)  # before any output: a missing extra or a foreign graph is one error line
    if profile_runs and any(b not in ORT_BACKENDS for b in backends):
        raise MattingDeployError(f"--profile-ops: onnxruntime backends only ({', '.join(ORT_BACKENDS)})")
    pairs = plan_cases(bun, artifacts, backends, log)
    labels = [f"{a} ({b})" for a, b in pairs]
    spec = io_spec(bun)
    h, w = (spec.h or bun.input_hw[0]), (spec.w or bun.input_hw[1])
    rng = np.random.default_rng(seed)
    src = rng.random((spec.n or 1, 3, h, w), dtype=np.float32)
    # Extra inputs (BGM: plate and mask): random too; the cost of a static graph does not
    # depend on the values.
    extra = {name: rng.random((spec.n or 1, 1 if name == "seg" else 3, h, w), dtype=np.float32)
             for name in extra_inputs(bun.model)}
    what = (f"{', '.join(a for a, _ in pairs)} on {backends[0]}" if len(backends) == 1 else ", ".join(labels))
    log(f"timing {what}: {warmup} warm-up + {iters} timed calls each, the "
        "artifacts interleaved call by call, every call paired with a bare engine call")
    with ExitStack() as stack:
        cases = []
        for name, b in pairs:
            t0 = time.perf_counter()
            ref = make_anchor(anchor, bun, name, b, src, threads, extra)
            if ref is not None:
                stack.callback(ref.close)
            cases.append((stack.enter_context(open_runner(bun, name, b, threads=threads)), ref))
            log(f"{name} ({b}): opened in {time.perf_counter() - t0:.1f} s")
        bar = Progress(warmup + iters - 1 if warmup else iters, log, progress)
        try:
            measured = measure_together(cases, src, iters, warmup, extra, first=bar.start(labels), tick=bar.tick)
        finally:
            bar.close()
    rows = [{"artifact": name, "backend": b, **row} for (name, b), row in zip(pairs, measured, strict=True)]
    for row, (_, ref) in zip(rows, cases, strict=True):
        log(f"{row['artifact']} ({row['backend']}): p50 {row['p50_ms']:.2f} ms"
            + (f", {row['vs_anchor']:.2f}x the anchor" if ref is not None else ""))
    fp32 = next((r for r in rows if r["artifact"] == "fp32"), None)
    many = len(backends) > 1
    speedups = {(f"{r['artifact']} ({r['backend']})" if many else r["artifact"]): fp32["p50_ms"] / r["p50_ms"]
                for r in rows if fp32 is not None and r is not fp32}
    profiles = None
    if profile_runs:
        from .profile import profile_ops

        log(f"profiling {', '.join(labels)}: {profile_runs} runs each (onnxruntime profiler)")
        profiles = {(f"{n} ({b})" if many else n): profile_ops(bun, n, src, profile_runs, b, threads)
                    for n, b in pairs}
    result = {
        "bundle": str(bun.root),
        "model": bun.model,
        "input": [spec.n or 1, 3, h, w],
        "backend": ",".join(backends),
        "iters": iters,
        "warmup": warmup,
        "threads": threads or "default",
        "rows": rows,
        "baseline": f"fp32 ({fp32['backend']})" if fp32 is not None else None,
        "speedup_vs_fp32_p50": speedups,
        **({"op_profile_ms": profiles, "profile_runs": profile_runs} if profiles else {}),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "versions": {"matting-deploy": __version__,
                     **versions(["onnxruntime", "onnxruntime-gpu", "numpy"]
                                + (["tensorrt"] if "tensorrt" in backends else [])
                                + (["openvino"] if any(b.startswith(OPENVINO) for b in backends) else [])
                                + (["torch"] if anchor else []))},
    }
    result["advice"] = advice(result, bun)
    return result


class Progress:
    """Bench progress: the first round's times and an estimate of the time left, then a bar on a
    terminal (:func:`matting_deploy.progress.bar`) or, in a log, a line at each quarter."""

    def __init__(self, rounds: int, log: Callable[[str], None], enabled: bool = True):
        self.rounds, self.log, self.done = rounds, log, 0
        self.lines = enabled and not sys.stderr.isatty()
        self.bar = None
        self.enabled = enabled
        self.t0 = time.perf_counter()

    def start(self, labels: list[str]) -> Callable[[list[float], float], None]:
        def first(seconds: list[float], left: float) -> None:
            calls = ", ".join(f"{label} {s * 1e3:.0f} ms" for label, s in zip(labels, seconds, strict=True))
            self.log(f"first round (each artifact's calls): {calls}; about {_duration(left)} to go "
                     f"({self.rounds} more rounds)")
            from ..progress import bar

            self.bar = bar(self.rounds, "timing", unit="round", enabled=self.enabled)
            self.t0 = time.perf_counter()
        return first

    def tick(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update()
        quarter = self.done * 4 // self.rounds != (self.done - 1) * 4 // self.rounds
        if self.lines and self.done < self.rounds and quarter:
            spent = time.perf_counter() - self.t0
            self.log(f"timing: {self.done}/{self.rounds} rounds, about "
                     f"{_duration(spent / self.done * (self.rounds - self.done))} left")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def speed_line(name: str, speedup: float, baseline: str = "FP32") -> str:
    """``"INT8: 1.05x slower than FP32 (p50)"`` from ``speedup`` = FP32 p50 / this p50 (a
    ``name (backend)`` label and its ``baseline`` are kept as written)."""
    name = name if " (" in name else name.upper()
    if speedup >= 1:
        return f"{name}: {speedup:.2f}x faster than {baseline} (p50)"
    return f"{name}: {1 / speedup:.2f}x slower than {baseline} (p50)"


def align(lines: list[tuple[str, ...]], left: int) -> list[str]:
    """Rows of cells as aligned text lines (the first ``left`` columns left-aligned), with a rule
    under the header row."""
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    text = ["  ".join(c.ljust(wd) if i < left else c.rjust(wd)
                      for i, (c, wd) in enumerate(zip(row, widths, strict=True))) for row in lines]
    text.insert(1, "  ".join("-" * wd for wd in widths))
    return text


def _ms(stat: dict | None) -> str:
    return f"{stat['p50_ms']:.2f}" if stat else "-"


def format_table(result: dict[str, Any]) -> str:
    """The result as a plain-text table (one row per artifact), speed-ups against FP32, and
    per artifact how the engine is driven and what the anchor is."""
    anchored = any("anchor" in r for r in result["rows"])
    device = any("device" in r for r in result["rows"])  # only GPU runners time device-only calls
    head = ["artifact", "backend", "p50 ms", "p90 ms", "p99 ms", "FPS", "bare p50 ms", "overhead",
            "runner cost"] + (["device p50 ms"] if device else [])
    if anchored:
        head += ["anchor p50 ms", "x anchor", "anchor dev ms", "dev x anchor"]
    lines = [tuple(head)]
    for r in result["rows"]:
        bare = r.get("bare")
        cells = [
            r["artifact"], r["backend"], f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}",
            f"{r['p99_ms']:.2f}", f"{r['fps']:.1f}", _ms(bare),
            f"{r['overhead_pct']:+.2f}%" if bare else "-",
            f"{r['runner_cost_us']:.0f} us ({r['runner_cost_pct']:.3f}%)"
            if "runner_cost_us" in r else "-",
        ] + ([_ms(r.get("device"))] if device else [])
        if anchored:
            cells += [_ms(r.get("anchor")), f"{r['vs_anchor']:.2f}" if "vs_anchor" in r else "-",
                      _ms(r.get("anchor_device")),
                      f"{r['device_vs_anchor']:.2f}" if "device_vs_anchor" in r else "-"]
        lines.append(tuple(cells))
    text = align(lines, left=2)
    n, c, h, w = result["input"]
    title = (f"{result['model']} {n}x{c}x{h}x{w}, {result['iters']} iterations after "
             f"{result['warmup']} warm-up, threads {result['threads']}")
    out = [title, *text, "overhead: (runner p50 - bare p50) / bare p50, interleaved calls (bare: "
           "the engine call with the same host copies); runner cost: run() with the engine "
           "replaced by cached outputs" + ("; device: the engine alone on device buffers" if device else "")]
    if anchored:
        out.append("x anchor: runner p50 / anchor p50 (same host I/O); dev x anchor: device p50 / "
                   "anchor device p50")
    baseline = result.get("baseline") or "fp32"
    many = "," in result["backend"]
    for name, s in result["speedup_vs_fp32_p50"].items():
        out.append(speed_line(name, s, baseline if many else "FP32"))
    if result.get("op_profile_ms"):
        from .profile import op_table

        out += ["", f"per-op-type kernel time (onnxruntime profiler, optimised graph), "
                f"{result['profile_runs']} runs:", *align(op_table(result["op_profile_ms"]), left=1)]
    notes = [r for r in result["rows"] if r.get("capture_note", "").split(" (")[0] not in ("", "session.run")]
    if notes:  # a plain session.run says nothing the backend column does not
        out.append("how each engine is driven:")
    for r in notes:
        out.append(f"  {r['artifact']} ({r['backend']}): {r['capture_note']}")
    for r in result["rows"]:
        if "anchor" in r:
            out.append(f"{r['artifact']} anchor: {r['anchor']['label']}")
    return "\n".join(out)
