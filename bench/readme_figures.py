"""Regenerate the README's "Measured figures" block from the real commands.

Usage (the official RVM MobileNetV3 FP32 ONNX and a PPM-100-layout folder; minutes on a CPU):

    python bench/readme_figures.py --onnx rvm_mobilenetv3_fp32.onnx --data composite-dev \
        [--work runs/figures] [--iters 60 --warmup 10] [--folds 5 --clip-person obama] [--holdout] \
        [--hd 1080 1920] \
        [--write README.md]

Runs, as a user would, ``export --from-onnx --fp16``, ``calibrate --int8``, ``validate`` and
``bench --json`` into ``--work`` (and, with ``openvino`` installed, the OpenVINO rows of
bench/readme_openvino.py), reads what they wrote (manifest.json, calib.json, report.json,
bench.json) and prints the markdown block. The INT8 accuracy line comes first and is the
leave-people-out figure (``bench/int8_fidelity.py --folds``: calibrated on other persons than those
scored, the data's manifest.csv naming them; ``--folds 0`` leaves it out); the validate tables after
it are scored on the calibration images and say so. ``--holdout`` also calibrates on every other
image and validates on the rest. ``--write README.md`` replaces the text between the markers
``<!-- figures:start -->`` and ``<!-- figures:end -->``. Rerun it whenever a recipe or a default
changes; nothing in the block is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matting_deploy.cli import main as cli  # noqa: E402
from matting_deploy.data.pairs import load_dataset  # noqa: E402
from matting_deploy.optional import versions  # noqa: E402

START, END = "<!-- figures:start -->", "<!-- figures:end -->"
NAMES = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8 (Q/DQ, TensorRT >= 10.1 artifact, FP16 outside Q/DQ)",
         "int8 implicit-emulated": "INT8 implicit (TensorRT 8.5/8.6/10.0, emulated)",
         "int8-cpu": "INT8-CPU (onnxruntime CPU integer kernels)"}


def gpu_text() -> str:
    """What this machine has: the GPUs nvidia-smi names, else "no GPU" (none, or no driver to ask)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "no GPU"
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "no GPU"
    names = [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []
    return ", ".join(names) if names else "no GPU"

def run(args: list[str], log: list[str]) -> int:
    """One matting-deploy command in this process; returns its exit code (1 = a drift gate failed)."""
    line = "matting-deploy " + " ".join(args)
    print(f"\n$ {line}", flush=True)
    log.append(line)
    try:
        cli.main(args=args, standalone_mode=False)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        if code not in (0, 1):
            raise SystemExit(f"readme_figures: '{line}' failed (exit {code})") from None
        return code
    return 0


def _drift(row: dict, metric: str, key: str) -> float | None:
    entry = next((d for d in row["drift"] if d["metric"] == metric), None)
    return None if entry is None else entry.get(key)


def accuracy_table(report: dict) -> list[str]:
    """Still-image metrics per artifact (onnxruntime CPU), with the drift against FP32."""
    lines = ["| artifact | MSE | MAD | mIoU | MSE vs FP32 | mIoU drop |", "|---|---|---|---|---|---|"]
    for row in report["results"]:
        if row["backend"] != "cpu" or not row["metrics"]:
            continue
        m = row["metrics"]
        ratio = "1" if row["reference"] else f"{_drift(row, 'mse', 'ratio'):.3f}x"
        drop = "–" if row["reference"] else f"{_drift(row, 'miou', 'drop'):.4f}"
        lines.append(f"| {NAMES.get(row['artifact'], row['artifact'])} | {m['mse']:.6f} | {m['mad']:.6f} | "
                     f"{m['miou']:.4f} | {ratio} | {drop} |")
    return lines


def clip_table(report: dict) -> list[str]:
    """Clip metrics (state carried over frames), when the data has clips."""
    rows = [r for r in report["results"] if r["backend"] == "cpu" and r["clip"]]
    if not rows:
        return []
    lines = ["| artifact (clips) | MSE | mIoU | dtSSD | MSE vs FP32 |", "|---|---|---|---|---|"]
    for row in rows:
        c = row["clip"]
        ratio = "1" if row["reference"] else f"{_drift(row, 'clip_mse', 'ratio'):.3f}x"
        lines.append(f"| {NAMES.get(row['artifact'], row['artifact'])} | {c['mse']:.6f} | {c['miou']:.4f} | "
                     f"{c['dtssd']:.3f} | {ratio} |")
    return lines


def speed_table(bench: dict) -> list[str]:
    lines = ["| artifact | p50 ms | p90 ms | FPS | vs FP32 (p50) | runner overhead |", "|---|---|---|---|---|---|"]
    speedups = bench["speedup_vs_fp32_p50"]
    for row in bench["rows"]:
        s = speedups.get(row["artifact"])
        vs = "–" if s is None else (f"{s:.2f}x faster" if s >= 1 else f"{1 / s:.2f}x slower")
        overhead = f"{row['overhead_pct']:+.2f}%" if "overhead_pct" in row else "–"
        lines.append(f"| {NAMES.get(row['artifact'], row['artifact'])} | {row['p50_ms']:.1f} | "
                     f"{row['p90_ms']:.1f} | {row['fps']:.1f} | {vs} | {overhead} |")
    return lines


def split_halves(data: Path, work: Path) -> tuple[Path, Path]:
    """Every other still image (sorted by name) into two PPM-layout folders of links."""
    pairs = sorted(load_dataset(data).images, key=lambda p: p.name)
    halves = (work / "half-a", work / "half-b")
    for half in halves:
        shutil.rmtree(half, ignore_errors=True)
        (half / "image").mkdir(parents=True)
        (half / "matte").mkdir()
    for i, pair in enumerate(pairs):
        half = halves[i % 2]
        os.symlink(pair.image.resolve(), half / "image" / pair.image.name)
        os.symlink(pair.matte.resolve(), half / "matte" / pair.matte.name)
    return halves


def _shown(line: str, onnx: Path, data: Path, work: Path) -> str:
    """A command as the README shows it: file names instead of this machine's paths."""
    for path, name in ((work, ""), (onnx, onnx.name), (data, data.name)):
        line = line.replace(str(path) + ("/" if not name else ""), name)
    return line


def sibling(name: str):
    """A script of bench/ (beside this one) as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def leave_people_out(bundle: Path, data: Path, work: Path, folds: int, clip_person: str | None,
                     ran: list[str]) -> dict:
    """bench/int8_fidelity.py --folds on the bundle: {row label: pooled row}."""
    fidelity = sibling("int8_fidelity")
    out = work / "leave-people-out.json"
    shown = ["--bundle", str(bundle), "--data", str(data), "--folds", str(folds), "--seeds", "0"]
    shown += ["--clip-person", clip_person] if clip_person else []
    args = [*shown, "--work", str(work / "folds"), "--json", str(out)]
    shutil.rmtree(work / "folds", ignore_errors=True)
    ran.append("python bench/int8_fidelity.py " + " ".join(shown))
    if fidelity.main(args) != 0:
        raise SystemExit("readme_figures: bench/int8_fidelity.py --folds failed")
    return {r["artifact"]: r for r in json.loads(out.read_text())["rows"]}


def openvino_hint(artifact: str) -> str:
    """The inference-precision hint the OpenVINO runner gives ``artifact`` on this CPU."""
    from matting_deploy.runtimes.openvino_runner import precision_hint

    return precision_hint(artifact, "CPU")


def lpo_lines(rows: dict, folds: int) -> list[str]:
    """The leave-people-out INT8 line and its table."""
    lines = [f"**INT8 on people it was not calibrated on** (leave-people-out: {folds} folds by person, each "
             "calibrated with the defaults on the other persons' images and scored on its own; errors pooled "
             "over the folds, so every image is scored once by a calibration that never saw its person):", "",
             "| artifact | MSE / FP32 | mIoU drop | clip MSE / FP32 | INT8 conv MACs |", "|---|---|---|---|---|"]
    for label, r in rows.items():
        name = NAMES.get(label.rsplit(" (", 1)[0], label)
        name += f" on OpenVINO (CPU, {openvino_hint('int8')} hint)" if label.endswith("(openvino)") else ""
        clip = "-" if r.get("clip") is None else f"{r['clip']:.3f}x"
        share = r["share"] if isinstance(r["share"], str) else f"{r['share']:.1%}"
        lines.append(f"| {name} | {r['ratio']:.3f}x | {r['drop']:.4f} | {clip} | {share} |")
    return lines


def figures(onnx: Path, data: Path, work: Path, iters: int, warmup: int, holdout: bool,
            height: int, width: int, folds: int = 5, clip_person: str | None = None,
            hd: tuple[int, int] = (1080, 1920)) -> str:
    """Run the commands into ``work`` and return the markdown block (markers included)."""
    work.mkdir(parents=True, exist_ok=True)
    bundle, report_dir, bench_json = work / "bundle", work / "report", work / "bench.json"
    ran: list[str] = []
    run(["export", "--model", "rvm", "--from-onnx", str(onnx), "--height", str(height), "--width", str(width),
         "--fp16", "--out", str(bundle), "--force"], ran)
    run(["calibrate", "--int8", "--bundle", str(bundle), "--data", str(data), "--force"], ran)
    run(["calibrate", "--int8", "--target", "cpu", "--bundle", str(bundle), "--data", str(data), "--force"], ran)
    gate = run(["validate", "--bundle", str(bundle), "--data", str(data), "--report", str(report_dir),
                "--force"], ran)
    run(["bench", "--bundle", str(bundle), "--artifacts", "fp32,fp16,int8,int8-cpu", "--iters", str(iters),
         "--warmup", str(warmup), "--json", str(bench_json), "--force"], ran)
    manifest = json.loads((bundle / "manifest.json").read_text())
    calib = json.loads((bundle / "calib.json").read_text())
    report = json.loads((report_dir / "report.json").read_text())
    bench = json.loads(bench_json.read_text())
    protocol, parity = report["protocol"], manifest["parity"]["fp32"]
    with_folds = folds and (data / "manifest.csv").is_file()  # persons named: leave-people-out
    lpo = leave_people_out(bundle, data, work, folds, clip_person, ran) if with_folds else None

    openvino = sibling("readme_openvino").openvino_block(onnx, data, work, bundle, ran, run, sibling,
                                                         (height, width), hd, iters, warmup)
    held = None
    if holdout:
        part_a, part_b = split_halves(data, work)
        held_bundle = work / "bundle-holdout"
        run(["export", "--model", "rvm", "--from-onnx", str(onnx), "--height", str(height), "--width",
             str(width), "--out", str(held_bundle), "--force"], ran)
        run(["calibrate", "--int8", "--bundle", str(held_bundle), "--data", str(part_a), "--force"], ran)
        run(["validate", "--bundle", str(held_bundle), "--data", str(part_b), "--report",
             str(work / "report-holdout"), "--force"], ran)
        held = json.loads((work / "report-holdout" / "report.json").read_text())

    cpu = os.cpu_count()
    ver = versions(["onnxruntime"])["onnxruntime"]
    n_img, n_frames = protocol["n_images"], protocol["n_clip_frames"]
    lines = [
        START,
        f"Made by `bench/readme_figures.py` on {cpu} CPU cores ({platform.machine()}, onnxruntime {ver}, "
        f"{gpu_text()}; every figure on the CPU backend): `{onnx.name}` on `{data.name}` ({n_img} images"
        + (f", {protocol['n_clips']} clip(s) of {n_frames} frames" if n_frames else "")
        + f"), input {height}x{width}, {protocol['frames_per_image']} frames per image. Commands run:",
        "",
        "```bash",
        *(_shown(line, onnx, data, work) for line in ran),
        "```",
        "",
        *(lpo_lines(lpo, folds) + [""] if lpo else []),
        *(["Calibration-set figures (calibrated on the images it is scored on):", ""] if lpo else []),
        *accuracy_table(report),
        "",
    ]
    clips = clip_table(report)
    if clips:
        lines += [*clips, ""]
    if gate:
        lines += [f"**A drift gate failed:** {'; '.join(report['failures'])}.", ""]
    if held is not None:
        row = next(r for r in held["results"] if r["artifact"] == "int8" and r["backend"] == "cpu")
        lines += [f"Calibrated on every other image ({held['protocol']['n_images']} held out for scoring): "
                  f"INT8 MSE {_drift(row, 'mse', 'ratio'):.3f}x FP32, mIoU drop "
                  f"{_drift(row, 'miou', 'drop'):.4f}.", ""]
    lines += [
        *speed_table(bench),
        "",
        f"Export: {manifest.get('export_seconds', 0):.1f} s, FP32 parity against the source ONNX "
        f"{parity['max_abs']:.1e} on alpha ({parity['max_abs_all']:.1e} on every output) over "
        f"{parity['frames']} frames. Calibration: {calib['calibration_seconds'] or 0:.1f} s for "
        f"{calib['image_count']} images. Validation of {len(report['results'])} artifacts: "
        f"{report['seconds']:.0f} s. Speed: {bench['iters']} timed calls after {bench['warmup']} warm-up.",
        "",
        *openvino,
        END,
    ]
    return "\n".join(lines)


def rewrite(readme: Path, block: str) -> None:
    """Replace the marked block of ``readme`` (both markers must be there, once each)."""
    text = readme.read_text()
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise SystemExit(f"readme_figures: {readme}: needs one {START} ... {END} block")
    head, rest = text.split(START)
    readme.write_text(head + block + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True, help="Official RVM MobileNetV3 FP32 ONNX.")
    parser.add_argument("--data", type=Path, required=True, help="PPM-100-layout folder (image/ + matte/).")
    parser.add_argument("--work", type=Path, default=Path("runs/figures"), help="Work folder (replaced).")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=288)
    parser.add_argument("--hd", type=int, nargs=2, default=(1080, 1920), metavar=("H", "W"),
                        help="OpenVINO rows: the RVM bundle at downsample ratio 0.25 (default 1080 1920)")
    parser.add_argument("--iters", type=int, default=60, help="bench --iters")
    parser.add_argument("--warmup", type=int, default=10, help="bench --warmup")
    parser.add_argument("--holdout", action="store_true", help="Also calibrate on half, score the other half.")
    parser.add_argument("--folds", type=int, default=5, help="Leave-people-out folds (0: none; needs manifest.csv).")
    parser.add_argument("--clip-person", default=None, help="The clip's person (scored in that person's fold).")
    parser.add_argument("--write", type=Path, help="README to rewrite between the markers.")
    args = parser.parse_args(argv)
    block = figures(args.onnx, args.data, args.work, args.iters, args.warmup, args.holdout,
                    args.height, args.width, args.folds, args.clip_person, tuple(args.hd))
    print("\n" + block)
    if args.write:
        rewrite(args.write, block)
        print(f"\nrewrote the figures block of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
