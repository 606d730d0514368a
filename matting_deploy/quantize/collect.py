"""INT8 calibration and Q/DQ writing with onnxruntime.quantization.

Everything is TensorRT-compatible: QuantFormat.QDQ, symmetric INT8 activations and weights
(zero point 0, scale = amax / 127), per-channel weights, opset >= 13. Only the tensors the
chosen recipe will actually quantize are calibrated (that is most of the speed).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    TensorData,
    TensorsData,
    quantize_static,
    save_tensors_data,
)
from onnxruntime.quantization.calibrate import (
    EntropyCalibrater,
    HistogramCollector,
    MinMaxCalibrater,
    PercentileCalibrater,
    entropy,
)
from onnxruntime.quantization.quant_utils import smooth_distribution

from ..errors import MattingDeployError, first_line
from .recipe import Recipe

METHODS = {
    "entropy": CalibrationMethod.Entropy,
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
}
MIN_OPSET = 13
# 2048 histogram bins (as TensorRT's entropy calibrator) so KL can clip outliers; onnxruntime's
# default of 128 leaves it almost no choice but the full min/max range.
DEFAULT_CALIBRATOR_OPTIONS = {"entropy": {"num_bins": 2048, "num_quantized_bins": 128},
                              "percentile": {"num_bins": 2048, "percentile": 99.99}}


def prepare_fp32(path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Copy of the FP32 model at opset >= 13 (per-channel Q/DQ is invalid below), with shapes."""
    model = onnx.load(str(path))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, MIN_OPSET)
        except Exception as e:  # the converter raises several types
            raise MattingDeployError(f"{path}: cannot upgrade opset {opset} -> 13 ({first_line(e)})") from None
    model = onnx.shape_inference.infer_shapes(model)
    onnx.save(model, str(out))
    return Path(out)


def _extra_options(recipe: Recipe) -> dict:
    return {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "OpTypesToExcludeOutputQuantization": list(recipe.no_output_qdq),
        "QDQKeepRemovableActivations": True,
    }


def _quantize(fp32: Path, out: Path, ranges: TensorsData, recipe: Recipe, nodes_to_exclude) -> None:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime.quantization warns about pre-processing on root
    try:
        _quantize_static(fp32, out, ranges, recipe, nodes_to_exclude)
    finally:
        root.setLevel(level)


def _quantize_static(fp32: Path, out: Path, ranges: TensorsData, recipe: Recipe,
                     nodes_to_exclude) -> None:
    with tempfile.TemporaryDirectory(prefix="md-q-") as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(ranges, cache)
        quantize_static(
            str(fp32),
            str(out),
            calibration_data_reader=None,
            calibration_cache_path=cache,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(recipe.op_types),
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=sorted(nodes_to_exclude),
            calibrate_method=ranges.calibration_method,
            extra_options=_extra_options(recipe),
        )


def quantized_tensors(fp32: Path, recipe: Recipe, nodes_to_exclude) -> set[str]:
    """Activation tensors the recipe gives Q/DQ (found by a dry run with placeholder ranges)."""
    model = onnx.load(str(fp32))
    inits = {i.name for i in model.graph.initializer}
    names = {i.name for i in model.graph.input} | {o for n in model.graph.node for o in n.output}
    fake = TensorsData(
        CalibrationMethod.MinMax,
        {n: TensorData(lowest=np.float32(-1.0), highest=np.float32(1.0)) for n in names - inits},
    )
    with tempfile.TemporaryDirectory(prefix="md-dry-") as tmp:
        out = Path(tmp) / "dry.onnx"
        _quantize(fp32, out, fake, recipe, nodes_to_exclude)
        q = onnx.load(str(out), load_external_data=False)
    # Each quantized tensor X gets an initializer "X_scale" (graph outputs are renamed, scales not).
    scales = {i.name[: -len("_scale")] for i in q.graph.initializer if i.name.endswith("_scale")}
    return (scales & names) - inits


def kl_threshold(histogram, num_quantized_bins: int):
    """onnxruntime's ``HistogramCollector.get_entropy_threshold``, with its per-bin Python loops
    replaced by array operations (same candidates, same arithmetic, same result; about 100x
    faster, which is what makes 2048-bin KL calibration affordable)."""
    hist, edges = histogram[0], histogram[1]
    num_bins = hist.size
    zero = num_bins // 2
    half = num_quantized_bins // 2
    csum = np.concatenate([[0], np.cumsum(hist)])
    best, best_div = None, np.inf
    for i in range(half, zero + 1):
        start, end = zero - i, min(zero + i + 1, num_bins)
        sliced = hist[start:end]
        p = sliced.copy()
        p[0] += csum[start]
        p[-1] += csum[-1] - csum[end]
        nonzeros = (p != 0).astype(np.int64)
        merged = sliced.size // num_quantized_bins
        body = num_quantized_bins * merged
        qbins = sliced[:body].reshape(num_quantized_bins, merged).sum(axis=1)
        qbins[-1] += sliced[body:].sum()
        norm = nonzeros[:body].reshape(num_quantized_bins, merged).sum(axis=1)
        q = np.zeros(p.size, dtype=np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            fill = np.where(norm != 0, qbins / np.maximum(norm, 1), 0.0)
        # onnxruntime writes into an int64 array (truncation), and only where norm != 0
        q[:body] = np.repeat(fill, merged).astype(np.int64)
        ps, qs = smooth_distribution(p), smooth_distribution(q)
        div = np.inf if ps is None or qs is None else float(entropy(ps, qs))
        if best is None or div < best_div:
            best, best_div = (edges[start], edges[end]), div
    lo, hi = best
    if lo < histogram[2]:
        lo = histogram[2]
    if hi > histogram[3]:
        hi = histogram[3]
    return lo, hi


class _FastCollector(HistogramCollector):
    def get_entropy_threshold(self, histogram, num_quantized_bins):
        return kl_threshold(histogram, num_quantized_bins)


class _Only:
    """Mixin: calibrate exactly ``self.only`` (the tensors that will be quantized)."""

    only: set[str] = set()

    def select_tensors_to_calibrate(self, model):
        tensors, value_infos = super().select_tensors_to_calibrate(model)
        return tensors & self.only, value_infos

    def create_inference_session(self):
        # Calibration outputs are graph outputs, so graph optimisations cannot remove them; they
        # make the (many) calibration runs faster than onnxruntime's default of none.
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.log_severity_level = 3
        self.infer_session = onnxruntime.InferenceSession(
            self.augmented_model_path, sess_options=opts, providers=self.execution_providers
        )


class _MinMax(_Only, MinMaxCalibrater):
    pass


class _Entropy(_Only, EntropyCalibrater):
    pass


class _Percentile(_Only, PercentileCalibrater):
    pass


def make_calibrator(fp32: Path, method: str, tensors: set[str], recipe: Recipe, workdir: Path):
    """An onnxruntime calibrator for ``method`` restricted to ``tensors``."""
    aug = str(workdir / "augmented.onnx")
    opts = {**DEFAULT_CALIBRATOR_OPTIONS.get(method, {}), **recipe.calibrator_options.get(method, {})}
    if method == "entropy":
        cal = _Entropy.__new__(_Entropy)
        cal.only = set(tensors)
        EntropyCalibrater.__init__(cal, fp32, None, aug, symmetric=True, **opts)
        cal.collector = _FastCollector("entropy", True, cal.num_bins, cal.num_quantized_bins,
                                       None, "same")
    elif method == "percentile":
        cal = _Percentile.__new__(_Percentile)
        cal.only = set(tensors)
        PercentileCalibrater.__init__(cal, fp32, None, aug, symmetric=True, **opts)
    elif method == "minmax":
        cal = _MinMax.__new__(_MinMax)
        cal.only = set(tensors)
        MinMaxCalibrater.__init__(cal, fp32, None, aug, symmetric=True, **opts)
    else:
        raise MattingDeployError(f"unknown calibration method '{method}' ({', '.join(METHODS)})")
    cal.augment_graph()
    cal.create_inference_session()
    return cal


def quant_error(hist: np.ndarray, edges: np.ndarray, amax: np.ndarray | float) -> np.ndarray:
    """Expected squared error of symmetric INT8 (scale amax/127) on a histogram, per amax.

    Clipped values cost their distance to the clip level; values inside cost the rounding of
    their bin centre plus the uniform rounding noise scale**2 / 12.
    """
    h = hist.astype(np.float64)
    c = (edges[:-1].astype(np.float64) + edges[1:]) / 2
    t = np.atleast_1d(np.asarray(amax, np.float64))[:, None]
    s = np.maximum(t, 1e-12) / 127.0
    q = np.clip(np.round(c / s), -127, 127) * s
    inside = (np.abs(c) <= t) * h
    return (h * (q - c) ** 2).sum(axis=1) + inside.sum(axis=1) * s[:, 0] ** 2 / 12.0


def mse_amax(hist: np.ndarray, edges: np.ndarray, candidates: int = 256) -> tuple[float, float]:
    """(best amax, its error): the symmetric range with the least quantization error."""
    top = float(np.max(np.abs(edges)))
    if top <= 0:
        return 0.0, 0.0
    grid = np.linspace(top / candidates, top, candidates)
    err = quant_error(hist, edges, grid)
    i = int(np.argmin(err))
    return float(grid[i]), float(err[i])


def guard_ranges(
    ranges: dict[str, tuple[float, float]], histograms: dict, guard: float | None
) -> tuple[dict[str, tuple[float, float]], dict[str, str]]:
    """Keep each calibrated range unless its quantization error on the tensor's own histogram is
    more than ``guard`` x the least achievable; then use the least-error range instead.

    Returns the ranges and, per tensor, which rule set it ('method' or 'mse').
    """
    out, source = {}, {}
    for name, (lo, hi) in ranges.items():
        out[name], source[name] = (lo, hi), "method"
        if guard is None or name not in histograms:
            continue
        hist, edges = histograms[name][0], histograms[name][1]
        amax, best = mse_amax(hist, edges)
        err = float(quant_error(hist, edges, max(abs(lo), abs(hi)))[0])
        if amax > 0 and err > guard * best:
            out[name], source[name] = (-amax, amax), "mse"
    return out, source


def collect_ranges(
    fp32: Path, method: str, tensors: set[str], recipe: Recipe, feeder, quiet: bool = True
) -> tuple[dict[str, tuple[float, float]], dict[str, str]]:
    """Run the calibration images through the calibrator in chunks.

    Returns {tensor: (min, max)} after the recipe's range guard, and {tensor: 'method'|'mse'}.
    """
    with tempfile.TemporaryDirectory(prefix="md-cal-") as tmp:
        cal = make_calibrator(fp32, method, tensors, recipe, Path(tmp))
        with _silenced(quiet):
            while not feeder.done:
                feeder.next_chunk()
                try:
                    cal.collect_data(feeder)
                except ValueError as e:  # "No data is collected." at an all-unreadable tail
                    if "No data" not in str(e):
                        raise
            if not feeder.used:
                raise MattingDeployError("no calibration image could be read")
            data = cal.compute_data()
        hists = cal.collector.histogram_dict if getattr(cal, "collector", None) else {}
    ranges = {name: (float(np.min(td.range_value[0])), float(np.max(td.range_value[1])))
              for name, td in data.items()}
    return guard_ranges(ranges, hists, recipe.range_guard)


def ranges_to_tensors_data(ranges: dict[str, tuple[float, float]], method: str) -> TensorsData:
    return TensorsData(
        METHODS[method],
        {k: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for k, (lo, hi) in ranges.items()},
    )


def write_qdq(
    fp32: Path,
    out: Path,
    ranges: dict[str, tuple[float, float]],
    method: str,
    recipe: Recipe,
    nodes_to_exclude,
) -> None:
    """Write the Q/DQ model for ``recipe`` from calibrated ``ranges``."""
    _quantize(fp32, out, ranges_to_tensors_data(ranges, method), recipe, nodes_to_exclude)


def scale_of(lo: float, hi: float) -> float:
    """Symmetric INT8 scale: amax / 127 (what both the Q/DQ model and TensorRT use)."""
    amax = max(abs(lo), abs(hi))
    return amax / 127.0 if amax > 0 else 1.0 / 127.0


class _silenced:
    """Hide onnxruntime.quantization's progress prints (it prints to stdout)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __enter__(self):
        if self.quiet:
            import contextlib
            import io

            self._ctx = contextlib.redirect_stdout(io.StringIO())
            self._ctx.__enter__()

    def __exit__(self, *exc):
        if self.quiet:
            self._ctx.__exit__(*exc)

