"""``export``: network (or existing ONNX) -> simplified, checked, parity-verified bundle."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx

from ..bundle import ARTIFACT_FILES, DERIVED, MANIFEST, Bundle, new_manifest
from ..bundle.checks import MAX_SIDE
from ..bundle.commit import commit, inside, recover
from ..bundle.layout import DERIVED_PATTERNS, matching
from ..bundle.lock import bundle_lock
from ..errors import MattingDeployError, first_line
from ..fileio import check_dir_writable, pause_point, sha256_file, staging_dir, write_errors
from ..models.specs import BGM_DEFAULT_HW, DEFAULT_HW, MODELS, bgm_size_problem
from ..optional import require, versions
from ..runtimes.onnxruntime_runner import OrtRunner
from . import onnx_tools
from .from_onnx import prepare, state_specs
from .parity import (
    FP16_MAX_ABS,
    FP16_MAX_VALUE,
    FP32_MAX_ABS,
    FP32_MEAN_ABS,
    TRIVIAL_ALPHA,
    check_outputs,
    compare,
    parity_frames,
)
from .split_pixels import split_pixel_concats

VERSIONED = ("torch", "onnx", "onnxruntime", "onnxsim", "onnxconverter-common", "matting-deploy")


@dataclass
class ExportOptions:
    model: str
    out: Path
    variant: str = "mobilenetv3"
    weights: str | None = None
    height: int | None = None  # None: the model's default (480x288; BGM 512x512)
    width: int | None = None
    downsample_ratio: float = 1.0
    dynamic: bool = False
    opset: int = 17
    fp16: bool = False
    from_onnx: str | None = None
    force: bool = False


class Progress:
    """One line per stage with its duration, and the total at the end."""

    def __init__(self, log: Callable[[str], None]):
        self.log, self.start, self.last = log, time.perf_counter(), time.perf_counter()

    def stage(self, name: str, detail: str = "") -> None:
        now = time.perf_counter()
        self.log(f"[{name:<8}] {now - self.last:6.2f}s  {detail}".rstrip())
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.start


def _check_target(opts: ExportOptions) -> None:
    taken = [opts.out / n for n in (MANIFEST, *ARTIFACT_FILES.values()) if (opts.out / n).exists()]
    if taken and not opts.force:
        raise MattingDeployError(f"{taken[0]}: already exists (pass --force to overwrite the bundle)")
    if opts.out.exists() and not opts.out.is_dir():
        raise MattingDeployError(f"{opts.out}: exists and is not a folder")


def _validate(opts: ExportOptions) -> None:
    if opts.model not in MODELS:
        raise MattingDeployError(f"--model: unknown model '{opts.model}' ({', '.join(MODELS)})")
    default = BGM_DEFAULT_HW if opts.model == "bgm" else DEFAULT_HW
    opts.height = default[0] if opts.height is None else opts.height
    opts.width = default[1] if opts.width is None else opts.width
    if not (0 < opts.height <= MAX_SIDE and 0 < opts.width <= MAX_SIDE):
        raise MattingDeployError(f"--height/--width: must be in 1..{MAX_SIDE}, got {opts.height}x{opts.width}")
    if opts.model == "bgm" and (problem := bgm_size_problem(opts.height, opts.width)):
        raise MattingDeployError(f"--height/--width: {problem}")
    if opts.model == "bgm" and opts.from_onnx:
        raise MattingDeployError("--from-onnx: RVM and MODNet sources only (BGM exports from PyTorch)")
    if opts.model == "modnet" and (opts.height % 32 or opts.width % 32):
        raise MattingDeployError(
            f"--height/--width: MODNet needs both divisible by 32, got {opts.height}x{opts.width}"
        )
    if not 0 < opts.downsample_ratio <= 1:
        raise MattingDeployError(f"--downsample-ratio: must be in (0, 1], got {opts.downsample_ratio}")
    if opts.from_onnx and opts.dynamic:
        raise MattingDeployError("--from-onnx makes a static graph; drop --dynamic")
    if opts.opset < 13:
        raise MattingDeployError(f"--opset {opts.opset}: need 13 or later (per-channel Q/DQ, Resize)")
    if not opts.from_onnx:  # a PyTorch export: its inputs are checked before anything is written
        if opts.weights is not None and not Path(opts.weights).is_file():
            why = "not a file" if Path(opts.weights).exists() else "no such file"
            raise MattingDeployError(f"{opts.weights}: {why}")
        require("torch", opts.weights or f"export --model {opts.model} without --from-onnx")


def _stale(out: Path, keep: set[str]) -> list[str]:
    """What an export over ``out`` makes stale: files the old manifest lists that the new one
    does not, and everything derived from the old model (INT8, caches, engines, report, trtexec
    scripts and re-headed caches), listed or not."""
    try:
        old = json.loads((out / MANIFEST).read_text()).get("files", {})
        old = list(old) if isinstance(old, dict) else []
    except (OSError, ValueError, AttributeError):
        old = []
    names = []
    for name in [*old, *DERIVED, *matching(out, old, DERIVED_PATTERNS)]:
        try:
            path = inside(out, name)
        except MattingDeployError:
            continue
        if name not in keep and name not in names and (path.exists() or path.is_symlink()):
            names.append(name)
    return names


def _fp16_guard(p16: dict, peak: float | None) -> None:
    """FP16 must not overflow: finite outputs, FP32 activations inside FP16's range, and outputs
    near FP32 (a saturated layer shows as a gross difference even when clamped outputs stay finite)."""
    if p16["nonfinite"]:
        raise MattingDeployError(f"FP16 overflow: {p16['nonfinite']} non-finite output values on "
                                 "the parity frames (no FP16 artifact written)")
    if peak is not None and peak > FP16_MAX_VALUE:
        raise MattingDeployError(f"FP16 overflow: an FP32 activation reaches {peak:.3g}, beyond "
                                 f"FP16's {FP16_MAX_VALUE:g} (no FP16 artifact written)")
    if p16["max_abs_all"] > FP16_MAX_ABS:
        raise MattingDeployError(f"FP16 parity failed: max |fp16 - fp32| = {p16['max_abs_all']:.3g} "
                                 f"> {FP16_MAX_ABS:g} (no FP16 artifact written)")


def export_bundle(opts: ExportOptions, log: Callable[[str], None] = print) -> Bundle:
    """Run every stage into a staging folder in ``opts.out``, then commit it as one update."""
    _validate(opts)
    if opts.out.is_dir():
        recover(opts.out, log)  # a commit a killed export left half-done counts as done
    _check_target(opts)
    check_dir_writable(opts.out)
    made = opts.out
    while not made.parent.exists():
        made = made.parent
    made = None if made.exists() else made
    with write_errors(opts.out):
        opts.out.mkdir(parents=True, exist_ok=True)
    try:
        with bundle_lock(opts.out, log):
            bundle = _export(opts, log)
    except BaseException:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise
    written = ", ".join([*bundle.artifacts.values(), MANIFEST])
    log(f"wrote {opts.out} ({written}) in {bundle.manifest['export_seconds']:.1f}s")
    return bundle


def _export(opts: ExportOptions, log: Callable[[str], None]) -> Bundle:
    progress = Progress(log)
    with staging_dir(opts.out) as stage:
        raw = stage / "raw.onnx"
        if opts.from_onnx:
            prepared = prepare(opts.model, opts.from_onnx, opts.height, opts.width, opts.downsample_ratio)
            progress.stage("build", prepared.built)
            model, shapes, variant = prepared.model, prepared.shapes, prepared.variant
            reference, against, weights = prepared.reference, "source-onnx", None
            source_desc = {"onnx": Path(opts.from_onnx).name, "sha256": sha256_file(opts.from_onnx)}
            progress.stage("export", prepared.changed)
        else:
            from .torch_export import TorchRunner, build_network, export_onnx, state_shapes, wrap

            if not opts.weights:
                log("WARNING: no --weights given: the network has seeded random weights; "
                    "this bundle is for pipeline testing only")
            net = build_network(opts.model, opts.variant, opts.weights)
            graph = wrap(opts.model, net, opts.downsample_ratio, opts.dynamic)
            variant = {"rvm": opts.variant, "modnet": "mobilenetv2", "bgm": "resnet-condition-hr"}[
                opts.model]
            params = sum(p.numel() for p in net.parameters()) / 1e6
            progress.stage("build", f"{opts.model} {variant} ({params:.2f} M parameters)")
            export_onnx(graph, opts.model, variant, opts.height, opts.width,
                        opts.downsample_ratio, opts.opset, opts.dynamic, raw)
            model = onnx.load(str(raw))
            shapes = None
            if opts.model == "rvm":
                shapes = state_shapes(variant, opts.height, opts.width, opts.downsample_ratio)
            reference = TorchRunner(graph, opts.model, variant, opts.downsample_ratio)
            against, source_desc, weights = "pytorch", "pytorch", opts.weights
            progress.stage("export", f"torch.onnx.export opset {opts.opset}")

        model, why = onnx_tools.simplify(model)
        progress.stage("simplify", "onnxsim" if why is None else
                       f"FAILED, keeping the unsimplified graph: {why}")
        onnx_tools.tidy_resize(model)
        model = onnx_tools.upgrade_opset(model, opts.opset)
        states = state_specs(shapes)
        images = {i.name for i in model.graph.input} - {s.input for s in states}
        model, split = split_pixel_concats(model, images)
        if split:
            progress.stage("split", f"{len(split)} Conv(s) reading image + feature Concats split in two "
                                    f"(image channels get their own Conv): {', '.join(split)}")
        model = onnx_tools.check(model)
        fp32_path = stage / ARTIFACT_FILES["fp32"]
        onnx.save(model, str(fp32_path))
        frames = parity_frames(opts.model, opts.height, opts.width, 5 if states else 2)
        fp32 = OrtRunner(fp32_path, states, opts.downsample_ratio, dynamic=opts.dynamic)
        fp32_outputs: list[dict] = []
        try:
            check_outputs(fp32, frames[0], opts.model, opts.from_onnx or "exported graph")
            parity = {"fp32": compare(reference, fp32, frames, against, keep=fp32_outputs)}
        except MattingDeployError:
            raise
        except Exception as e:  # onnxruntime/torch errors of a broken source graph
            raise MattingDeployError(f"{opts.from_onnx or opts.weights or opts.model}: running the "
                                     f"model failed ({first_line(e)})") from None
        p32 = parity["fp32"]
        if getattr(reference, "max_activation", 0.0):
            p32["max_activation"] = reference.max_activation
        progress.stage("check", f"onnx.checker ok; parity vs {against}: max {p32['max_abs']:.2e} "
                                f"mean {p32['mean_abs']:.2e}, all outputs max {p32['max_abs_all']:.2e}, "
                                f"{len(frames)} frames, alpha range {p32['alpha']['range']:.2f}")
        if p32["alpha"]["range"] < TRIVIAL_ALPHA:
            drawn = "seeded person-over-plate frames" if opts.model == "bgm" else "drawn portraits"
            trivial = (f"the parity frames ({drawn}) give a trivial alpha (range "
                       f"{p32['alpha']['range']:.3f}), so parity checks little")
            if weights:  # trained weights must see a person in them
                raise MattingDeployError(f"{weights}: {trivial}; are these trained matting weights?")
            log(f"WARNING: {trivial}")
        if p32["max_abs_all"] > FP32_MAX_ABS or p32["mean_abs_all"] > FP32_MEAN_ABS:
            raise MattingDeployError(
                f"FP32 parity failed: |onnx - {against}| max {p32['max_abs_all']:.3g} (limit "
                f"{FP32_MAX_ABS:g}), mean {p32['mean_abs_all']:.3g} (limit {FP32_MEAN_ABS:g}); "
                f"alpha max {p32['max_abs']:.3g}"
            )
        files = [fp32_path]
        if opts.fp16:
            from .fp16 import to_fp16

            fp16_path = stage / ARTIFACT_FILES["fp16"]
            onnx.save(onnx_tools.check(to_fp16(model, states)), str(fp16_path))
            fp16 = OrtRunner(fp16_path, states, opts.downsample_ratio, dynamic=opts.dynamic)
            parity["fp16"] = p16 = compare(fp32_outputs, fp16, frames, "fp32")
            files.append(fp16_path)
            peak = p32.get("max_activation")
            progress.stage("fp16", f"parity vs fp32: max {p16['max_abs']:.2e} "
                                   f"mean {p16['mean_abs']:.2e}, all outputs max {p16['max_abs_all']:.2e}"
                                   + (f"; largest FP32 activation {peak:.3g}" if peak else ""))
            _fp16_guard(p16, peak)
        inputs, outputs = onnx_tools.io_spec(model)
        manifest = new_manifest(
            opts.model, variant=variant, source=source_desc, weights=weights,
            height=opts.height, width=opts.width, dynamic=opts.dynamic,
            downsample_ratio=opts.downsample_ratio if opts.model == "rvm" else None,
            opset=opts.opset, inputs=inputs, outputs=outputs, states=states,
            versions=versions(VERSIONED), parity=parity, simplified=why is None,
        )
        bundle = Bundle(opts.out, manifest)
        for path, artifact in zip(files, ("fp32", "fp16"), strict=False):
            bundle.add_file(path.name, artifact=artifact, folder=stage, precision=artifact)
        manifest["export_seconds"] = round(progress.total(), 2)
        stale = _stale(opts.out, set(manifest["files"])) if opts.force else []
        pause_point("export-staged")
        commit(opts.out, stage, manifest, [p.name for p in files], stale)
    if stale:
        log(f"removed what the old model made stale: {', '.join(stale)}")
    return bundle
