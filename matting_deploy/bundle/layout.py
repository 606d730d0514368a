"""Every file name a bundle holds, and the one way to spell an engine's name and path."""

from __future__ import annotations

import os
from fnmatch import fnmatchcase
from pathlib import Path

from ..errors import MattingDeployError

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")
CPU_INT8 = "int8-cpu"  # onnxruntime-CPU INT8 layout (QLinearConv); not a TensorRT artifact
ARTIFACT_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx",
                  CPU_INT8: "model.int8-cpu.onnx"}
# Execution precisions: an artifact that runs another artifact's file with a precision hint (no file
# of its own; OpenVINO only): bf16 = model.onnx with OpenVINO's BF16 inference precision.
BF16 = "bf16"
HINTED = {BF16: "fp32"}
# The one list of artifact names (validate, bench, infer, the manifest, the C surface); a backend
# that cannot run one refuses it with one line.
ARTIFACTS = (*ARTIFACT_FILES, *HINTED)
INT8_FILE = ARTIFACT_FILES["int8"]
CPU_INT8_FILE = ARTIFACT_FILES[CPU_INT8]
# Implicit INT8 (TensorRT 8.5/8.6/10.0) builds from an FP32 file and calib.cache. With calibrate's
# parameter levers (bias correction, weight rounding) that file is this copy of model.onnx with the
# INT8 Convs' weights pre-snapped to the INT8 grid and their biases corrected; the manifest's
# calibration section names the file the implicit build reads (implicit_onnx), model.onnx otherwise.
IMPLICIT_FILE = "model.int8-implicit.onnx"
IMPLICIT_KEY = "tensorrt_onnx"
TRT_CACHE_FILE = "calib.cache"  # TensorRT's text calibration cache (format: trt_cache.py)
CALIB_JSON = "calib.json"
ENGINE_FILE = "model.{precision}.engine"
TRT_PREFIX = "trt-"  # manifest artifact name of an engine: trt-<precision>
OPENVINO = "openvino"  # manifest section: artifact -> its OpenVINO IR (build --target openvino)
# How an IR holds the ONNX file's activation Q/DQ (``runtimes/openvino_qdq``); an IR entry without it
# predates that rewrite and is stale.
OPENVINO_QDQ = "uint8-activations"
REPORT_DIR = "report"  # validate's default report folder
RANGES_CACHE_DIR = ".calib-cache"  # calibrated ranges (ranges_cache.py)
TRTEXEC_SCRIPT = "trtexec.{precision}.{version}.sh"  # build --trtexec's command for one TensorRT version
RETARGETED_CACHE = "calib.{version}.cache"  # calib.cache's scales headed for another TensorRT (build --trtexec)
# The FP16 artifacts keep these ops in FP32 (export/fp16.py), on top of onnxconverter-common's
# defaults: Resize (its scales/sizes inputs must stay FP32), and the ops whose FP16 range or
# precision is risky (reductions, exp/log, division). `check` reads the same list.
FP32_OPS = (
    "Resize", "ReduceMean", "ReduceSum", "ReduceL2", "Softmax", "Exp", "Log", "Pow", "Div",
    "Sqrt", "InstanceNormalization", "LayerNormalization", "Range", "CumSum",
)


def implicit_onnx(manifest: dict) -> str:
    """The FP32 ONNX file an implicit-INT8 TensorRT build (and its emulation) reads with calib.cache."""
    return manifest.get("calibration", {}).get(IMPLICIT_KEY) or ARTIFACT_FILES["fp32"]


def engine_name(precision: str) -> str:
    """``model.<precision>.engine``."""
    return ENGINE_FILE.format(precision=precision)


def engine_path(root: str | os.PathLike, precision: str) -> Path:
    """Where the engine of ``precision`` lives in the bundle folder ``root``."""
    return Path(root) / engine_name(precision)


def engine_artifact(precision: str) -> str:
    """The manifest's artifact name of an engine: ``trt-<precision>``."""
    return f"{TRT_PREFIX}{precision}"


def engine_precision(artifact: str) -> str:
    """``fp16`` or ``trt-fp16`` -> ``fp16`` (checked; ``int8-cpu`` is refused by name)."""
    if artifact == CPU_INT8:
        raise MattingDeployError(f"{CPU_INT8}: not a TensorRT artifact (onnxruntime CPU INT8; "
                                 "run it with backend cpu or cuda)")
    precision = artifact[len(TRT_PREFIX):] if artifact.startswith(TRT_PREFIX) else artifact
    if precision not in PRECISIONS:
        raise MattingDeployError(
            f"unknown TensorRT engine '{artifact}' (choose {', '.join(PRECISIONS)}; "
            f"the engine file is {ENGINE_FILE})"
        )
    return precision


def file_artifact(artifact: str) -> str:
    """The artifact whose file ``artifact`` runs: itself, or fp32 for the execution precision bf16."""
    return HINTED.get(artifact, artifact)


def ir_names(artifact: str) -> tuple[str, str]:
    """The OpenVINO IR (``.xml``, ``.bin``) of an ONNX artifact: model.onnx -> model.xml, model.bin;
    model.int8.onnx -> model.int8.xml, ..."""
    stem = ARTIFACT_FILES[artifact].removesuffix(".onnx")
    return f"{stem}.xml", f"{stem}.bin"


def precision_order(artifact: str) -> tuple[int, str]:
    """Sort key: fp32, fp16, int8, int8-cpu, bf16 first, anything else after, by name."""
    order = ARTIFACTS
    return (order.index(artifact) if artifact in order else 9, artifact)


# What a new export makes stale: everything derived from the old model, and (names matching
# DERIVED_PATTERNS) what `build --trtexec` wrote from it.
DERIVED = (INT8_FILE, CPU_INT8_FILE, IMPLICIT_FILE, TRT_CACHE_FILE, CALIB_JSON,
           *(engine_name(p) for p in PRECISIONS), REPORT_DIR, RANGES_CACHE_DIR,
           *(name for a in ARTIFACT_FILES for name in ir_names(a)))
DERIVED_PATTERNS = (TRTEXEC_SCRIPT.format(precision="*", version="*"), RETARGETED_CACHE.format(version="*"))
# What a new calibration makes stale besides the INT8 engine: `build --trtexec`'s INT8 scripts (made
# from the old calib.cache or model.int8.onnx) and calib.cache's re-headed copies.
CALIBRATION_DERIVED_PATTERNS = (TRTEXEC_SCRIPT.format(precision="int8", version="*"),
                                RETARGETED_CACHE.format(version="*"))


def matching(root: str | os.PathLike, listed, patterns) -> list[str]:
    """Names matching ``patterns`` (fnmatch, case-sensitive) among ``listed`` (the manifest's files)
    and the entries of the folder ``root``, sorted."""
    root = Path(root)
    names = set(listed) | ({p.name for p in root.iterdir()} if root.is_dir() else set())
    return sorted(n for n in names if any(fnmatchcase(n, p) for p in patterns))
