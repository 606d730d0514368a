"""Runner vs the PyTorch anchor over sizes and models: the GPU targets of issue 9, in one table.

Usage (on the GPU machine; every figure is measured in this one run, runner and anchor calls
interleaved):

    python bench/bench_gpu_sweep.py [--backend cuda] [--models rvm,modnet] \
        [--sizes 480x288,1080x1920@0.25,2160x3840@0.125] [--artifacts fp32,fp16] \
        [--iters 200 --warmup 30] [--work /tmp/matting-sweep] [--json OUT]

Sizes are HEIGHTxWIDTH[@downsample_ratio]; the ratio applies to RVM only (MODNet has none and runs
at the full size, rounded up to a multiple of 32 as its encoder needs: 1080x1920 -> 1088x1920).
Background Matting (``--models bgm --sizes 512x512``) also ignores the ratio; its plate and mask
are fed like ``src`` to runner and anchor.
Bundles are exported once into ``--work`` with this project's PyTorch networks (random weights:
speed only) and reused. Per row: the runner (``open_runner``, host numpy in and
out), the anchor (same network in PyTorch: CUDA graph with pinned host I/O on a GPU, eager on CPU),
and both without host I/O (runner: the bound engine call; anchor: graph replay).

Targets checked on CUDA: runner <= 1.15x the anchor with host I/O, device-resident runner <= 1.1x
the anchor's replay, FP16 no slower than FP32. On CPU the script still runs (use small --iters and
--sizes); the targets are then not judged.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matting_deploy.benchmark.pipeline import align, run_bench  # noqa: E402
from matting_deploy.bundle import Bundle  # noqa: E402
from matting_deploy.errors import MattingDeployError  # noqa: E402
from matting_deploy.export.pipeline import ExportOptions, export_bundle  # noqa: E402

DEFAULT_SIZES = "480x288,1080x1920@0.25,2160x3840@0.125"
HOST_TARGET, DEVICE_TARGET = 1.15, 1.10


def parse_size(text: str) -> tuple[int, int, float]:
    """``"1080x1920@0.25"`` -> (1080, 1920, 0.25)."""
    try:
        hw, _, ratio = text.partition("@")
        h, w = (int(v) for v in hw.lower().split("x"))
        return h, w, float(ratio or 1.0)
    except ValueError:
        raise MattingDeployError(f"--sizes: '{text}' is not HEIGHTxWIDTH[@ratio]") from None


def bundle_for(work: Path, model: str, h: int, w: int, ratio: float, fp16: bool) -> Path:
    """The exported bundle for this case (made on first use)."""
    out = work / f"{model}-{h}x{w}@{ratio:g}"
    if (out / "manifest.json").is_file() and (not fp16 or "fp16" in Bundle.open(out).artifacts):
        return out
    export_bundle(ExportOptions(model=model, out=out, height=h, width=w, downsample_ratio=ratio,
                                fp16=fp16, force=True), log=lambda s: print(s, file=sys.stderr))
    return out


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    head = ("model", "size", "artifact", "runner ms", "anchor ms", "x anchor", "device ms",
            "replay ms", "dev x anchor")
    lines = [head]
    for r in rows:
        lines.append((r["model"], r["size"], r["artifact"], _f(r["p50_ms"]),
                      _f(r.get("anchor", {}).get("p50_ms")), _f(r.get("vs_anchor")),
                      _f(r.get("device", {}).get("p50_ms")),
                      _f(r.get("anchor_device", {}).get("p50_ms")), _f(r.get("device_vs_anchor"))))
    return "\n".join(align(lines, left=3))


def verdicts(rows: list[dict], backend: str) -> list[str]:
    """Target lines (CUDA only; on other backends the figures are shown, not judged)."""
    if backend != "cuda":
        return [f"targets are for the CUDA backend; {backend} figures shown, not judged"]

    def mark(ok: bool) -> str:
        return "met" if ok else "NOT met"

    out = []
    for r in rows:
        case = f"{r['model']} {r['size']} {r['artifact']}"
        if "vs_anchor" in r:
            out.append(f"{case}: host I/O {r['vs_anchor']:.2f}x anchor (<= {HOST_TARGET}: "
                       f"{mark(r['vs_anchor'] <= HOST_TARGET)})")
        if "device_vs_anchor" in r:
            out.append(f"{case}: device I/O {r['device_vs_anchor']:.2f}x replay (<= {DEVICE_TARGET}:"
                       f" {mark(r['device_vs_anchor'] <= DEVICE_TARGET)})")
        if "overhead_pct" in r:
            out.append(f"{case}: runner overhead over the bare bound call {r['overhead_pct']:+.2f}% "
                       f"(<= 3%: {mark(r['overhead_pct'] <= 3.0)})")
    by_case = {(r["model"], r["size"], r["artifact"]): r["p50_ms"] for r in rows}
    for (model, size, art), ms in by_case.items():
        if art == "fp16" and (model, size, "fp32") in by_case:
            fp32 = by_case[(model, size, "fp32")]
            out.append(f"{model} {size}: fp16 {ms:.2f} ms vs fp32 {fp32:.2f} ms (no slower: "
                       f"{mark(ms <= fp32)})")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--models", default="rvm,modnet")
    ap.add_argument("--sizes", default=DEFAULT_SIZES)
    ap.add_argument("--artifacts", default="fp32,fp16")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--work", default="/tmp/matting-sweep", help="bundle cache folder")
    ap.add_argument("--json", help="write every row here")
    args = ap.parse_args(argv)
    artifacts = [a for a in args.artifacts.split(",") if a]
    rows, notes = [], []
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",") if s]
        for model in [m for m in args.models.split(",") if m]:
            for h, w, ratio in sizes:
                if model == "modnet":
                    h, w, ratio = -(-h // 32) * 32, -(-w // 32) * 32, 1.0
                elif model == "bgm":
                    ratio = 1.0
                root = bundle_for(Path(args.work), model, h, w, ratio, "fp16" in artifacts)
                size = f"{h}x{w}" + (f"@{ratio:g}" if ratio != 1 else "")
                result = run_bench(root, artifacts, args.backend, args.iters, args.warmup,
                                   args.threads, log=lambda s: print(s, file=sys.stderr),
                                   anchor="torch")
                for r in result["rows"]:
                    rows.append({"model": model, "size": size, **r})
                    notes.append(f"{model} {size} {r['artifact']}: {r.get('capture_note', '-')}; "
                                 f"anchor {r['anchor']['label']}")
    except MattingDeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"backend {args.backend}, p50 over {args.iters} interleaved iterations after "
          f"{args.warmup} warm-up")
    print(table(rows))
    print("\n".join(["", *notes, "", *verdicts(rows, args.backend)]))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
        print(f"\njson: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
