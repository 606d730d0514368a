"""The bundle: the one owner of the artifact contract (file names, engine paths, manifest, caches)."""

from .layout import (
    ARTIFACT_FILES,
    ARTIFACTS,
    BF16,
    BUNDLE_FORMAT,
    CALIB_JSON,
    CPU_INT8,
    CPU_INT8_FILE,
    DERIVED,
    ENGINE_FILE,
    HINTED,
    IMPLICIT_FILE,
    IMPLICIT_KEY,
    INT8_FILE,
    MANIFEST,
    OPENVINO,
    OPENVINO_QDQ,
    PRECISIONS,
    REPORT_DIR,
    TRT_CACHE_FILE,
    TRT_PREFIX,
    engine_artifact,
    engine_name,
    engine_path,
    engine_precision,
    file_artifact,
    implicit_onnx,
    ir_names,
)
from .manifest import Bundle, StateSpec, new_manifest

__all__ = [
    "ARTIFACT_FILES", "ARTIFACTS", "BF16", "HINTED", "OPENVINO", "OPENVINO_QDQ", "file_artifact", "ir_names",
    "BUNDLE_FORMAT", "CALIB_JSON", "CPU_INT8", "CPU_INT8_FILE", "DERIVED", "ENGINE_FILE",
    "IMPLICIT_FILE", "IMPLICIT_KEY", "INT8_FILE", "MANIFEST", "PRECISIONS",
    "REPORT_DIR", "TRT_CACHE_FILE", "TRT_PREFIX", "Bundle", "StateSpec", "engine_artifact", "engine_name",
    "engine_path", "engine_precision", "implicit_onnx", "new_manifest",
]
