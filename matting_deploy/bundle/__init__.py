"""The bundle: the one owner of the artifact contract (file names, engine paths, manifest, caches)."""

from .layout import (
    ARTIFACT_FILES,
    BUNDLE_FORMAT,
    CALIB_JSON,
    CPU_INT8,
    CPU_INT8_FILE,
    DERIVED,
    ENGINE_FILE,
    IMPLICIT_FILE,
    IMPLICIT_KEY,
    INT8_FILE,
    MANIFEST,
    PRECISIONS,
    REPORT_DIR,
    TRT_CACHE_FILE,
    TRT_PREFIX,
    engine_artifact,
    engine_name,
    engine_path,
    engine_precision,
    implicit_onnx,
)
from .manifest import Bundle, StateSpec, new_manifest

__all__ = [
    "ARTIFACT_FILES", "BUNDLE_FORMAT", "CALIB_JSON", "CPU_INT8", "CPU_INT8_FILE", "DERIVED", "ENGINE_FILE",
    "IMPLICIT_FILE", "IMPLICIT_KEY", "INT8_FILE", "MANIFEST", "PRECISIONS",
    "REPORT_DIR", "TRT_CACHE_FILE", "TRT_PREFIX", "Bundle", "StateSpec", "engine_artifact", "engine_name",
    "engine_path", "engine_precision", "implicit_onnx", "new_manifest",
]
