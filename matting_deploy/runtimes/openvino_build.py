"""``build --target openvino``: the OpenVINO IR (``.xml`` + ``.bin``) of each ONNX artifact, inside the
bundle, so a machine with only ``openvino`` installed runs the bundle without reading ONNX.

Each IR is converted by OpenVINO's ONNX frontend (``Core.read_model``; signed activation Q/DQ
rewritten as uint8 first, ``openvino_qdq``) and written with
``openvino.save_model(..., compress_to_fp16=False)`` (weights as the ONNX file has them); the files
are staged and committed with one manifest update: each listed under ``files`` with its sha256, and
the ``openvino`` section maps the artifact to its IR and the sha256 of the ONNX file it came from
(a later calibration makes the INT8 IR stale: the runner then reads the ONNX file again).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from ..bundle import OPENVINO, OPENVINO_QDQ, Bundle, ir_names
from ..bundle.commit import commit
from ..bundle.lock import bundle_lock
from ..errors import MattingDeployError, first_line
from ..fileio import check_dir_writable, check_writable, staging_dir
from ..optional import require
from .openvino_qdq import read_model


def build_ir(bundle_dir: str | os.PathLike, artifacts: list[str] | None = None, force: bool = False,
             log: Callable[[str], None] = print) -> list[Path]:
    """Write the IR of ``artifacts`` (default: every ONNX artifact of the bundle); returns the
    ``.xml`` paths. Existing IR files are kept unless ``force``; nothing is written on an error."""
    check_dir_writable(bundle_dir)
    with bundle_lock(bundle_dir, log):
        return _build(Bundle.open(bundle_dir, log), artifacts, force, log)


def _build(bundle: Bundle, artifacts: list[str] | None, force: bool, log: Callable[[str], None]) -> list[Path]:
    start = time.perf_counter()
    ov = require("openvino", "--target openvino")
    onnx = bundle.onnx_artifacts()
    names = artifacts or list(onnx)
    for name in names:
        if name not in onnx:
            raise MattingDeployError(f"--precision: bundle has no ONNX artifact '{name}' "
                                     f"(has: {', '.join(onnx) or 'none'})")
        for file in ir_names(name):
            check_writable(bundle.root / file, force)
    core = ov.Core()
    written: list[str] = []
    with staging_dir(bundle.root) as stage:
        for name in names:
            source = bundle.verify(name)
            xml, weights = ir_names(name)
            try:
                ov.save_model(read_model(core, source)[0], str(stage / xml), compress_to_fp16=False)
            except Exception as e:  # OpenVINO raises RuntimeError for what its frontend cannot convert
                raise MattingDeployError(f"{source}: OpenVINO cannot convert it ({first_line(e)})") from None
            info = {"kind": "openvino-ir", "of": name, "openvino": ov.__version__}
            bundle.add_file(xml, folder=stage, **info)
            bundle.add_file(weights, folder=stage, **info)
            bundle.manifest.setdefault(OPENVINO, {})[name] = {
                "xml": xml, "bin": weights, "source": onnx[name],
                "source_sha256": bundle.manifest["files"][onnx[name]]["sha256"], "openvino": ov.__version__,
                "qdq": OPENVINO_QDQ}
            written += [xml, weights]
            log(f"{name}: {onnx[name]} -> {xml} + {weights}")
        commit(bundle.root, stage, bundle.manifest, written)
    log(f"wrote {len(names)} OpenVINO IR(s) in {bundle.root} in {time.perf_counter() - start:.1f} s")
    return [bundle.root / ir_names(n)[0] for n in names]
