"""Measure INT8 recipes on real data: alpha MSE / mIoU vs ground truth, against FP32.

Protocol (issue 3): each image stretched to the bundle size (480x288), RVM run 4 frames with the
state carried, the last frame's alpha mapped back to the matte size; MSE and mIoU (mean of fg and
bg IoU at 0.5) against the matte. Calibration uses one half of the images (even indices), the
other half is held out; figures are given for the held-out half and for all images.

    python bench/int8_recipes.py --bundle /work/cache/rvm-bundle \
        --data /work/shared/data/composite-dev --recipes default,plain-all --methods entropy
    python bench/int8_recipes.py --recipes default --eval-model BUNDLE/model.int8.onnx

Results and the commands behind them: bench/NOTES-int8.md.

Work files (FP32 references, calibrated ranges, Q/DQ models) are cached under --work.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matting_deploy.bundle import Bundle  # noqa: E402
from matting_deploy.data.imaging import load_image, load_matte  # noqa: E402
from matting_deploy.data.pairs import ppm_pairs  # noqa: E402
from matting_deploy.data.preprocess import alpha_to_source, preprocess_for  # noqa: E402
from matting_deploy.quantize import collect, qdq  # noqa: E402
from matting_deploy.quantize.recipe import DEFAULT, Recipe, excluded_nodes  # noqa: E402
from matting_deploy.runtimes.onnxruntime_runner import OrtRunner  # noqa: E402
from matting_deploy.validate.metrics import miou, mse  # noqa: E402
from matting_deploy.validate.scoring import still_outputs  # noqa: E402

ALL_OPS = ()  # empty = every op type onnxruntime can quantize

# name -> recipe (experiments; the library default is DEFAULT)
ORT_DEFAULT_BINS = {"entropy": {"num_bins": 128, "num_quantized_bins": 128}}
CONV_IN = {"op_types": ("Conv",), "no_output_qdq": ("Conv",)}
RECIPES = {
    "default": DEFAULT,
    # onnxruntime's defaults: every quantizable op, 128-bin entropy
    "plain-all": Recipe("plain-all", op_types=ALL_OPS, calibrator_options=ORT_DEFAULT_BINS),
    "conv": Recipe("conv", op_types=("Conv",)),
    "conv-in": Recipe("conv-in", **CONV_IN),
    "conv-in-128": Recipe("conv-in-128", **CONV_IN, calibrator_options=ORT_DEFAULT_BINS),
    "conv-in-stem": Recipe("conv-in-stem", **CONV_IN, exclude_rules=("stem",)),
    "conv-in-stem-ref": Recipe("conv-in-stem-ref", **CONV_IN, exclude_rules=("stem", "refiner")),
    "conv-in-stem-ref-g3": Recipe("conv-in-stem-ref-g3", **CONV_IN, exclude_rules=("stem", "refiner"),
                                  range_guard=3.0),
    "conv-in-stem-ref-g1.5": Recipe("conv-in-stem-ref-g1.5", **CONV_IN,
                                    exclude_rules=("stem", "refiner"), range_guard=1.5),
    "conv-in-stem-ref-g1": Recipe("conv-in-stem-ref-g1", **CONV_IN,
                                  exclude_rules=("stem", "refiner"), range_guard=1.0),
    "conv-in-early-ref": Recipe("conv-in-early-ref", **CONV_IN, exclude_rules=("early", "refiner")),
    "conv-in-early-ref-g3": Recipe("conv-in-early-ref-g3", **CONV_IN,
                                   exclude_rules=("early", "refiner"), range_guard=3.0),
    "conv-in-early-ref-g1.5": Recipe("conv-in-early-ref-g1.5", **CONV_IN,
                                     exclude_rules=("early", "refiner"), range_guard=1.5),
    "conv-in-early-ref-g1": Recipe("conv-in-early-ref-g1", **CONV_IN,
                                   exclude_rules=("early", "refiner"), range_guard=1.0),
    "conv-out-early-ref-g3": Recipe("conv-out-early-ref-g3", op_types=("Conv",),
                                    exclude_rules=("early", "refiner"), range_guard=3.0),
    "conv-add-early-ref-g3": Recipe("conv-add-early-ref-g3", op_types=("Conv", "Add"),
                                    no_output_qdq=("Conv",), exclude_rules=("early", "refiner"),
                                    range_guard=3.0),
    "all-early-ref-g3": Recipe("all-early-ref-g3", op_types=ALL_OPS,
                               exclude_rules=("early", "refiner"), range_guard=3.0),
    "conv-in-early-g3": Recipe("conv-in-early-g3", **CONV_IN, exclude_rules=("early",),
                               range_guard=3.0),
    "conv-in-stem-g3": Recipe("conv-in-stem-g3", **CONV_IN, exclude_rules=("stem",), range_guard=3.0),
    "conv-in-g3": Recipe("conv-in-g3", **CONV_IN, range_guard=3.0),
    "conv-out-stem-ref-g3": Recipe("conv-out-stem-ref-g3", op_types=("Conv",),
                                   exclude_rules=("stem", "refiner"), range_guard=3.0),
    "conv-add-stem-ref-g3": Recipe("conv-add-stem-ref-g3", op_types=("Conv", "Add"),
                                   no_output_qdq=("Conv",), exclude_rules=("stem", "refiner"),
                                   range_guard=3.0),
    "all-stem-ref-g3": Recipe("all-stem-ref-g3", op_types=ALL_OPS,
                              exclude_rules=("stem", "refiner"), range_guard=3.0),
}


def run_protocol(runner: OrtRunner, srcs, geos, frames: int) -> list[np.ndarray]:
    """The library's scoring protocol (K frames from zero state, the last kept) at source size."""
    return [alpha_to_source(still_outputs(runner, src, frames)["pha"], geo)
            for src, geo in zip(srcs, geos, strict=True)]


def scores(alphas, mattes, ref=None) -> dict:
    err = np.array([mse(a, m) for a, m in zip(alphas, mattes, strict=True)])
    iou = np.array([miou(a, m) for a, m in zip(alphas, mattes, strict=True)])
    out = {"mse": err, "miou": iou}
    if ref is not None:
        out["diff"] = np.array([np.mean(np.abs(a - r)) for a, r in zip(alphas, ref, strict=True)])
    return out


class ListReader:
    """A chunked CalibrationDataReader over precomputed feeds (same interface as the feeder)."""

    def __init__(self, feeds, chunk):
        self.feeds, self.chunk, self.pos, self.n = feeds, chunk, 0, 0
        self.used = []

    @property
    def done(self):
        return self.pos >= len(self.feeds)

    def next_chunk(self):
        self.n = 0

    def get_next(self):
        if self.done or (self.chunk and self.n >= self.chunk):
            return None
        f = self.feeds[self.pos]
        self.pos += 1
        self.n += 1
        self.used.append(self.pos)
        return f


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", default="/work/cache/rvm-bundle")
    ap.add_argument("--data", default="/work/shared/data/composite-dev")
    ap.add_argument("--work", default="/tmp/int8-bench")
    ap.add_argument("--recipes", default="default")
    ap.add_argument("--methods", default="entropy")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--calib", choices=["even", "all"], default="even",
                    help="even: calibrate on even-index images, hold out the odd ones")
    ap.add_argument("--opt", action="append", default=[],
                    help="calibrator option for this run: method:key=value (e.g. entropy:num_bins=512)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-model", action="append", default=[],
                    help="also score an existing INT8 model file (e.g. BUNDLE/model.int8.onnx)")
    args = ap.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bundle = Bundle.open(args.bundle)
    h, w = bundle.input_hw
    pre = preprocess_for(bundle.model)
    pairs, _ = ppm_pairs(args.data)
    mattes = [load_matte(p.matte) for p in pairs]
    srcs, geos = zip(*(pre(load_image(p.image), h, w) for p in pairs), strict=True)
    n = len(pairs)
    calib_idx = list(range(0, n, 2)) if args.calib == "even" else list(range(n))
    hold_idx = [i for i in range(n) if i not in calib_idx] or list(range(n))

    fp32 = qdq.prepare_fp32(bundle.artifact_path("fp32"), work / "fp32.onnx")
    ref_file = work / f"fp32-f{args.frames}.pkl"
    if ref_file.exists():
        ref = pickle.loads(ref_file.read_bytes())
    else:
        runner = OrtRunner(fp32, bundle.states, bundle.downsample_ratio, threads=args.threads)
        t = time.perf_counter()
        ref = run_protocol(runner, srcs, geos, args.frames)
        print(f"fp32 reference: {time.perf_counter() - t:.1f} s", file=sys.stderr)
        ref_file.write_bytes(pickle.dumps(ref))
    s_ref = scores(ref, mattes)

    # Calibration feeds: the scored frame after frames-1 FP32 warm-up frames.
    runner = OrtRunner(fp32, bundle.states, bundle.downsample_ratio, threads=args.threads)
    feeds = []
    for i in calib_idx:
        runner.reset()
        for _ in range(args.frames - 1):
            runner.run(srcs[i])
        feeds.append({k: np.array(v) for k, v in runner.model_inputs(srcs[i]).items()})

    opts: dict = {}
    for o in args.opt:
        m, kv = o.split(":", 1)
        k, v = kv.split("=", 1)
        opts.setdefault(m, {})[k] = float(v) if "." in v else int(v)

    import onnx

    model = onnx.load(str(fp32))
    rows = []

    def score_row(name, method, qpath, extra):
        qr = OrtRunner(qpath, bundle.states, bundle.downsample_ratio, threads=args.threads)
        t = time.perf_counter()
        alphas = run_protocol(qr, srcs, geos, args.frames)
        s = scores(alphas, mattes, ref)
        row = {"recipe": name, "method": method, **extra, "eval_s": round(time.perf_counter() - t, 1)}
        for part, idx in (("hold", hold_idx), ("all", list(range(n)))):
            m_ref = s_ref["mse"][idx].mean()
            row[f"{part}_ratio"] = round(float(s["mse"][idx].mean() / m_ref), 4)
            row[f"{part}_miou_drop"] = round(float(s_ref["miou"][idx].mean() - s["miou"][idx].mean()), 4)
            row[f"{part}_diff"] = round(float(s["diff"][idx].mean()), 5)
        worst = int(np.argmax(s["mse"] - s_ref["mse"]))
        row["worst"] = f"{pairs[worst].name} {s_ref['mse'][worst]:.4f}->{s['mse'][worst]:.4f}"
        return row

    for path in args.eval_model:
        rows.append(score_row(Path(path).parent.name + "/" + Path(path).name, "-", path, {}))
        print(json.dumps(rows[-1]), flush=True)
    for method in args.methods.split(","):
        for rname in args.recipes.split(","):
            recipe = RECIPES[rname]
            if opts:
                recipe = replace(recipe, calibrator_options=opts)
            excl = excluded_nodes(model, recipe)
            tensors = qdq.quantized_tensors(fp32, recipe, excl)
            tag = f"{rname}-{method}-{args.calib}-c{args.chunk}-f{args.frames}" + "".join(
                f"-{m}{k}{v}" for m, d in opts.items() for k, v in d.items())
            rfile = work / f"ranges-{tag}.json"
            if rfile.exists():
                ranges = json.loads(rfile.read_text())
                t_cal, n_mse = float("nan"), -1
            else:
                t = time.perf_counter()
                ranges, src = collect.collect_ranges(fp32, method, tensors, recipe, ListReader(feeds, args.chunk))
                n_mse = sum(v == "mse" for v in src.values())
                t_cal = time.perf_counter() - t
                rfile.write_text(json.dumps(ranges))
            qpath = work / f"q-{tag}.onnx"
            qdq.write_qdq(fp32, qpath, ranges, method, recipe, excl)
            row = score_row(rname, method, qpath, {
                "tensors": len(tensors), "excluded": len(excl), "guarded": n_mse,
                "calib_s": round(t_cal, 1)})
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"FP32: MSE all {s_ref['mse'].mean():.5f} hold {s_ref['mse'][hold_idx].mean():.5f}; "
          f"mIoU all {s_ref['miou'].mean():.4f} hold {s_ref['miou'][hold_idx].mean():.4f}")
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
