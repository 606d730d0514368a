"""One rule's verdict, and the plain inputs every rule accepts."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from .graph import ModelView
from .support import Target, resolve_target

Model = onnx.ModelProto | ModelView  # every rule takes either; a ModelView saves re-inferring shapes

# rule id -> title shown in the table (the order is the table's order)
TITLES = {
    "trt-artifact": "a TensorRT artifact for this target",
    "parser-ops": "every op and input type in the target's ONNX parser table, opset in range",
    "parser-attrs": "attributes and constant inputs the parser requires",
    "static-shapes": "static shapes (no symbolic dims on inputs/outputs)",
    "state-shapes": "real recurrent-state shapes (no [1,1,1,1] placeholders)",
    "constant-ratio": "constant downsample ratio (no ratio input, Resize scales constant)",
    "dq-int8": "DequantizeLinear inputs are INT8",
    "qdq-zero-point": "Q/DQ zero points are constant zeros",
    "weight-scale-axis": "weight scales per tensor or per output channel (Conv axis 0, ConvTranspose axis 1)",
    "activation-per-tensor": "activation scales per tensor",
    "qdq-fusable": "every Q/DQ pair in a place TensorRT fuses",
    "fp16-outside-qdq": "FP16 outside Q/DQ (strongly typed: layers run in their ONNX types)",
    "cache-header": "calib.cache header for this TensorRT version",
    "cache-coverage": "calib.cache scales on both sides of every intended INT8 Conv",
    "cache-stray-int8": "no Conv outside the recipe gets INT8 from calib.cache",
}


@dataclass
class RuleResult:
    """ok: True pass, False fail, None not applicable (the detail says why)."""

    rule: str
    ok: bool | None
    nodes: list[str] = field(default_factory=list)
    detail: str = ""
    artifact: str = ""

    @property
    def title(self) -> str:
        return TITLES.get(self.rule, self.rule)

    @property
    def status(self) -> str:
        return {True: "pass", False: "FAIL", None: "n/a"}[self.ok]

    def to_dict(self) -> dict:
        return {"artifact": self.artifact, "rule": self.rule, "title": self.title, "status": self.status,
                "ok": self.ok, "nodes": list(self.nodes), "detail": self.detail}


def verdict(rule: str, offending, detail_fail: str, detail_pass: str = "") -> RuleResult:
    """Pass when ``offending`` is empty, else fail naming the offending nodes (order kept, no repeats)."""
    nodes = list(dict.fromkeys(offending))
    return RuleResult(rule, not nodes, nodes, detail_fail if nodes else detail_pass)


def as_view(model: onnx.ModelProto | ModelView) -> ModelView:
    return model if isinstance(model, ModelView) else ModelView(model)


def as_target(target: str | Target, version: str | None = None) -> Target:
    return target if isinstance(target, Target) else resolve_target(target, version)
