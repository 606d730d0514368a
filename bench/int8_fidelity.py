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

``--folds K`` (leave-people-out, what a user who calibrates on their own people gets on others):
the data folder's ``manifest.csv`` names each composite's person (:mod:`matting_deploy.calib.folds`);
K folds by person, each calibrated on the other persons' images and scored on its own; the errors
of every image are pooled over the folds (each image scored once, by a calibration that never saw
its person) and set against FP32 and FP16 on the same images. Calibration reads only ``image/``,
so a clip is never calibrated on; ``--clip-person P`` scores the clip in the fold of person P
(calibrated without P), else in every fold (averaged). ``--peers`` runs on the same folds, with
NNCF's ``nncf.quantize`` (defaults, ONNX backend) beside onnxruntime and ModelOpt.
``--work DIR`` keeps the fold bundles (and their ranges caches) between runs; calibrate options
(``--no-bias-correction`` ...) pass through. With ``openvino`` installed (or ``--openvino``), an
``int8 (openvino)`` row scores the same ``model.int8.onnx`` on OpenVINO's CPU the same way.

    python bench/int8_fidelity.py --bundle B --data ../shared/data/composite-dev [--seeds 0 1 2] [--peers]
    python bench/int8_fidelity.py --bundle B --data composite-dev --folds 5 --clip-person obama --num 16
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
from matting_deploy.optional import unavailable  # noqa: E402
from matting_deploy.quantize.pipeline import run_calibration  # noqa: E402
from matting_deploy.validate.emulated import EMULATED, mac_shares  # noqa: E402
from matting_deploy.validate.jobs import Job  # noqa: E402
from matting_deploy.validate.scoring import ArtifactRun, Scorer, run_job  # noqa: E402

MAX_RATIO, MAX_DROP, MIN_SHARE = 1.05, 0.002, 0.90


def calibrated_copy(bundle_dir: Path, work: Path, data: Path, seed: int, name: str | None = None,
                    **options) -> tuple[Bundle, float]:
    """A copy of the bundle calibrated with ``seed`` and calibrate ``options``; its seconds. A copy
    left in ``work`` by an earlier run keeps its ranges cache (statistics of identical runs reused)."""
    dst = work / (name or f"seed{seed}")
    if not dst.is_dir():
        shutil.copytree(bundle_dir, dst, ignore=shutil.ignore_patterns(".calib-cache", "report"))
    t = time.perf_counter()
    run_calibration(dst, data, seed=seed, force=True, echo=lambda *_: None, **options)
    return Bundle.open(dst), time.perf_counter() - t


def int8_jobs(cal: Bundle, openvino: bool) -> list[Job]:
    """Our INT8 rows for a calibrated bundle: the Q/DQ file as written, implicit INT8 emulated, and
    (``openvino``) the Q/DQ file on OpenVINO."""
    jobs = [Job("int8", "cpu", cal.verify("int8")), Job(EMULATED, "cpu", cal.root / TRT_CACHE_FILE)]
    return jobs + [Job("int8", "openvino", cal.verify("int8"))] if openvino else jobs


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


def _link_subset(data_dir: Path, stems, dst: Path, clips: bool) -> Path:
    """``dst`` as a PPM-layout folder of symlinks: ``stems``' images and mattes (and the clips, and
    manifest.csv, so that ``--max-drift`` can hold out persons)."""
    from matting_deploy.calib.folds import MANIFEST
    from matting_deploy.data.pairs import list_images

    if dst.is_dir():
        shutil.rmtree(dst)
    for sub in ("image", "matte"):
        (dst / sub).mkdir(parents=True)
        for p in list_images(data_dir / sub) if (data_dir / sub).is_dir() else []:
            if p.stem in stems:
                (dst / sub / p.name).symlink_to(p.resolve())
    if (data_dir / MANIFEST).is_file():
        (dst / MANIFEST).symlink_to((data_dir / MANIFEST).resolve())
    if clips:
        for c in load_dataset(data_dir).clips:
            (dst / c.name).symlink_to(c.root.resolve())
    return dst


def _pool(label: str, runs: list[ArtifactRun], ref: dict, ref_clip: float | None, share=None, note="") -> dict:
    """One row from per-fold runs: every image's metrics pooled, against FP32 on the same images."""
    images = [s for r in runs for s in r.images]
    frames = [f for r in runs for c in r.clips for f in c.frames]
    mse = float(np.mean([s.metrics["mse"] for s in images]))
    ref_mse = float(np.mean([ref[s.name].metrics["mse"] for s in images]))
    drop = float(np.mean([ref[s.name].metrics["miou"] - s.metrics["miou"] for s in images]))
    d32 = float(np.mean([np.abs(s.pha - ref[s.name].pha).mean() for s in images]))
    clip = float(np.mean([f.metrics["mse"] for f in frames])) / ref_clip if frames and ref_clip else None
    return dict(artifact=label, seed="-", mse=mse, ratio=mse / ref_mse,
                drop=drop, d32=d32, share=share if share is not None else "-", clip=clip, note=note)


def leave_people_out(args, bundle: Bundle, scorer: Scorer, work: Path, options: dict) -> list[dict]:
    """The ``--folds`` rows: FP32 and FP16 on every image, each INT8 row pooled over the folds."""
    import pickle

    from matting_deploy.calib.folds import person_folds

    whole = load_dataset(args.data)
    base = {}
    for art in ("fp32", "fp16"):
        if art in bundle.artifacts:
            path = bundle.verify(art)
            cached = work / f"base-{art}-{args.frames}-{bundle.manifest['files'][path.name]['sha256'][:12]}.pkl"
            if cached.is_file():
                base[art] = pickle.loads(cached.read_bytes())
                continue
            base[art] = run_job(bundle, Job(art, "cpu", path), whole, scorer, progress=False)
            cached.write_bytes(pickle.dumps(base[art]))
    ref = {s.name: s for s in base["fp32"].images}
    ref_clip = (base["fp32"].clip_means() or {}).get("mse")
    rows = [_pool(f"{a} (cpu)", [r], ref, ref_clip) for a, r in base.items()]
    for seed in args.seeds:
        folds = person_folds(args.data, args.folds, seed)
        runs: dict[str, list[ArtifactRun]] = {}
        shares: dict[str, list[float]] = {}
        secs = 0.0
        for fold in folds:
            clip_here = args.clip_person in fold.persons if args.clip_person else True
            calib = _link_subset(args.data, set(fold.calibration), work / f"f{seed}-{fold.index}-calib", False)
            data_dir = _link_subset(args.data, set(fold.scored), work / f"f{seed}-{fold.index}-score", clip_here)
            data = load_dataset(data_dir)
            print(f"seed {seed} fold {fold.index}: scores {', '.join(fold.persons)} ({len(fold.scored)} images"
                  f"{', the clip' if data.clips else ''}); calibrates on {len(fold.calibration)}", flush=True)
            cal, t = calibrated_copy(args.bundle, work, calib, seed, f"B-{seed}-{fold.index}", num=args.num,
                                     **options)
            secs += t
            jobs = int8_jobs(cal, args.openvino)
            for label, sh in mac_shares(cal, jobs).items():
                shares.setdefault(label, []).append(sh["share"])
            for job in jobs:
                runs.setdefault(job.label, []).append(run_job(cal, job, data, scorer, progress=False))
            if args.peers:
                for name, make in PEERS.items():
                    r = peer_run(make, cal, calib, work, data, scorer)
                    if isinstance(r, str):
                        shares[name] = r
                        continue
                    runs.setdefault(name, []).append(r[0])
                    shares.setdefault(name, []).append(r[1])
        for label, rs in runs.items():
            note = f"{len(folds)} folds, calibrated in {secs:.0f} s" if label in shares and \
                not label.startswith(tuple(PEERS)) else f"{len(folds)} folds"
            rows.append({**_pool(label, rs, ref, ref_clip, min(shares[label]), note), "seed": seed})
            print(rows[-1], flush=True)
        rows += [dict(artifact=n, seed=seed, mse=float("nan"), ratio=float("nan"), drop=float("nan"),
                      d32=float("nan"), share="-", note=v) for n, v in shares.items() if isinstance(v, str)]
    return rows


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
    """ModelOpt's defaults. It patches onnxruntime's calibrator and quantizer classes for the whole
    process (``ort_patching.patch_ort_modules``); they are put back afterwards, so that the next
    fold's ``calibrate`` runs onnxruntime's own code."""
    from onnxruntime.quantization import base_quantizer, calibrate, qdq_quantizer

    owners = [calibrate, *(getattr(calibrate, n) for n in ("CalibraterBase", "MinMaxCalibrater",
                                                            "HistogramCalibrater", "HistogramCollector")),
              qdq_quantizer.QDQQuantizer, base_quantizer.BaseQuantizer]
    saved = [(o, dict(vars(o))) for o in owners]
    try:
        from modelopt.onnx.quantization import quantize

        quantize(str(fp32), quantize_mode="int8", calibration_data_reader=feeder, calibration_eps=["cpu"],
                 output_path=str(out))
    finally:
        for owner, attrs in saved:
            for name, value in attrs.items():
                if not name.startswith("__") and vars(owner).get(name) is not value:
                    setattr(owner, name, value)


def _nncf(fp32: Path, out: Path, feeder) -> None:
    import nncf
    import onnx

    quantized = nncf.quantize(onnx.load(str(fp32)), nncf.Dataset(feeder.all_feeds()))
    onnx.save(quantized, str(out))


PEERS = {"onnxruntime quantize_static (defaults)": _quantize_static,
         "ModelOpt ONNX PTQ int8 (defaults)": _modelopt,
         "NNCF nncf.quantize (defaults, ONNX backend)": _nncf}


def peer_run(make, bundle: Bundle, calib_dir: Path, work: Path, data, scorer: Scorer):
    """(ArtifactRun, INT8 MAC share) of a peer quantizer calibrated on ``calib_dir``, or why not."""
    import onnx

    from matting_deploy.check import int8_mac_share
    from matting_deploy.quantize.qdq import prepare_fp32
    from matting_deploy.runtimes.onnxruntime_runner import OrtRunner
    from matting_deploy.validate.parallel import cpu_cores, split
    from matting_deploy.validate.scoring import score_parallel

    fp32 = prepare_fp32(bundle.verify("fp32"), work / "peer-fp32.onnx")
    out = work / "peer.onnx"
    try:
        make(fp32, out, _feeder(bundle, calib_dir))
    except ImportError as e:
        return f"not run: {e}"
    images, clips = score_parallel(
        lambda n: OrtRunner(out, bundle.states, bundle.downsample_ratio, threads=n), out, data,
        scorer, *split(cpu_cores()))
    return ArtifactRun(Job("peer", "cpu", out), images, clips, 0.0), int8_mac_share(onnx.load(str(out)))["share"]


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
    ap.add_argument("--peers", action="store_true", help="also quantize_static, ModelOpt and NNCF defaults")
    ap.add_argument("--folds", type=int, default=0, help="leave-people-out: K folds by person (manifest.csv)")
    ap.add_argument("--clip-person", default=None, help="--folds: the clip's person (scored in that fold)")
    ap.add_argument("--num", type=int, default=100, help="calibration images per run (calibrate --num)")
    ap.add_argument("--work", type=Path, default=None, help="keep fold bundles and ranges caches here")
    ap.add_argument("--calib", nargs="*", default=[], metavar="KEY=VALUE",
                    help="calibrate options (CalibrateOptions fields), e.g. bias_correction=false")
    ap.add_argument("--openvino", action=argparse.BooleanOptionalAction, default=None,
                    help="also score model.int8.onnx on OpenVINO (default: when openvino is installed)")
    args = ap.parse_args(argv)
    if args.openvino is None:
        args.openvino = not unavailable("openvino")
    bundle = Bundle.open(args.bundle)
    data = load_dataset(args.data, args.limit)
    scorer = Scorer(bundle, frames=args.frames)
    print(f"onnxruntime {ort.__version__}, {len(data.images)} images, {args.frames} frames", flush=True)
    options = {k: _value(v) for k, v in (kv.split("=", 1) for kv in args.calib)}
    if args.folds:
        with tempfile.TemporaryDirectory(prefix="md-fid-") as tmp:
            work = args.work or Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            rows = leave_people_out(args, bundle, scorer, work, options)
        return _table(args, rows, f"leave-people-out, {args.folds} folds; calibrate {options or 'defaults'}")
    ref_mse, ref_miou, ref, ref_clip = score(bundle, Job("fp32", "cpu", bundle.verify("fp32")), data, scorer)
    rows = [dict(artifact="fp32 (cpu)", seed="-", mse=ref_mse, ratio=1.0, drop=0.0, d32=0.0, share="-",
                 clip=ref_clip and 1.0)]
    seen: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="md-fid-") as work:
        for seed in args.seeds:
            cal, secs = calibrated_copy(args.bundle, Path(work), args.data, seed, num=args.num, **options)
            cache = (cal.root / TRT_CACHE_FILE).read_text()
            if cache in seen:
                rows += [{**r, "seed": seed, "note": f"calib.cache identical to seed {seen[cache]}'s"}
                         for r in rows if r["seed"] == seen[cache]]
                continue
            seen[cache] = seed
            jobs = int8_jobs(cal, args.openvino)
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
    return _table(args, rows, "scored on the calibration set")


def _value(text: str):
    """A calibrate option value from the command line: bool, int, float or text."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _table(args, rows: list[dict], what: str) -> int:
    import onnxruntime as ort

    print(f"\nonnxruntime {ort.__version__}; {what}; targets: MSE <= {MAX_RATIO}x FP32, mIoU drop <= "
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
        args.json.write_text(json.dumps({"onnxruntime": ort.__version__, "mode": what, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
