"""OpenVINO on this CPU against onnxruntime FP32: speed ratios from one interleaved run per model.

For each bundle, in one run (``benchmark.pipeline.measure_together``: every case's call one after the
other in each round, so load hits all alike): onnxruntime FP32 (``model.onnx``, the baseline) and,
through the project's runners (``open_runner(bundle, artifact, "openvino")``), OpenVINO ``fp32``,
``bf16`` (model.onnx with the BF16 hint), ``int8`` (``model.int8.onnx``) and ``int8-cpu``
(``model.int8-cpu.onnx``, when calibrated), each INT8 file at the hint it ships with
(``openvino_runner.HINTS``: on a BF16 CPU int8 at bf16, int8-cpu at f32) and, for comparison, at the
other one (``@f32``, ``@bf16``: the runner class with that hint). Ratios are onnxruntime FP32 p50 /
case p50; the targets of issue 21 are checked per model label (``rvm``, ``modnet``, ``rvm1080``).

``--data`` adds fidelity: alpha of each case against onnxruntime FP32 on a few images (recurrent
models: 4 frames of each image from zero state, the state carried, the last one compared).
``--perf-count`` adds where the time goes: OpenVINO's per-node profiling (``PERF_COUNT``) summed by
layer type and by the precision its kernel ran in. ``--nncf N`` adds the peer: the bundle's FP32 model
quantized by NNCF's ``nncf.quantize`` with its defaults (ONNX backend) on N images of ``--data``, fed
as calibrate feeds them (``bench/int8_fidelity.py``'s feeder: FP32 warm-up frames, RVM's states), run
on OpenVINO at f32 in the same interleaved run (case ``openvino nncf``).

    python bench/bench_openvino.py --bundle rvm=/tmp/rvm --bundle modnet=/tmp/modnet \\
        --bundle rvm1080=/tmp/rvm1080 --threads 2 --iters 20 --warmup 3 --data composite-dev

:func:`readme_table` returns the markdown table for bench/readme_figures.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matting_deploy.benchmark.pipeline import align, measure_together  # noqa: E402
from matting_deploy.bundle import Bundle  # noqa: E402
from matting_deploy.runtimes.open import io_spec, open_runner  # noqa: E402

BASELINE = "onnxruntime fp32"
NNCF_CASE = "openvino nncf"
CASES = ("openvino fp32", "openvino bf16", "openvino int8", "openvino int8@f32", "openvino int8@bf16",
         "openvino int8-cpu", "openvino int8-cpu@f32", "openvino int8-cpu@bf16", NNCF_CASE)
# issue 21's targets: (case, against, at least). The INT8 ones are checked for both INT8 files: the
# TensorRT Q/DQ layout (int8) and the CPU layout (int8-cpu, calibrate --target cpu).
TARGETS = {
    "rvm": [("openvino int8", BASELINE, 1.8), ("openvino int8-cpu", BASELINE, 1.8),
            ("openvino bf16", BASELINE, 1.9), ("openvino int8", "openvino fp32", 1.5),
            ("openvino int8-cpu", "openvino fp32", 1.5)],
    "modnet": [("openvino int8", BASELINE, 3.0), ("openvino int8-cpu", BASELINE, 3.0)],
    "rvm1080": [("openvino bf16", BASELINE, 1.9)],
}


def nncf_model(bundle: Bundle, data: Path, images: int, work: Path) -> Path:
    """The bundle's FP32 model quantized by ``nncf.quantize`` (defaults, ONNX backend) on the first
    ``images`` images of ``data``, fed like calibrate (the feeder and peer of int8_fidelity.py)."""
    import importlib.util

    import onnx

    from matting_deploy.quantize.qdq import prepare_fp32

    spec = importlib.util.spec_from_file_location("int8_fidelity", Path(__file__).with_name("int8_fidelity.py"))
    fidelity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fidelity)
    feeder = fidelity._feeder(bundle, data)
    feeder.items = feeder.items[:images]
    fp32, out = prepare_fp32(bundle.verify("fp32"), work / "nncf-fp32.onnx"), work / "nncf.onnx"
    fidelity._nncf(fp32, out, feeder)
    onnx.checker.check_model(str(out))
    return out


def open_cases(bundle: Bundle, threads: int, extra: dict[str, Path] | None = None) -> dict[str, Any]:
    """{case: runner} for the bundle (int8 cases only where it has model.int8.onnx) and ``extra``
    ({case: ONNX file}, e.g. the NNCF peer) on OpenVINO at f32."""
    from matting_deploy.runtimes.openvino_runner import DEFAULT_DEVICE, OvRunner

    runners = {BASELINE: open_runner(bundle, "fp32", "cpu", threads=threads),
               "openvino fp32": open_runner(bundle, "fp32", "openvino", threads=threads),
               "openvino bf16": open_runner(bundle, "bf16", "openvino", threads=threads)}
    for artifact in ("int8", "int8-cpu"):  # at the hint it ships with, and at the other for comparison
        if artifact in bundle.artifacts:
            runners[f"openvino {artifact}"] = shipped = open_runner(bundle, artifact, "openvino", threads=threads)
            other = "f32" if shipped.hint == "bf16" else "bf16"
            runners[f"openvino {artifact}@{other}"] = OvRunner(
                bundle.verify(artifact), bundle.states, bundle.downsample_ratio, bundle.dynamic,
                device=DEFAULT_DEVICE, hint=other, threads=threads)
    for case, path in (extra or {}).items():
        runners[case] = OvRunner(path, bundle.states, bundle.downsample_ratio, bundle.dynamic,
                                 device=DEFAULT_DEVICE, threads=threads, cache=None)
    return runners


def fidelity(bundle: Bundle, runners: dict[str, Any], data: Path, images: int) -> dict[str, dict[str, float]]:
    """{case: {max_abs, mse}} of alpha against onnxruntime FP32 over ``images`` images of ``data``."""
    from matting_deploy.data.pairs import load_dataset
    from matting_deploy.validate.scoring import Scorer, still_outputs

    scorer = Scorer(bundle)
    pairs = load_dataset(data, images).images
    alphas: dict[str, list[np.ndarray]] = defaultdict(list)
    for pair in pairs:
        src = scorer.model_input(pair.image)[0]
        for case, runner in runners.items():
            alphas[case].append(np.asarray(still_outputs(runner, src, scorer.frames)["pha"], np.float32))
    ref = np.stack(alphas[BASELINE])
    return {case: {"max_abs": float(np.abs(np.stack(a) - ref).max()), "mse": float(np.mean((np.stack(a) - ref) ** 2))}
            for case, a in alphas.items() if case != BASELINE}


def perf_counts(runner: Any, src: np.ndarray, runs: int = 5) -> tuple[dict[str, float], dict[str, float]]:
    """({layer type: ms/run}, {kernel precision: ms/run}) from OpenVINO's PERF_COUNT for the model and
    settings of an OpenVINO runner (compiled again with profiling on; zero state)."""
    from matting_deploy.runtimes.openvino_runner import core

    compiled = core().compile_model(runner.source, runner.device, {**runner.config, "PERF_COUNT": True})
    request = compiled.create_infer_request()
    feed = runner.model_inputs(src)
    by_type: dict[str, float] = defaultdict(float)
    by_precision: dict[str, float] = defaultdict(float)
    for _ in range(runs):
        request.infer(feed)
        for info in request.profiling_info:
            ms = info.real_time.total_seconds() * 1e3 / runs
            by_type[info.node_type] += ms
            by_precision[info.exec_type.rsplit("_", 1)[-1] if "_" in info.exec_type else info.exec_type] += ms
    top = dict(sorted(by_type.items(), key=lambda kv: -kv[1]))
    return top, dict(sorted(by_precision.items(), key=lambda kv: -kv[1]))


def measure_model(label: str, path: str | Path, iters: int, warmup: int, threads: int,
                  data: Path | None = None, images: int = 4, perf: bool = False,
                  log=print, nncf: int = 0) -> dict[str, Any]:
    """Every case of one bundle in one interleaved run: p50 ms and ratios (and fidelity, profiles,
    the NNCF peer on ``nncf`` images of ``data``)."""
    bundle = Bundle.open(path)
    spec = io_spec(bundle)
    h, w = spec.h or bundle.input_hw[0], spec.w or bundle.input_hw[1]
    src = np.random.default_rng(0).random((spec.n or 1, 3, h, w), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="md-ov-") as tmp:
        extra = {}
        if nncf and data is not None:
            log(f"{label}: quantizing with nncf.quantize on {nncf} images of {data}")
            extra[NNCF_CASE] = nncf_model(bundle, data, nncf, Path(tmp))
        return _measure(label, bundle, src, iters, warmup, threads, data, images, perf, log, extra)


def _measure(label: str, bundle: Bundle, src: np.ndarray, iters: int, warmup: int, threads: int,
             data: Path | None, images: int, perf: bool, log, extra: dict[str, Path]) -> dict[str, Any]:
    h, w = src.shape[-2:]
    runners = open_cases(bundle, threads, extra)
    try:
        log(f"{label}: timing {', '.join(runners)} ({warmup} warm-up + {iters} rounds, interleaved)")
        rows = measure_together([(r, None) for r in runners.values()], src, iters, warmup,
                                first=lambda s, left: log(f"{label}: about {left:.0f} s to go"))
        p50 = {case: row["p50_ms"] for case, row in zip(runners, rows, strict=True)}
        out: dict[str, Any] = {"label": label, "bundle": str(bundle.root), "input": [h, w], "p50_ms": p50,
                               "ratio": {c: p50[BASELINE] / v for c, v in p50.items()},
                               "hints": {c: r.hint for c, r in runners.items() if hasattr(r, "hint")}}
        if data is not None:
            out["fidelity"] = fidelity(bundle, runners, data, images)
        if perf:
            out["perf"] = {c: perf_counts(r, src) for c, r in runners.items() if c != BASELINE}
    finally:
        for runner in runners.values():
            runner.close()
    out["targets"] = [(case, against, want, p50[against] / p50[case] if case in p50 else None)
                      for case, against, want in TARGETS.get(label, [])]
    return out


def table_rows(results: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Header + one row per model: the baseline's p50 and each case's speed ratio to it (cases no
    model ran are left out; the shipped INT8 cases name their hint), then each INT8 case against
    OpenVINO FP32."""
    cases = [c for c in CASES if any(c in r["ratio"] for r in results)]
    int8 = [c for c in ("openvino int8", "openvino int8-cpu") if c in cases]
    hints = {c: h for r in results for c, h in r.get("hints", {}).items()}

    def head(case: str) -> str:  # the INT8 files as shipped: name the hint they ran at
        return f"{case} ({hints[case]})" if case in int8 and case in hints else case

    rows = [("model", f"{BASELINE} p50 ms", *map(head, cases), *(f"{c.split()[-1]} / openvino fp32" for c in int8))]
    for r in results:
        ratio, p50 = r["ratio"], r["p50_ms"]
        rows.append((f"{r['label']} {r['input'][0]}x{r['input'][1]}", f"{p50[BASELINE]:.1f}",
                     *[f"{ratio[c]:.2f}x" if c in ratio else "-" for c in cases],
                     *[f"{p50['openvino fp32'] / p50[c]:.2f}x" if c in p50 else "-" for c in int8]))
    return rows


def readme_table(bundles: dict[str, str | Path], iters: int = 20, warmup: int = 3, threads: int = 2) -> str:
    """The markdown table (speed vs onnxruntime FP32, p50) for bench/readme_figures.py: one
    interleaved run per bundle ({label: bundle folder}, labels as in :data:`TARGETS`)."""
    rows = table_rows([measure_model(k, v, iters, warmup, threads, log=lambda m: None) for k, v in bundles.items()])
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows[1:]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", action="append", required=True, metavar="LABEL=PATH",
                    help="a bundle and its label (rvm, modnet, rvm1080: the label picks the targets)")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="threads of every runtime (default 2)")
    ap.add_argument("--data", type=Path, help="images for the fidelity columns (PPM-100 layout)")
    ap.add_argument("--images", type=int, default=4, help="images of --data to compare (default 4)")
    ap.add_argument("--perf-count", action="store_true", help="where the time goes (OpenVINO PERF_COUNT)")
    ap.add_argument("--nncf", type=int, default=0, metavar="N",
                    help="also time NNCF's nncf.quantize defaults, calibrated on N images of --data")
    args = ap.parse_args()
    results = []
    for item in args.bundle:
        label, _, path = item.partition("=")
        if not path:
            ap.error(f"--bundle: LABEL=PATH, got {item}")
        if args.nncf and args.data is None:
            ap.error("--nncf: needs --data (the calibration images)")
        results.append(measure_model(label, path, args.iters, args.warmup, args.threads, args.data,
                                     args.images, args.perf_count, nncf=args.nncf))
    print(f"\nspeed vs {BASELINE} (p50 ratio, one interleaved run per model; {args.iters} rounds after "
          f"{args.warmup} warm-up, {args.threads} threads)")
    print("\n".join(align(table_rows(results), left=1)))
    print("\ntargets (issue 21):")
    for r in results:
        for case, against, want, got in r["targets"]:
            verdict = "-" if got is None else ("met" if got >= want else "MISSED")
            print(f"  {r['label']}: {case} >= {want}x {against}: "
                  f"{'-' if got is None else f'{got:.2f}x'} {verdict}")
    for r in results:
        if "fidelity" in r:
            print(f"\n{r['label']}: alpha vs {BASELINE} on {args.images} images of {args.data}")
            for case, f in r["fidelity"].items():
                print(f"  {case}: max |diff| {f['max_abs']:.2e}, MSE {f['mse']:.2e}")
        for case, (by_type, by_precision) in r.get("perf", {}).items():
            top = ", ".join(f"{k} {v:.1f}" for k, v in list(by_type.items())[:6])
            prec = ", ".join(f"{k} {v:.1f}" for k, v in by_precision.items())
            print(f"\n{r['label']} {case} (PERF_COUNT ms/run): {top}; by kernel precision: {prec}")


if __name__ == "__main__":
    main()
