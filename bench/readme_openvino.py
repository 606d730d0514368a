"""The OpenVINO part of the README's figures block (called by bench/readme_figures.py).

With ``openvino`` installed: ``validate --backends openvino`` of the figures bundle (every OpenVINO
artifact against OpenVINO FP32), then ``bench/bench_openvino.py`` speed ratios against onnxruntime
FP32 (one interleaved run per model) on the figures bundle (RVM 480x288), a seeded-weight MODNet at
the same size, calibrated like it (when PyTorch is there to export it), and RVM at 1080p with
downsample ratio 0.25 (FP32 and BF16 only). Without ``openvino``: one line saying so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ARTIFACTS = ("fp32", "bf16", "int8", "int8-cpu")
ISA = ("amx_int8", "amx_bf16", "avx512_vnni", "avx512_bf16", "avx512_fp16")  # what OpenVINO's CPU kernels use


def cpu_line() -> str:
    """The CPU the OpenVINO figures come from: its name, OpenVINO's capabilities, the ISA flags."""
    from matting_deploy.runtimes.openvino_runner import core

    name = core().get_property("CPU", "FULL_DEVICE_NAME")
    caps = ", ".join(core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    try:
        flags = set(next(ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")).split())
    except (OSError, StopIteration):
        return f"CPU: {name} (OpenVINO capabilities {caps})."
    have = [f for f in ISA if f in flags]
    lack = [f for f in ISA if f not in flags]
    return (f"CPU: {name} (OpenVINO capabilities {caps}; has {', '.join(have) or 'none of ' + ', '.join(ISA)}"
            + (f"; lacks {', '.join(lack)}" if have and lack else "") + ").")


def _drift(row: dict, metric: str, key: str):
    entry = next((d for d in row["drift"] if d["metric"] == metric), None)
    return None if entry is None else entry.get(key)


def fidelity_lines(report: dict) -> list[str]:
    """Per OpenVINO artifact: stills MSE vs OpenVINO FP32, mIoU drop, clip MSE vs FP32, the gate."""
    lines = ["| OpenVINO artifact | MSE vs FP32 | mIoU drop | clip MSE vs FP32 | drift gates |",
             "|---|---|---|---|---|"]
    for row in report["results"]:
        if row["backend"] != "openvino" or not row["metrics"]:
            continue
        if row["reference"]:
            lines.append(f"| {row['artifact']} | 1 | – | {'1' if row['clip'] else '-'} | reference |")
            continue
        clip = _drift(row, "clip_mse", "ratio")
        ok = all(d["ok"] for d in row["drift"] if "ok" in d)
        lines.append(f"| {row['artifact']} | {_drift(row, 'mse', 'ratio'):.3f}x | {_drift(row, 'miou', 'drop'):.4f} | "
                     f"{'-' if clip is None else f'{clip:.3f}x'} | {'pass' if ok else '**fail**'} |")
    return lines


def target_lines(results: list[dict]) -> list[str]:
    """The OpenVINO issue's speed targets, met or missed, as measured in this run."""
    out = []
    for r in results:
        for case, against, want, got in r["targets"]:
            if got is not None:
                out.append(f"{r['label']} `{case.split()[-1]}` >= {want}x {against}: {got:.2f}x "
                           f"({'met' if got >= want else 'missed'})")
    return out


def openvino_block(onnx: Path, data: Path, work: Path, bundle: Path, ran: list[str],
                   run: Callable[[list[str], list[str]], int], sibling: Callable[[str], ModuleType],
                   size: tuple[int, int] = (480, 288), hd: tuple[int, int] = (1080, 1920), iters: int = 20,
                   warmup: int = 3) -> list[str]:
    """The block's OpenVINO lines (the commands it runs are appended to ``ran``). ``sibling`` loads a
    bench/ script as a module (readme_figures.sibling); ``size``: the figures bundle's input (MODNet's,
    rounded up to multiples of 32); ``hd``: the 1080p bundle's."""
    from matting_deploy.optional import unavailable

    if unavailable("openvino"):
        return ["OpenVINO rows: not measured (`openvino` is not installed; `pip install -e '.[openvino]'`).", ""]
    report_dir = work / "report-openvino"
    gate = run(["validate", "--bundle", str(bundle), "--data", str(data), "--backends", "openvino",
                "--artifacts", ",".join(ARTIFACTS), "--report", str(report_dir), "--force"], ran)
    report = json.loads((report_dir / "report.json").read_text())
    bundles = {"rvm": bundle}
    if not unavailable("torch"):
        modnet = work / "bundle-modnet"
        h, w = (str(-(-x // 32) * 32) for x in size)
        run(["export", "--model", "modnet", "--height", h, "--width", w, "--out", str(modnet), "--force"], ran)
        for target in ("tensorrt", "cpu"):
            run(["calibrate", "--int8", "--target", target, "--bundle", str(modnet), "--data", str(data),
                 "--force"], ran)
        bundles["modnet"] = modnet
    bundles["rvm1080"] = work / "bundle-1080"
    run(["export", "--model", "rvm", "--from-onnx", str(onnx), "--height", str(hd[0]), "--width", str(hd[1]),
         "--downsample-ratio", "0.25", "--out", str(bundles["rvm1080"]), "--force"], ran)
    bench = sibling("bench_openvino")
    ran.append("python bench/bench_openvino.py " + " ".join(f"--bundle {k}={v}" for k, v in bundles.items())
               + f" --iters {iters} --warmup {warmup} --threads 2")
    results = [bench.measure_model(k, v, iters, warmup, 2, log=lambda m: None) for k, v in bundles.items()]
    rows = bench.table_rows(results)
    speed = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0]),
             *("| " + " | ".join(r) + " |" for r in rows[1:])]
    from matting_deploy.optional import versions

    return [
        f"OpenVINO {versions(['openvino'])['openvino']} on this CPU (`validate --backends openvino`, each "
        "artifact against OpenVINO FP32 on the same images). " + cpu_line() + " The speed ratios depend on "
        "which of these the CPU has; measure on the target CPU.",
        "",
        *fidelity_lines(report),
        "",
        *([f"**OpenVINO drift gate failed:** {'; '.join(report['failures'])}.", ""] if gate else []),
        "OpenVINO speed against onnxruntime FP32 (p50 ratio, one interleaved run per model, 2 threads; "
        f"MODNet with seeded weights, RVM at {hd[0]}x{hd[1]} with downsample ratio 0.25):",
        "",
        *speed,
        "",
        "Targets of the OpenVINO issue in this run: " + "; ".join(target_lines(results)) + ".",
        "",
    ]
