"""Runner overhead over a bare ``InferenceSession.run`` and INT8-vs-FP32 speed, per bundle.

Usage (CPU; figures are per machine, and noisy where other jobs share the cores):

    python bench/bench_runners.py --bundle /work/cache/rvm-bundle --bundle bundles/modnet \
        [--iters 200 --warmup 20] [--threads 0] [--profile-ops 20] [--json OUT]

For each bundle it times every ONNX artifact through ``open_runner`` and through the same
session's bare call with the same host I/O (``session.run``; with ``--backend cuda`` the bound call
with its copies, i.e. the runner's overhead over a bare bound call), interleaved call by call so
noise hits both alike, and prints ``matting-deploy bench``'s table. ``--profile-ops N`` adds
onnxruntime's per-op-type time for the FP32 and INT8 artifacts over N runs: the per-op reason when
INT8 is not faster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matting_deploy.benchmark.pipeline import format_table, run_bench  # noqa: E402
from matting_deploy.bundle import Bundle  # noqa: E402

OVERHEAD_TARGET_PCT = 3.0
INT8_TARGET = 1.3


def profile_ops(bundle: Bundle, artifact: str, runs: int, threads: int) -> dict[str, float]:
    """Milliseconds per run spent in each op type (onnxruntime profiler, node events)."""
    import numpy as np
    import onnxruntime as ort

    from matting_deploy.runtimes.onnxruntime_runner import OrtRunner

    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.log_severity_level = 3
    opts.profile_file_prefix = f"/tmp/md_profile_{artifact}"
    if threads:
        opts.intra_op_num_threads = threads
    runner = OrtRunner.from_bundle(bundle, artifact)
    session = ort.InferenceSession(str(bundle.artifact_path(artifact)), opts,
                                   providers=["CPUExecutionProvider"])
    h, w = bundle.input_hw
    feed = runner.model_inputs(np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32))
    for _ in range(runs):
        session.run(None, feed)
    trace = Path(session.end_profiling())
    per_op: dict[str, float] = defaultdict(float)
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            per_op[event["args"].get("op_name", "?")] += event["dur"] / 1000.0 / runs
    trace.unlink(missing_ok=True)
    return dict(sorted(per_op.items(), key=lambda kv: -kv[1]))


def op_table(profiles: dict[str, dict[str, float]], top: int = 12) -> str:
    names = list(profiles)
    ops = sorted({op for p in profiles.values() for op in p},
                 key=lambda op: -max(p.get(op, 0.0) for p in profiles.values()))[:top]
    rows = [("op type", *[f"{n} ms/run" for n in names])]
    rows += [(op, *[f"{profiles[n].get(op, 0.0):.2f}" for n in names]) for op in ops]
    rows.append(("total (kernels)", *[f"{sum(profiles[n].values()):.2f}" for n in names]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                     for r in rows)


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
                           log=lambda s: print(s, file=sys.stderr))
        print("\n" + format_table(result))
        for row in result["rows"]:
            if "overhead_pct" in row:
                ok = row["overhead_pct"] <= OVERHEAD_TARGET_PCT
                print(f"  {row['artifact']}: runner overhead {row['overhead_pct']:+.2f}% (p50), "
                      f"{row['overhead_mean_pct']:+.2f}% (mean); target <= "
                      f"{OVERHEAD_TARGET_PCT}%: {'met' if ok else 'NOT met'}")
        speed = result["speedup_vs_fp32_p50"].get("int8")
        if speed is not None:
            print(f"  int8 vs fp32: {speed:.2f}x; target >= {INT8_TARGET}x: "
                  f"{'met' if speed >= INT8_TARGET else 'NOT met'}")
        if args.profile_ops:
            bundle = Bundle.open(path)
            names = [a for a in ("fp32", "int8") if a in bundle.artifacts]
            profiles = {a: profile_ops(bundle, a, args.profile_ops, args.threads) for a in names}
            result["op_profile_ms"] = profiles
            print(f"\nper-op-type kernel time, {args.profile_ops} runs "
                  f"({result['model']}):\n{op_table(profiles)}")
        results.append(result)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\njson: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
