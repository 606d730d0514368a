"""Statistics collection: run calibration images through onnxruntime's calibrators, chunked.

Only the tensors the chosen recipe will actually quantize are calibrated (that is most of the
speed). What each ``--method`` gives (``quantize.METHOD_HELP``):

- ``entropy``: 2048-bin order-free histograms (:class:`_FastCollector`), KL thresholds (the
  vectorised search of :mod:`.ranges`), then the recipe's range guard: with the default recipe
  (guard 1) every tensor ends with the least-error symmetric INT8 range on its histogram, KL's
  range only where it already is that range;
- ``percentile``: the same histograms; the range is the 99.99th percentile of ``|x|`` (no guard);
- ``minmax``: the observed min and max (no histogram, no guard).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from functools import partial
from pathlib import Path

import numpy as np
from onnxruntime.quantization.calibrate import (
    EntropyCalibrater,
    HistogramCollector,
    MinMaxCalibrater,
    PercentileCalibrater,
)

from ..errors import MattingDeployError
from ..fileio import temp_dir
from .qdq import METHODS
from .ranges import guard_ranges, kl_threshold, percentile_range
from .recipe import Recipe

# 2048 histogram bins (as TensorRT's entropy calibrator) so KL can clip outliers; onnxruntime's
# default of 128 leaves it almost no choice but the full min/max range.
DEFAULT_CALIBRATOR_OPTIONS = {"entropy": {"num_bins": 2048, "num_quantized_bins": 128},
                              "percentile": {"num_bins": 2048, "percentile": 99.99}}
GUARDED = ("entropy",)  # methods the recipe's range guard applies to


def pow2_range(amax: float) -> float:
    """The smallest power of two strictly above ``amax`` (a histogram range that nests)."""
    amax = float(amax)
    if not amax > 0:
        return 2.0**-24
    r = 2.0 ** np.ceil(np.log2(amax))
    return float(r * 2 if r <= amax else r)


def widen(hist: np.ndarray, doublings: int) -> np.ndarray:
    """``hist`` over [-R, R] re-binned exactly onto [-R * 2**doublings, R * 2**doublings]: the same
    bin count, each doubling summing bin pairs and padding a quarter of the bins each side."""
    n = hist.size
    for _ in range(doublings):
        hist = np.concatenate([np.zeros(n // 4, hist.dtype), hist.reshape(-1, 2).sum(axis=1),
                               np.zeros(n // 4, hist.dtype)])
    return hist


class _FastCollector(HistogramCollector):
    """onnxruntime's histogram collector made independent of the order of the images.

    onnxruntime sizes each tensor's histogram from the first chunk and appends bins of that width
    when a later chunk goes further, so the bins (and the ranges found on them) depend on which
    images come first, i.e. on ``--seed`` even when every image is used. Here the range is always a
    power of two above the largest value seen, and a histogram is widened by exactly merging bin
    pairs, so the final histogram is the same for any order or chunking.
    """

    def collect(self, name_to_arr):
        # onnxruntime's percentile path collects |x| with first-chunk bins (order-dependent); both
        # methods use the same signed, order-free histogram here.
        return self.collect_value(name_to_arr)

    def collect_value(self, name_to_arr):
        if self.num_bins % 4:
            raise MattingDeployError(f"histogram bins must be a multiple of 4, got {self.num_bins}")
        for tensor, arr in name_to_arr.items():
            if isinstance(arr, list) and arr:
                data = np.concatenate([np.asarray(a, np.float32).ravel() for a in arr])
            else:
                data = np.asarray(arr, np.float32).ravel()
            lo = float(np.nanmin(data)) if data.size else 0.0
            hi = float(np.nanmax(data)) if data.size else 0.0
            r = pow2_range(max(abs(lo), abs(hi)))
            old = self.histogram_dict.get(tensor)
            if old is not None:
                r = max(r, float(old[4]))
                lo, hi = min(lo, float(old[2])), max(hi, float(old[3]))
            hist = np.histogram(data, self.num_bins, range=(-r, r))[0]
            if old is not None:
                hist += widen(old[0], int(round(np.log2(r / float(old[4])))))
            edges = np.linspace(-r, r, self.num_bins + 1, dtype=np.float32)
            self.histogram_dict[tensor] = (hist, edges, np.float32(lo), np.float32(hi), np.float32(r))

    def compute_percentile(self):
        """Symmetric ``percentile`` thresholds of ``|x|`` (onnxruntime's result layout)."""
        out = {}
        for t, h in self.histogram_dict.items():
            lo, hi = percentile_range(h, self.percentile)
            out[t] = (np.array(lo, np.float32), np.array(hi, np.float32), *h[:2])
        return out

    def get_entropy_threshold(self, histogram, num_quantized_bins):
        return kl_threshold(histogram, num_quantized_bins)

    def compute_entropy(self):
        """KL thresholds of every tensor (onnxruntime's result layout), the tensors spread over
        the CPU cores: the search is a fixed cost per tensor (about 0.1 s, 141 tensors on RVM)."""
        items = list(self.histogram_dict.items())
        job = partial(kl_threshold, num_quantized_bins=self.num_quantized_bins)
        workers = min(len(items), os.cpu_count() or 1, 8)
        if workers > 1 and "fork" in mp.get_all_start_methods():
            with mp.get_context("fork").Pool(workers, _worker_signals) as pool:  # same code per tensor
                found = pool.map(job, [h for _, h in items], chunksize=1)
        else:
            found = [job(h) for _, h in items]
        return {t: (*th, *h[:2]) for (t, h), th in zip(items, found, strict=True)}


def _worker_signals() -> None:
    """Pool workers leave signals to the parent: Ctrl-C (sent to the whole process group) is
    ignored, and the SIGTERM the pool ends them with just ends them (the forked parent's handler
    would print a traceback from each)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
        cal.collector = _FastCollector("percentile", True, cal.num_bins, 128, cal.percentile, "same")
    elif method == "minmax":
        cal = _MinMax.__new__(_MinMax)
        cal.only = set(tensors)
        MinMaxCalibrater.__init__(cal, fp32, None, aug, symmetric=True, **opts)
    else:
        raise MattingDeployError(f"unknown calibration method '{method}' ({', '.join(METHODS)})")
    cal.augment_graph()
    cal.create_inference_session()
    return cal


def collect_ranges(
    fp32: Path, method: str, tensors: set[str], recipe: Recipe, feeder, quiet: bool = True
) -> tuple[dict[str, tuple[float, float]], dict[str, str]]:
    """Run the calibration images through the calibrator in chunks.

    Returns {tensor: (min, max)} (after the recipe's range guard for the :data:`GUARDED` methods),
    and {tensor: 'method'|'mse'}.
    """
    with temp_dir("md-cal-") as tmp:
        cal = make_calibrator(fp32, method, tensors, recipe, tmp)
        with _silenced(quiet):
            while not feeder.done:
                feeder.next_chunk()
                try:
                    cal.collect_data(feeder)
                except ValueError as e:  # "No data is collected." at an all-unreadable tail
                    if "No data" not in str(e):
                        raise
            if not feeder.used:
                raise MattingDeployError(f"{feeder.source.root}: no calibration image could be read")
            data = cal.compute_data()
        hists = cal.collector.histogram_dict if getattr(cal, "collector", None) else {}
    ranges = {name: (float(np.min(td.range_value[0])), float(np.max(td.range_value[1])))
              for name, td in data.items()}
    return guard_ranges(ranges, hists, recipe.range_guard if method in GUARDED else None)


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

