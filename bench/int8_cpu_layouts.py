"""How fast can INT8 get on onnxruntime's CPU kernels? Q/DQ layouts timed against FP32 in one run.

The shipped CPU artifact (``model.int8-cpu.onnx``) keeps the fidelity recipe's nodes float. This
script writes the same layout with more or fewer nodes in INT8, fidelity ignored, to bound what
any layout could gain on this machine:

- ``shipped``: the bundle's ``model.int8-cpu.onnx``;
- ``shipped+tiny-float``: also float the Convs with a 1x1 output (squeeze-excite, pooled branches);
- ``shipped-full-int8``: the Convs writing full-size tensors INT8 again (the layout before the
  ``full-size`` rule of ``quantize/recipe.py``);
- ``every-conv``: every Conv INT8 (nothing float);
- ``every-conv+eltwise``: every Conv, Add, Mul, Concat, Slice, Split, pooling and Sigmoid INT8.

Ranges: min/max of every tensor over one generated frame (speed does not depend on the values,
but onnxruntime folds a Relu into a QLinearConv only when the output range starts at 0, so the
ranges must have real signs). Times: interleaved calls (``benchmark.pipeline.measure_together``),
p50 and the ratio to FP32 from the same run; the op counts come from onnxruntime's optimised graph.

    python bench/int8_cpu_layouts.py --bundle B --threads 2 --iters 30

Results: bench/NOTES-int8-cpu.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matting_deploy.benchmark.pipeline import measure_together  # noqa: E402
from matting_deploy.bundle import CPU_INT8, Bundle  # noqa: E402
from matting_deploy.quantize import cpu_target, qdq  # noqa: E402
from matting_deploy.quantize.recipe import Recipe, excluded_nodes  # noqa: E402
from matting_deploy.runtimes.onnxruntime_runner import OrtRunner, session_options  # noqa: E402

ELTWISE = ("Conv", "Add", "Mul", "Concat", "Slice", "Split", "AveragePool", "GlobalAveragePool", "Sigmoid")


def frame_ranges(model_path: Path, runner: OrtRunner, src: np.ndarray) -> dict[str, tuple[float, float]]:
    """{tensor: (min, max)} of every activation over one run of ``src`` (zero state)."""
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    seen = {o.name for o in model.graph.output}
    for node in model.graph.node:
        model.graph.output.extend(onnx.ValueInfoProto(name=o) for o in node.output if o and o not in seen)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
            for i in sess.get_inputs()}
    feed.update({k: v for k, v in runner.feed(src).items() if k in feed})
    values = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed), strict=True)) | feed
    return {n: (float(v.min()), float(v.max())) for n, v in values.items()
            if np.issubdtype(v.dtype, np.floating) and v.size}


def layouts(bundle: Bundle, prepared: Path, work: Path, src: np.ndarray) -> dict[str, Path]:
    """The layouts' model files (see the module docstring)."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(prepared)))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    tiny = {n.name for n in convs if shapes.get(n.output[0], [0])[2:] == [1, 1]}
    calib = json.loads(bundle.file_path("calib.json").read_text())
    shipped_float = set(calib["cpu"]["float_nodes"])
    at_full = excluded_nodes(model, Recipe("full", exclude_rules=("full-size",)))
    # the CPU float set before the full-size rule: the TensorRT recipe's and the image halves
    before = set(calib["float_nodes"]) | excluded_nodes(model, Recipe("pixels", exclude_rules=("pixels",)))
    ranges = frame_ranges(prepared, OrtRunner.from_bundle(bundle, "fp32"), src)
    plan = {"shipped+tiny-float": (shipped_float | tiny, ("Conv",)),
            "shipped-full-int8": (shipped_float - (at_full - before), ("Conv",)),
            "every-conv": (set(), ("Conv",)), "every-conv+eltwise": (set(), ELTWISE)}
    out = {"shipped": bundle.artifact_path(CPU_INT8)}
    for name, (float_nodes, ops) in plan.items():
        out[name] = cpu_target.write_cpu_int8(prepared, work / f"{name}.onnx", ranges, float_nodes, ops)
    return out


def op_counts(path: Path, work: Path, threads: int) -> Counter:
    import onnxruntime as ort

    opts = session_options(threads, qdq_fusions=True)
    opts.optimized_model_filepath = str(work / f"{path.stem}.optimised.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True, help="a bundle calibrated with --target cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args(argv)
    bundle = Bundle.open(args.bundle)
    if CPU_INT8 not in bundle.artifacts:
        print(f"error: {args.bundle}: no {CPU_INT8} artifact (calibrate --int8 --target cpu first)",
              file=sys.stderr)
        return 2
    src = np.random.default_rng(0).random((1, 3, *bundle.input_hw), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="md-layouts-") as tmp:
        work = Path(tmp)
        prepared = qdq.prepare_fp32(bundle.artifact_path("fp32"), work / "fp32.prepared.onnx")
        files = {"fp32": bundle.artifact_path("fp32"), **layouts(bundle, prepared, work, src)}
        runners = [OrtRunner(path, bundle.states, bundle.downsample_ratio, threads=args.threads,
                             qdq_fusions=name != "fp32") for name, path in files.items()]
        rows = measure_together([(r, None) for r in runners], src, args.iters, args.warmup)
        counts = {name: op_counts(Path(path), work, args.threads) for name, path in files.items()}
    fp32 = rows[0]["p50_ms"]
    print(f"{bundle.model} {'x'.join(map(str, src.shape))}, {args.threads} threads, "
          f"{args.iters} interleaved calls after {args.warmup} warm-up")
    print(f"{'layout':<20} {'QLinearConv':>11} {'float Conv':>10} {'Q + DQ':>6} {'Transpose':>9} "
          f"{'p50 ms':>7} {'vs FP32':>8}")
    for (name, c), row in zip(counts.items(), rows, strict=True):
        p50 = row["p50_ms"]
        print(f"{name:<20} {c['QLinearConv']:>11} {c['Conv']:>10} "
              f"{c['QuantizeLinear'] + c['DequantizeLinear']:>6} {c['Transpose']:>9} {p50:>7.1f} {fp32 / p50:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
