"""OpenVINO first-call latency, cold against cached: what a user waits for at each start.

For each bundle and artifact, fresh processes (so nothing is kept in memory between starts) each open
``open_runner(bundle, artifact, "openvino")`` and run one frame, timing the open (read + compile, or
load from the compiled-model cache) and the first call:

- ``cold``: an empty cache folder (``XDG_CACHE_HOME`` pointed at a new folder), so OpenVINO compiles
  and writes the blob;
- ``cached``: the same folder again, the blob read back (the second start of every later run);
- ``no cache``: ``OvRunner.from_bundle(..., cache=None)``, what the runner does where the cache
  folder cannot be written.

Each is started ``--repeats`` times, interleaved (cold, cached, no cache, cold, ...), and the median
is printed with the cached start's speed-up over the cold one.

    python bench/openvino_first_call.py --bundle rvm=B [--bundle modnet=M] [--artifacts fp32,bf16,int8-cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matting_deploy.benchmark.pipeline import align  # noqa: E402

MODES = ("cold", "cached", "no cache")

# One start, in a child process: prints {"open_ms", "first_ms"} as JSON.
CHILD = """
import json, sys, time
import numpy as np
sys.path.insert(0, {root!r})
from matting_deploy.bundle import Bundle
from matting_deploy.runtimes.open import io_spec, open_runner
from matting_deploy.runtimes.openvino_runner import OvRunner
t0 = time.perf_counter()
bundle = Bundle.open({bundle!r})
if {no_cache}:
    runner = OvRunner.from_bundle(bundle, {artifact!r}, threads={threads}, cache=None)
else:
    runner = open_runner(bundle, {artifact!r}, "openvino", threads={threads})
t1 = time.perf_counter()
spec = io_spec(bundle)
h, w = spec.h or bundle.input_hw[0], spec.w or bundle.input_hw[1]
runner.run(np.random.default_rng(0).random((spec.n or 1, 3, h, w), dtype=np.float32))
t2 = time.perf_counter()
runner.close()
print(json.dumps({{"open_ms": (t1 - t0) * 1e3, "first_ms": (t2 - t1) * 1e3}}))
"""


def start(bundle: str, artifact: str, mode: str, cache_home: Path, threads: int) -> dict[str, float]:
    """One start in a fresh process; ``cache_home`` is its XDG_CACHE_HOME."""
    code = CHILD.format(root=str(ROOT), bundle=bundle, artifact=artifact, no_cache=mode == "no cache",
                        threads=threads)
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"openvino_first_call: {bundle} {artifact} ({mode}): {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(bundle: str, artifact: str, repeats: int, threads: int) -> dict[str, dict[str, float]]:
    """{mode: {open_ms, first_ms, total_ms}} medians over ``repeats`` interleaved starts."""
    got: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="md-ovcache-") as home:
            for mode in MODES:  # cold fills the folder that cached then reads
                got[mode].append(start(bundle, artifact, mode, Path(home), threads))
    return {m: {k: float(np.median([r[k] for r in rs])) for k in ("open_ms", "first_ms")}
            | {"total_ms": float(np.median([r["open_ms"] + r["first_ms"] for r in rs]))}
            for m, rs in got.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", action="append", required=True, metavar="LABEL=PATH")
    ap.add_argument("--artifacts", default="fp32,bf16,int8,int8-cpu",
                    help="OpenVINO artifacts to start (those the bundle lacks are skipped)")
    ap.add_argument("--repeats", type=int, default=3, help="starts per mode (median; default 3)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the medians here")
    args = ap.parse_args(argv)
    from matting_deploy.bundle import Bundle
    from matting_deploy.runtimes.open import backend_artifacts

    rows = [("model", "artifact", *(f"{m} open+first ms" for m in MODES), "cached vs cold", "of which first call")]
    results = {}
    for item in args.bundle:
        label, _, path = item.partition("=")
        have = backend_artifacts(Bundle.open(path), "openvino")
        for artifact in [a for a in args.artifacts.split(",") if a in have]:
            r = measure(path, artifact, args.repeats, args.threads)
            results[f"{label} {artifact}"] = r
            rows.append((label, artifact, *(f"{r[m]['total_ms']:.0f}" for m in MODES),
                         f"{r['cold']['total_ms'] / r['cached']['total_ms']:.1f}x faster",
                         f"{r['cached']['first_ms']:.0f} ms"))
            print(f"{label} {artifact}: {json.dumps(r)}", flush=True)
    print(f"\nfirst-call latency (process start excluded; median of {args.repeats} starts, interleaved)")
    print("\n".join(align(rows, left=2)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
