"""Check a bundle's artifacts against one TensorRT target: which rules apply to which file, the
table printed for a person and the JSON written for a machine.

What each target builds mirrors :func:`matting_deploy.bundle.trt_plan.plan_build`:

- every target: fp32 engine from model.onnx;
- TensorRT < 10.1 (tensorrt-8.6, tensorrt-10 at 10.0.x): FP16 from model.onnx + FP16 flag, INT8
  implicit from model.onnx + calib.cache;
- TensorRT >= 10.1: INT8 from model.int8.onnx, strongly typed; >= 10.12 (and 11.x) also FP16
  from model.fp16.onnx, strongly typed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from ..bundle.layout import ARTIFACT_FILES as BUNDLE_FILES
from ..bundle.layout import TRT_CACHE_FILE
from . import rules_implicit as imp
from . import rules_parser as parser
from . import rules_qdq as qdq
from .graph import ModelView
from .macs import int8_mac_share
from .result import RuleResult
from .support import Target, resolve_target

ARTIFACT_FILES = {**BUNDLE_FILES, "cache": TRT_CACHE_FILE}


def default_fp32_ops() -> tuple[str, ...]:
    """Ops the FP16 artifacts keep in FP32 by design (the export's FP16 converter's block list; the
    build plan pins the same ops to FP32: :func:`matting_deploy.bundle.trt_plan.fp32_ops`)."""
    from ..bundle.trt_plan import fp32_ops

    return fp32_ops()


@dataclass
class CheckReport:
    target: Target
    results: list[RuleResult] = field(default_factory=list)
    int8_mac_share: dict | None = None

    @property
    def ok(self) -> bool:
        return all(r.ok is not False for r in self.results)

    @property
    def failed(self) -> list[RuleResult]:
        return [r for r in self.results if r.ok is False]

    def to_json(self) -> dict:
        return {"target": self.target.name, "tensorrt": self.target.version_text, "ok": self.ok,
                "int8_mac_share": self.int8_mac_share, "rules": [r.to_dict() for r in self.results]}


def _parser_rules(view: ModelView, target: Target, state_inputs) -> list[RuleResult]:
    return [parser.op_support(view, target), parser.attribute_support(view, target),
            parser.static_shapes(view), parser.state_shapes(view, state_inputs), parser.constant_ratio(view)]


def _qdq_rules(view: ModelView) -> list[RuleResult]:
    return [qdq.dq_int8(view), qdq.zero_points(view), qdq.weight_scale_axis(view),
            qdq.activation_per_tensor(view), qdq.qdq_fusable(view)]


def _skip(why: str) -> RuleResult:
    return RuleResult("trt-artifact", None, [], why)


def check_bundle(
    artifacts: dict[str, onnx.ModelProto],
    target: str,
    *,
    trt_version: str | None = None,
    cache: tuple[str, dict[str, float]] | None = None,
    state_inputs: list[str] | None = None,
    fp32_ops=None,
    int8_layers: set[str] | None = None,
) -> CheckReport:
    """Run every rule that applies to ``artifacts`` ({"fp32"|"fp16"|"int8"|"int8-cpu": model}) and
    ``cache`` ((header, {tensor: scale}) of calib.cache) for ``target`` (optionally a precise
    ``trt_version`` of that line, e.g. 8.5.2). ``int8_layers``: the Convs an implicit build lets
    run INT8 (calib.json's list; `build` pins every other Conv with scales on both sides)."""
    tgt = resolve_target(target, trt_version)
    fp32_ops = default_fp32_ops() if fp32_ops is None else fp32_ops
    report = CheckReport(tgt)
    add = report.results.extend
    views = {k: ModelView(m) for k, m in artifacts.items() if k in ("fp32", "fp16", "int8")}
    trt = f"TensorRT {tgt.version_text}"

    def tagged(name, results):
        for r in results:
            r.artifact = ARTIFACT_FILES.get(name, name)
        return results

    for name in artifacts:
        if name not in views:
            add(tagged(name, [_skip("not a TensorRT artifact (onnxruntime CPU recipe); not checked")]))
    if "fp32" in views:
        add(tagged("fp32", _parser_rules(views["fp32"], tgt, state_inputs)))
    if "fp16" in views:
        if tgt.strongly_typed_fp16:
            add(tagged("fp16", [*_parser_rules(views["fp16"], tgt, state_inputs),
                                qdq.fp16_outside_qdq(views["fp16"], fp32_ops, state_inputs)]))
        else:
            add(tagged("fp16", [_skip(f"{trt} builds FP16 from model.onnx with the FP16 flag; "
                                      "this file is not used")]))
    if "int8" in views:
        if tgt.strongly_typed_int8:
            add(tagged("int8", [*_parser_rules(views["int8"], tgt, state_inputs), *_qdq_rules(views["int8"]),
                                qdq.fp16_outside_qdq(views["int8"], fp32_ops, state_inputs)]))
            report.int8_mac_share = int8_mac_share(views["int8"])
        else:
            add(tagged("int8", [_skip(f"{trt} builds INT8 implicitly from model.onnx + calib.cache; "
                                      "this file only names the intended INT8 Convs")]))
    report.results.extend(_cache_rules(tgt, views, cache, tagged, int8_layers))
    if tgt.implicit_int8 and cache is not None and "fp32" in views:
        report.int8_mac_share = int8_mac_share(views["fp32"], cache[1])
    return report


def _cache_rules(tgt: Target, views: dict, cache, tagged, int8_layers=None) -> list[RuleResult]:
    trt = f"TensorRT {tgt.version_text}"
    if not tgt.implicit_int8:
        if cache is None:
            return []
        why = ("TensorRT 11 has no implicit INT8 (calibrators removed); not used" if tgt.version[0] >= 11
               else f"{trt} builds INT8 from model.int8.onnx (explicit Q/DQ); not used")
        return tagged("cache", [_skip(why)])
    if cache is None:
        if "int8" in views:
            return tagged("cache", [RuleResult("cache-header", False, ["calib.cache"],
                                               f"missing: implicit INT8 on {trt} reads its scales from it")])
        return []
    header, scales = cache
    out = [imp.cache_header(header, tgt)]
    if "fp32" not in views:
        return tagged("cache", out + [RuleResult("cache-coverage", None, [], "model.onnx not given")])
    intended = imp.intended_int8_convs(views["int8"]) if "int8" in views else None
    out.append(imp.cache_coverage(views["fp32"], scales, intended))
    if intended is not None:
        convs = {n.name for n in views["fp32"].nodes if n.op_type in imp.CONVS}
        pinned = frozenset() if int8_layers is None else convs - set(int8_layers)
        out.append(imp.cache_stray(views["fp32"], scales, intended, pinned))
    return tagged("cache", out)


def render_table(report: CheckReport, max_nodes: int = 4) -> str:
    """The rules table: artifact, rule, pass/FAIL/n/a, offending nodes (first few), detail."""
    t = report.target
    int8 = ("implicit INT8: model.onnx + calib.cache" if t.implicit_int8
            else "INT8: model.int8.onnx (Q/DQ), strongly typed")
    lines = [f"TensorRT target {t.name} ({t.version_text}; ONNX parser table {t.table}; {int8})"]
    rows = [("artifact", "rule", "result", "offending nodes", "detail")]
    for r in report.results:
        nodes = ", ".join(r.nodes[:max_nodes]) + (f" (+{len(r.nodes) - max_nodes} more)"
                                                    if len(r.nodes) > max_nodes else "")
        rows.append((r.artifact, r.rule, r.status, nodes or "-", r.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    widths.append(min(60, max(len(row[3]) for row in rows)))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=False)) + "  " + row[4])
    share = report.int8_mac_share
    if share:
        lines.append(f"INT8 convolution MACs ({share['mode']}): {share['share']:.1%} "
                     f"({share['int8_convs']} of {share['convs']} Convs)")
    lines.append("all rules pass" if report.ok else f"{len(report.failed)} rule(s) fail")
    return "\n".join(lines)
