"""Metric speed: the original definitions against matting_deploy.validate.metrics, on one core.

Usage:

    python bench/bench_metrics.py [--size 1080x1920] [--repeat 3] [--seed 0] [--pair portrait|noise]

Prints one row per metric: milliseconds per image pair with the original, plain definitions
(tests/metrics_reference.py), with the package's, their ratio, and whether the two values agree
to 1e-9. Threads are pinned to one before numpy loads; old and new calls alternate, so machine
noise hits both alike, and each cell is the median of --repeat runs. The single-metric functions
each cut their own tiles; ``all_metrics`` (what validate calls) cuts them once.

The pair is generated: ``portrait`` (tests/alpha_fixtures.portrait_pair: a portrait matte and a
network-like prediction, mostly exactly 0 or 1 as real ones are) or ``noise`` (uniform noise in
both: the worst case for the tiled code, nothing is flat). The target is all_metrics <= 40 ms per
1920x1080 pair; a ratio measured here carries over to other machines better than the ms do.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from matting_deploy.validate import metrics as new  # noqa: E402
from matting_deploy.validate.overlap import scored_in_background  # noqa: E402
from tests import metrics_reference as ref  # noqa: E402
from tests.alpha_fixtures import portrait_pair  # noqa: E402

TARGET_MS = 40.0
ROWS: list[tuple[str, Callable, Callable]] = [
    ("mse", ref.mse, new.mse),
    ("mad", ref.mad, new.mad),
    ("sad", ref.sad, new.sad),
    ("grad", ref.gradient_error, new.gradient_error),
    ("conn", ref.connectivity_error, new.connectivity_error),
    ("miou", ref.miou, new.miou),
    ("all_metrics", ref.all_metrics, new.all_metrics),
]


def _pairs(kind: str, h: int, w: int, seed: int) -> tuple[np.ndarray, ...]:
    """(pred, gt, pred_prev, gt_prev), float32 as validate passes them."""
    if kind == "portrait":
        return (*portrait_pair(h, w, seed), *portrait_pair(h, w, seed + 1))
    rng = np.random.default_rng(seed)
    return tuple(rng.random((h, w), dtype=np.float32) for _ in range(4))


def _timed(fn: Callable, args: tuple) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn(*args)
    return (time.perf_counter() - start) * 1e3, value


def _same(a: object, b: object) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-9 for k in a)
    return abs(a - b) <= 1e-9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="1080x1920", help="HxW (default 1080x1920)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pair", choices=("portrait", "noise"), default="portrait")
    ap.add_argument("--overlap", type=int, default=4, help="pairs for the thread-overlap check (0: skip)")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    pred, gt, pred_prev, gt_prev = _pairs(args.pair, h, w, args.seed)
    rows = [*ROWS, ("dtssd_term", ref.dtssd_term, new.dtssd_term)]
    inputs = {name: (pred, gt) for name, _, _ in ROWS} | {"dtssd_term": (pred, pred_prev, gt, gt_prev)}

    for name, _, fn in rows:  # warm-up (imports, first allocations)
        fn(*inputs[name])
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name, _, _ in rows}
    same: dict[str, bool] = {}
    for _ in range(args.repeat):
        for name, old_fn, new_fn in rows:
            t_old, v_old = _timed(old_fn, inputs[name])
            t_new, v_new = _timed(new_fn, inputs[name])
            times[name][0].append(t_old)
            times[name][1].append(t_new)
            same[name] = same.get(name, True) and _same(v_old, v_new)
    label_ms = statistics.median(_timed(ndimage.label, (gt >= 0.5,))[0] for _ in range(args.repeat))
    tiles_ms = statistics.median(_timed(new.Tiles, (pred, gt))[0] for _ in range(args.repeat))

    flat = float(np.mean((pred == 0) | (pred == 1)))
    print(f"{args.pair} pair {h}x{w}, float32, {flat:.1%} of the prediction exactly 0 or 1; one thread;")
    print(f"median of {args.repeat} alternating runs\n")
    print(f"| {'metric':<11} | {'old ms':>8} | {'new ms':>7} | {'ratio':>6} | same to 1e-9 |")
    print(f"|{'-' * 13}|{'-' * 10}|{'-' * 9}|{'-' * 8}|{'-' * 14}|")
    for name, _, _ in rows:
        old_ms, new_ms = (statistics.median(v) for v in times[name])
        agree = "yes" if same[name] else "NO"
        print(f"| {name:<11} | {old_ms:8.1f} | {new_ms:7.1f} | {old_ms / new_ms:5.1f}x | {agree:<12} |")
    print(f"| {'(tiles)':<11} | {'':>8} | {tiles_ms:7.1f} | {'':>6} | {'':<12} |")
    total = statistics.median(times["all_metrics"][1])
    print("(tiles): cutting the pair into tiles, part of every new row; all_metrics does it once")
    print(f"\nscipy.ndimage.label of one {h}x{w} mask: {label_ms:.1f} ms (Conn has 10 masks)")
    verdict = "met" if total <= TARGET_MS * h * w / (1920 * 1080) else "NOT met on this machine"
    print(f"target all_metrics <= {TARGET_MS:.0f} ms per 1920x1080 pair: {verdict} ({total:.1f} ms)")
    if args.overlap:
        print(overlap_line(args.overlap, (pred, gt), (pred_prev, gt_prev)))
    return 0 if all(same.values()) else 1


def overlap_line(n: int, a: tuple, b: tuple) -> str:
    """Do two threads overlap? The caller scores pair a (standing in for inference, which also
    releases the GIL) while scored_in_background scores pair b on its thread, n times each."""
    start = time.perf_counter()
    for _ in range(n):
        new.all_metrics(*a), new.all_metrics(*b)
    serial = time.perf_counter() - start

    def produced():
        for _ in range(n):
            new.all_metrics(*a)
            yield b

    start = time.perf_counter()
    list(scored_in_background(produced(), lambda pair: new.all_metrics(*pair)))
    both = time.perf_counter() - start
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"overlap: {n}+{n} all_metrics calls, one after the other {serial * 1e3:.0f} ms, producer and "
        f"one scoring thread {both * 1e3:.0f} ms: {serial / both:.2f}x (2 = full overlap, 1 = none; "
        f"{os.cpu_count()} cores, load {load:.1f})"
    )


if __name__ == "__main__":
    raise SystemExit(main())
