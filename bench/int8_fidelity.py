"""INT8 fidelity targets (issue 8): the shipped ``calibrate --int8``, scored as TensorRT runs it.

For each calibration seed: ``calibrate --int8`` (defaults) on a copy of an exported bundle, then
validate's scoring protocol (:mod:`matting_deploy.validate.scoring`: stretch to the bundle size,
4 frames from zero state, last alpha at the matte's size) on the data set, against ground truth and
against FP32 scored in the same run:

- ``int8 (cpu)``: ``model.int8.onnx`` as written (FP16 outside Q/DQ: strongly typed TensorRT
  >= 10.1 and 11);
- ``int8 implicit-emulated (cpu)``: implicit INT8 (TensorRT 8.5/8.6/10.0) from model.onnx +
  calib.cache, emulated (:mod:`matting_deploy.check.emulate`).

Targets: MSE <= 1.05x FP32 (still images, and clip frames when the set has clips), mIoU drop
<= 0.002, >= 90% of conv MACs INT8 (validate's MAC share,
:func:`matting_deploy.validate.emulated.mac_shares`). The onnxruntime version is the one imported:
run again with another onnxruntime first on PYTHONPATH for the version spread. Seeds whose
calib.cache equals an earlier seed's are not scored twice (the row says so).

``--peers`` adds two other quantizers run the same way (the same images through the same feeder:
FP32 warm-up frames, recurrent state included; scored the same way): onnxruntime's
``quantize_static`` with its defaults, and NVIDIA ModelOpt's ONNX PTQ (``modelopt.onnx.quantization
.quantize``, INT8 defaults, calibration on CPU) when ``modelopt`` is importable (else the row says so).

    python bench/int8_fidelity.py --bundle B --data ../shared/data/composite-dev [--seeds 0 1 2] [--peers]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matting_deploy.bundle import TRT_CACHE_FILE, Bundle  # noqa: E402
from matting_deploy.data.pairs import load_dataset  # noqa: E402
from matting_deploy.quantize.pipeline import run_calibration  # noqa: E402
from matting_deploy.validate.emulated import EMULATED, mac_shares  # noqa: E402
from matting_deploy.validate.jobs import Job  # noqa: E402
from matting_deploy.validate.scoring import ArtifactRun, Scorer, run_job  # noqa: E402

MAX_RATIO, MAX_DROP, MIN_SHARE = 1.05, 0.002, 0.90


def calibrated_copy(bundle_dir: Path, work: Path, data: Path, seed: int) -> tuple[Bundle, float]:
    """A copy of the bundle calibrated with ``seed`` (no reuse of earlier ranges); its seconds."""
    dst = work / f"seed{seed}"
    shutil.copytree(bundle_dir, dst, ignore=shutil.ignore_patterns(".calib-cache", "report"))
    t = time.perf_counter()
    run_calibration(dst, data, seed=seed, force=True, echo=lambda *_: None)
    return Bundle.open(dst), time.perf_counter() - t


def score(bundle: Bundle, job: Job, data, scorer: Scorer):
    """(mean MSE, mean mIoU, model-resolution alphas) of ``job`` on ``data``'s still images, and
    the clips' mean frame MSE (None without clips)."""
    return _summary(run_job(bundle, job, data, scorer, progress=False))


def _summary(run: ArtifactRun):
    means, clips = run.image_means(), run.clip_means()
    return means["mse"], means["miou"], [s.pha for s in run.images], clips and clips["mse"]


def mean_abs_diff(pha, ref) -> float:
    """Mean over images of mean |alpha - FP32 alpha|."""
    return float(np.mean([np.abs(a - r).mean() for a, r in zip(pha, ref, strict=True)]))


def score_file(bundle: Bundle, path: Path, data, scorer: Scorer):
    """:func:`score` for a model file outside the bundle (a peer's), on validate's CPU workers."""
    from matting_deploy.runtimes.onnxruntime_runner import OrtRunner
    from matting_deploy.validate.parallel import cpu_cores, split
    from matting_deploy.validate.scoring import score_parallel

    images, clips = score_parallel(
        lambda n: OrtRunner(path, bundle.states, bundle.downsample_ratio, threads=n), path, data,
        scorer, *split(cpu_cores()))
    return _summary(ArtifactRun(Job("peer", "cpu", path), images, clips, 0.0))


def _feeder(bundle: Bundle, data_dir: Path):
    """Every image of ``data_dir`` as calibrate feeds it (FP32 warm-up frames, states included)."""
    from matting_deploy.calib.feeder import CalibrationFeeder
    from matting_deploy.data.sources import find_source, readable_only
    from matting_deploy.runtimes.onnxruntime_runner import OrtRunner

    source = readable_only(find_source(data_dir))
    runner = OrtRunner(bundle.verify("fp32"), bundle.states, bundle.downsample_ratio)
    return CalibrationFeeder(runner, source, source.items, bundle.model, bundle.input_hw)


def _quantize_static(fp32: Path, out: Path, feeder) -> None:
    from onnxruntime.quantization import quantize_static

    quantize_static(str(fp32), str(out), feeder)


def _modelopt(fp32: Path, out: Path, feeder) -> None:
    from modelopt.onnx.quantization import quantize

    quantize(str(fp32), quantize_mode="int8", calibration_data_reader=feeder, calibration_eps=["cpu"],
             output_path=str(out))


PEERS = {"onnxruntime quantize_static (defaults)": _quantize_static,
         "ModelOpt ONNX PTQ int8 (defaults)": _modelopt}


def peer_row(name: str, make, bundle: Bundle, data_dir: Path, work: Path, data, scorer: Scorer,
             ref) -> dict:
    """Quantize the bundle's FP32 model with a peer tool and score it like the int8 rows."""
    from matting_deploy.quantize.qdq import prepare_fp32

    ref_mse, ref_miou, ref_pha, ref_clip = ref
    fp32 = prepare_fp32(bundle.verify("fp32"), work / "peer-fp32.onnx")
    out = work / "peer.onnx"
    t = time.perf_counter()
    try:
        make(fp32, out, _feeder(bundle, data_dir))
    except ImportError as e:
        return dict(artifact=name, seed="-", mse=float("nan"), ratio=float("nan"), drop=float("nan"),
                    d32=float("nan"), share="-", note=f"not run: {e}")
    secs = time.perf_counter() - t
    m, i, pha, clip = score_file(bundle, out, data, scorer)
    d = mean_abs_diff(pha, ref_pha)
    import onnx

    from matting_deploy.check import int8_mac_share

    share = int8_mac_share(onnx.load(str(out)))["share"]
    return dict(artifact=name, seed="-", mse=m, ratio=m / ref_mse, drop=ref_miou - i, d32=d,
                share=share, note=f"quantized in {secs:.0f} s", clip=clip and clip / ref_clip)


def main(argv=None) -> int:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True, help="exported bundle (FP32 [+FP16])")
    ap.add_argument("--data", type=Path, required=True, help="PPM-100-layout folder with mattes")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--peers", action="store_true", help="also quantize_static and ModelOpt defaults")
    args = ap.parse_args(argv)
    bundle = Bundle.open(args.bundle)
    data = load_dataset(args.data, args.limit)
    scorer = Scorer(bundle, frames=args.frames)
    print(f"onnxruntime {ort.__version__}, {len(data.images)} images, {args.frames} frames", flush=True)
    ref_mse, ref_miou, ref, ref_clip = score(bundle, Job("fp32", "cpu", bundle.verify("fp32")), data, scorer)
    rows = [dict(artifact="fp32 (cpu)", seed="-", mse=ref_mse, ratio=1.0, drop=0.0, d32=0.0, share="-",
                 clip=ref_clip and 1.0)]
    seen: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="md-fid-") as work:
        for seed in args.seeds:
            cal, secs = calibrated_copy(args.bundle, Path(work), args.data, seed)
            cache = (cal.root / TRT_CACHE_FILE).read_text()
            if cache in seen:
                rows += [{**r, "seed": seed, "note": f"calib.cache identical to seed {seen[cache]}'s"}
                         for r in rows if r["seed"] == seen[cache]]
                continue
            seen[cache] = seed
            jobs = [Job("int8", "cpu", cal.verify("int8")), Job(EMULATED, "cpu", cal.root / TRT_CACHE_FILE)]
            shares = mac_shares(cal, jobs)
            for job in jobs:
                m, i, pha, clip = score(cal, job, data, scorer)
                d = mean_abs_diff(pha, ref)
                rows.append(dict(artifact=job.label, seed=seed, mse=m, ratio=m / ref_mse, drop=ref_miou - i,
                                 d32=d, share=shares[job.label]["share"], note=f"calibrated in {secs:.0f} s",
                                 clip=clip and clip / ref_clip))
                print(rows[-1], flush=True)
        if args.peers:
            for name, make in PEERS.items():
                rows.append(peer_row(name, make, bundle, args.data, Path(work), data, scorer,
                                     (ref_mse, ref_miou, ref, ref_clip)))
                print(rows[-1], flush=True)
    print(f"\nonnxruntime {ort.__version__}; targets: MSE <= {MAX_RATIO}x FP32, mIoU drop <= "
          f"{MAX_DROP}, INT8 MAC share >= {MIN_SHARE:.0%}\n")
    print("| artifact | seed | MSE | MSE / FP32 | mIoU drop | mean abs diff to FP32 | clip MSE / FP32 "
          "| INT8 MACs | targets | note |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ok, share, clip = "-", r["share"], r.get("clip")
        if not isinstance(share, str):
            met = r["ratio"] <= MAX_RATIO and r["drop"] <= MAX_DROP and share >= MIN_SHARE
            ok = "met" if met and (clip is None or clip <= MAX_RATIO) else "MISSED"
            share = f"{share:.1%}"
        print(f"| {r['artifact']} | {r['seed']} | {r['mse']:.6f} | {r['ratio']:.4f} | {r['drop']:+.4f} | "
              f"{r['d32']:.2e} | {'-' if clip is None else f'{clip:.4f}'} | {share} | {ok} | "
              f"{r.get('note', '')} |")
    if args.json:
        args.json.write_text(json.dumps({"onnxruntime": ort.__version__, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
