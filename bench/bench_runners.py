"""Runner overhead over a bare ``InferenceSession.run`` and INT8-vs-FP32 speed, per bundle.

Usage (CPU; figures are per machine, and noisy where other jobs share the cores):

    python bench/bench_runners.py --bundle /work/cache/rvm-bundle --bundle bundles/modnet \
        [--iters 200 --warmup 20] [--threads 0] [--profile-ops 20] [--json OUT]

For each bundle it times every ONNX artifact through ``open_runner`` and through the same
session's bare call with the same host I/O (``session.run``; with ``--backend cuda`` the bound call
with its copies, i.e. the runner's overhead over a bare bound call), interleaved call by call so
noise hits both alike, and prints ``matting-deploy bench``'s table. ``--profile-ops N`` adds
onnxruntime's per-op-type time of every artifact over N runs (``bench --profile-ops``,
matting_deploy.benchmark.profile): the per-op reason when INT8 is not faster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matting_deploy.benchmark.pipeline import format_table, run_bench  # noqa: E402

OVERHEAD_TARGET_PCT = 3.0
INT8_TARGET = 1.3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", action="append", required=True, help="bundle folder (repeatable)")
    ap.add_argument("--artifacts", help="comma list (default: every ONNX artifact)")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--profile-ops", type=int, default=0, metavar="N")
    ap.add_argument("--json", help="write all results here")
    args = ap.parse_args()
    artifacts = [a for a in (args.artifacts or "").split(",") if a] or None

    print(f"machine: {os.cpu_count()} CPUs visible; other jobs may share them (noisy figures)")
    results = []
    for path in args.bundle:
        result = run_bench(path, artifacts, args.backend, args.iters, args.warmup, args.threads,
                           log=lambda s: print(s, file=sys.stderr), profile_runs=args.profile_ops)
        print("\n" + format_table(result))
        for row in result["rows"]:
            if "overhead_pct" in row:
                ok = row["overhead_pct"] <= OVERHEAD_TARGET_PCT
                print(f"  {row['artifact']}: runner overhead {row['overhead_pct']:+.2f}% (p50), "
                      f"{row['overhead_mean_pct']:+.2f}% (mean); target <= "
                      f"{OVERHEAD_TARGET_PCT}%: {'met' if ok else 'NOT met'}")
        for name in ("int8", "int8-cpu"):
            speed = result["speedup_vs_fp32_p50"].get(name)
            if speed is not None:
                print(f"  {name} vs fp32: {speed:.2f}x; target >= {INT8_TARGET}x: "
                      f"{'met' if speed >= INT8_TARGET else 'NOT met'}")
        results.append(result)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\njson: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
