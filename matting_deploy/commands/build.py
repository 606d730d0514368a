"""``matting-deploy build``: TensorRT engine for the GPU in front of you, or OpenVINO IR."""

from __future__ import annotations

import click

from ..bundle import PRECISIONS
from .options import examples


@click.command(epilog=examples(
    "matting-deploy build --bundle bundles/rvm --precision fp16",
    "matting-deploy build --bundle bundles/rvm --precision int8 --timing-cache trt.cache --device 1",
    "matting-deploy build --bundle bundles/rvm --precision int8 --trt-version 8.5.2 --trtexec",
    "matting-deploy build --bundle bundles/rvm --target openvino   # model.xml/.bin for every ONNX artifact",
))
@click.option("--bundle", type=click.Path(file_okay=False), required=True, help="Bundle folder.")
@click.option("--target", type=click.Choice(["tensorrt", "openvino"]), default="tensorrt", show_default=True,
              help="tensorrt: a TensorRT engine; openvino: the OpenVINO IR of the bundle's ONNX artifacts.")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help="Engine precision, required for tensorrt (the recipe depends on the TensorRT version: see "
                   "docs); with openvino: only that artifact's IR [default: every ONNX artifact].")
@click.option("--workspace", type=click.IntRange(min=1), metavar="MB",
              help="Builder workspace limit in MiB (default: TensorRT's, the GPU's memory; with --trtexec: "
                   "--memPoolSize=workspace:MB).")
@click.option("--timing-cache", type=click.Path(dir_okay=False),
              help="Timing cache file: read if present, updated after the build (faster rebuilds).")
@click.option("--device", type=click.IntRange(min=0), default=0, show_default=True,
              help="CUDA device index.")
@click.option("--force", is_flag=True, help="Overwrite an existing model.<precision>.engine (with --trtexec: "
              "the trtexec script).")
@click.option("--trtexec", is_flag=True,
              help="Build nothing: print, and write into the bundle, the trtexec command line that builds the same "
                   "engine for --trt-version (no TensorRT needed here; e.g. for a Jetson).")
@click.option("--trt-version", metavar="X.Y.Z",
              help="With --trtexec: the target's TensorRT version (JetPack 5.1: 8.5.2, 6.0: 8.6.2, 6.1/6.2: 10.3.0).")
def build(bundle, target, precision, workspace, timing_cache, device, force, trtexec, trt_version):
    """Build model.<precision>.engine in the bundle with TensorRT and record it in the manifest.

    TensorRT 8.5/8.6/10.0: model.onnx with the FP16/INT8 flags, INT8 scales from calib.cache (fed
    for the running TensorRT), calib.json's Convs INT8 with float outputs, the FP32 layers FP32,
    nothing else INT8 (obey precision constraints). TensorRT >= 10.1: INT8 from the Q/DQ
    model.int8.onnx; >= 10.12: FP16 from model.fp16.onnx (strongly typed). TF32 off.
    The file built from is checked against the running TensorRT's rules first (see 'check').
    With --trtexec --trt-version X.Y.Z nothing is built: the same plan is printed as a trtexec
    command and written into the bundle (trtexec.<precision>.<version>.sh).
    --target openvino: model.xml/.bin (OpenVINO IR) next to each ONNX artifact, so the bundle runs
    with only openvino installed (infer --backend openvino prefers the IR).
    """
    if target == "openvino":
        from ..runtimes.openvino_build import build_ir

        for name, value in (("--workspace", workspace), ("--timing-cache", timing_cache),
                            ("--trtexec", trtexec or None), ("--trt-version", trt_version)):
            if value is not None:
                raise click.BadParameter("a TensorRT option (not with --target openvino)", param_hint=name)

        build_ir(bundle, [precision] if precision else None, force, log=click.echo)
        return
    if precision is None:
        raise click.BadParameter("required with --target tensorrt", param_hint="--precision")
    from ..check.gate import check_build

    if trtexec or trt_version:
        _trtexec(bundle, precision, trtexec, trt_version, timing_cache, device, force, check_build, workspace)
        return
    from ..runtimes.trt_build import build_engine

    def precheck(plan, trt_version):
        check_build(bundle, plan.artifact, plan.calib_cache, trt_version,
                    warn=lambda m: click.echo(m, err=True))

    build_engine(bundle, precision, workspace, timing_cache, force, log=click.echo, device=device,
                 precheck=precheck)


def _trtexec(bundle, precision, trtexec, trt_version, timing_cache, device, force, check_build, workspace):
    """--trtexec: the plan checked against that version's rules, rendered and written."""
    import shlex

    from ..bundle import Bundle
    from ..bundle.trt_plan import plan_build
    from ..errors import MattingDeployError
    from ..runtimes.trtexec import write_trtexec

    if not (trtexec and trt_version):
        raise MattingDeployError("--trtexec and --trt-version go together (the command is for one TensorRT version)")
    plan = plan_build(Bundle.open(bundle), precision, trt_version, rules=False)
    check_build(bundle, plan.artifact, plan.calib_cache, trt_version, warn=lambda m: click.echo(m, err=True))
    path, args = write_trtexec(bundle, precision, trt_version, force, timing_cache, device,
                               log=lambda m: click.echo(m, err=True), workspace_mb=workspace)
    click.echo(shlex.join(args))
    click.echo(f"wrote {path} (run it on the target: it builds in the bundle folder)", err=True)
