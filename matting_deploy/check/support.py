"""TensorRT targets and the facts the rules check against, read from ``tensorrt_support.json``.

The JSON file is data, each part with its source and date: the ONNX parser's operator tables
(onnx-tensorrt ``docs/operators.md`` at the commit each TensorRT release pins), attribute limits,
quantization facts (``NvInfer.h``, the parser's Q/DQ importer, NVIDIA ModelOpt) and the calibration
cache header. :func:`parse_operators_md` turns a new ``operators.md`` into a table for that file
(tests/test_parser_rules.py regenerates the stored 8.6 and 10.1 tables from the real files). Where an
importer's code is stricter or looser than its row (Resize cubic, InstanceNormalization initializers,
positive Q/DQ scales), the ``attributes``/``quantization`` sections say so with file, commit and line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ..bundle.trt_cache import cache_version_code, parse_version
from ..bundle.trt_plan import EXPLICIT_INT8, FP16_STRONGLY_TYPED
from ..errors import MattingDeployError

DATA_FILE = "tensorrt_support.json"
TARGETS = ("tensorrt-8.6", "tensorrt-10", "tensorrt-11")


@lru_cache(maxsize=1)
def support_data() -> dict:
    """The parsed ``tensorrt_support.json`` (cached)."""
    text = resources.files(__package__).joinpath(DATA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


@dataclass(frozen=True)
class Target:
    """One TensorRT version as the check sees it: which parser table, which build recipe."""

    name: str  # tensorrt-8.6 | tensorrt-10 | tensorrt-11
    version: tuple[int, int, int]
    table: str  # key of the operator table in the data file

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def implicit_int8(self) -> bool:
        """INT8 built from model.onnx + calib.cache (TensorRT < 10.1, as the build plan says)."""
        return self.version[:2] < EXPLICIT_INT8

    @property
    def strongly_typed_int8(self) -> bool:
        """INT8 built from the Q/DQ model.int8.onnx as a strongly typed network (>= 10.1)."""
        return not self.implicit_int8

    @property
    def strongly_typed_fp16(self) -> bool:
        """FP16 built from model.fp16.onnx as a strongly typed network (from 10.12, where the FP16
        flag is deprecated; 11.x has none): the build plan's rule."""
        return self.version[:2] >= FP16_STRONGLY_TYPED

    @property
    def cache_code(self) -> int:
        """The version number TensorRT writes in a calibration cache header (``TRT-<code>-...``)."""
        return cache_version_code(self.version)

    def ops(self) -> dict:
        return support_data()["parser_tables"][self.table]["ops"]

    def opset_range(self) -> tuple[int | None, int]:
        lo, hi = support_data()["parser_tables"][self.table]["opset"]
        return lo, hi


def _table_for(version: tuple[int, int, int]) -> str:
    for rule in support_data()["version_tables"]:
        if tuple(rule["from"]) <= version < tuple(rule["until"]):
            return rule["table"]
    raise MattingDeployError(f"no ONNX parser table for TensorRT {'.'.join(map(str, version))}")


def resolve_target(name: str, version: str | None = None) -> Target:
    """The :class:`Target` for ``tensorrt-8.6|tensorrt-10|tensorrt-11``, optionally a precise version.

    ``version`` must belong to the named line (e.g. 8.5.2 for tensorrt-8.6, JetPack 5.1).
    """
    defaults = support_data()["targets"]
    if name not in defaults:
        raise MattingDeployError(f"unknown target '{name}' (choose {', '.join(TARGETS)})")
    spec = defaults[name]
    ver = parse_version(version if version is not None else spec["default_version"])
    lo, hi = tuple(spec["versions"][0]), tuple(spec["versions"][1])
    if not lo <= ver < hi:
        raise MattingDeployError(
            f"TensorRT {'.'.join(map(str, ver))} is not in the {name} line "
            f"({'.'.join(map(str, lo))} up to {'.'.join(map(str, hi))})")
    return Target(name, ver, _table_for(ver))


def target_for_version(version: str) -> Target:
    """The :class:`Target` of the line a TensorRT version belongs to (8.5.2 -> tensorrt-8.6)."""
    major = parse_version(version)[0]
    name = {8: "tensorrt-8.6", 10: "tensorrt-10", 11: "tensorrt-11"}.get(major)
    if name is None:
        raise MattingDeployError(f"TensorRT {version} is not a version checked here ({', '.join(TARGETS)})")
    return resolve_target(name, version)


def parse_operators_md(text: str) -> dict:
    """onnx-tensorrt ``docs/operators.md`` -> {op: {supported, types, restrictions}} and its opset range."""
    ops: dict[str, dict] = {}
    for line in text.splitlines():
        if not line.startswith("|") or line.startswith("|--"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not cells or cells[0] in ("Operator", "") or len(cells) < 2:
            continue
        cells += [""] * (4 - len(cells))
        supported = cells[1].split()[0] == "Y" if cells[1] else False
        types, restrictions = cells[2], " ".join(c for c in cells[3:] if c).strip()
        if not supported:  # 'N' rows sometimes put their note in the types column
            types, restrictions = "", " ".join(x for x in (types, restrictions) if x)
        ops[cells[0]] = {
            "supported": supported,
            "types": [t.strip() for t in types.split(",") if t.strip()],
            "restrictions": restrictions,
        }
    opset = [None, None]
    m = re.search(r"opset (\d+) to opset (\d+)", text, re.IGNORECASE)
    if m:
        opset = [int(m.group(1)), int(m.group(2))]
    else:
        m = re.search(r"up to Opset (\d+)", text, re.IGNORECASE)
        if m:
            opset = [None, int(m.group(1))]
    return {"opset": opset, "ops": ops}
