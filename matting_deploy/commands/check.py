"""``matting-deploy check``: a bundle against one TensorRT version's rules, on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..check.support import TARGETS
from .options import examples


@click.command("check", epilog=examples(
    "matting-deploy check --bundle bundles/rvm                      # the TensorRT calibrate chose",
    "matting-deploy check --bundle bundles/rvm --trt-version 8.5.2  # JetPack 5.1: implicit INT8",
    "matting-deploy check --bundle bundles/rvm --target tensorrt-11 --json check.json",
))
@click.option("--bundle", "bundle_dir", required=True, type=click.Path(path_type=Path),
              help="Bundle folder.")
@click.option("--target", type=click.Choice(TARGETS),
              help="TensorRT line to check against (tensorrt-8.6: 8.5.x/8.6.x, implicit INT8 from calib.cache; "
                   "tensorrt-10: 10.0.x implicit INT8 from calib.cache, from 10.1 Q/DQ INT8 from model.int8.onnx; "
                   "tensorrt-11: strongly typed only). Default: the line of --trt-version.")
@click.option("--trt-version", metavar="X.Y.Z",
              help="A precise version. Default: the version the bundle was calibrated for (calib.json, "
                   "calibrate --trt-version), else the --target line's (8.6.1, 10.1.0, 11.1.0), else 10.1.0.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the rules and verdicts as JSON to this file.")
@click.option("--force", is_flag=True, help="Overwrite an existing --json file.")
def check(bundle_dir, target, trt_version, json_path, force):
    """Check each artifact against what that TensorRT accepts and how it will run it: parser ops
    and attributes, static shapes, Q/DQ placement and types, FP16 outside Q/DQ, calib.cache
    coverage and header. Exit 0: all rules pass; 1: a rule fails; 2: bad input."""
    from ..check.load import calibrated_version, check_bundle_dir
    from ..check.report import render_table
    from ..check.support import target_for_version
    from ..errors import GateFailed
    from ..fileio import atomic_path, check_writable

    if target is None and trt_version is None:
        trt_version = calibrated_version(bundle_dir)
        if trt_version is not None:
            click.echo(f"checking TensorRT {trt_version}: the version calib.json says the bundle was calibrated "
                       "for (--trt-version or --target to check another)", err=True)
    if target is None:
        target = target_for_version(trt_version).name if trt_version else "tensorrt-10"
    if json_path is not None:
        check_writable(json_path, force)
    report = check_bundle_dir(bundle_dir, target, trt_version)
    click.echo(render_table(report))
    if json_path is not None:
        with atomic_path(json_path, force) as tmp:
            tmp.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    if not report.ok:
        rules = ", ".join(dict.fromkeys(r.rule for r in report.failed))
        raise GateFailed(f"{bundle_dir}: TensorRT {report.target.version_text} rule(s) fail: {rules}")
