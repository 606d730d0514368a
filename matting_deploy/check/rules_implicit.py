"""Rules for implicit INT8 (TensorRT 8.5/8.6/10.0): model.onnx + calib.cache scales.

A layer runs INT8 only when the tensors it consumes and produces have scales: TensorRT warns
"Missing scale ... expect fall back to non-int8 implementation for any layer consuming or
producing given tensor". A Conv fuses the activation that follows it, so the fused layer's
output is the activation's output (:func:`fused_output`).
"""

from __future__ import annotations

import re

from .graph import ModelView, label
from .result import Model, RuleResult, as_target, as_view, verdict
from .rules_qdq import is_weight_dq
from .support import Target, support_data

CONVS = ("Conv", "ConvTranspose")
HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")


def cache_header(header: str, target: str | Target) -> RuleResult:
    """The header names this TensorRT version (``TRT-<NV_TENSORRT_VERSION>-<calibrator>``) and a
    calibrator the build can read; TensorRT skips a cache made for another version."""
    tgt = as_target(target)
    algorithms = support_data()["calibration_cache"]["algorithms"]
    m = HEADER.match(header.strip())
    if m and int(m.group(1)) == tgt.cache_code and m.group(2) in algorithms:
        return RuleResult("cache-header", True, [], f"{header.strip()} = TensorRT {tgt.version_text}")
    return RuleResult("cache-header", False, [header.strip()],
                      f"TensorRT {tgt.version_text} reads only a cache headed TRT-{tgt.cache_code}-<calibrator> "
                      f"({', '.join(algorithms)}); it would skip this one as it is. `matting-deploy build` "
                      f"re-heads it for the TensorRT it runs; for trtexec --calib or your own builder run "
                      f"`calibrate --int8 --trt-version {tgt.version_text} --force` with the same --data "
                      f"(it reuses the cached ranges)")


def fused_output(view: ModelView, conv) -> list[str]:
    """The tensors from ``conv``'s output to the end of the activation TensorRT fuses into it:
    a chain of single-consumer activations, and x * HardSigmoid(x) (hard-swish)."""
    epilogue = set(support_data()["conv_fusion"]["epilogue"])
    chain = [conv.output[0]]
    while True:
        t = chain[-1]
        users = view.consumers.get(t, [])
        if t in view.outputs:
            break
        if len(users) == 1 and users[0].op_type in epilogue:
            chain.append(users[0].output[0])
            continue
        if len(users) == 2:
            hs = next((u for u in users if u.op_type == "HardSigmoid"), None)
            mul = next((u for u in users if u.op_type == "Mul"), None)
            if hs is not None and mul is not None and set(mul.input) == {t, hs.output[0]}:
                chain.append(mul.output[0])
                continue
        break
    return chain


def intended_int8_convs(qdq_model: Model) -> set[str]:
    """Names of the Convs a Q/DQ model quantizes (activation DQ on the input, weight DQ on W)."""
    view = as_view(qdq_model)
    out = set()
    for n in view.nodes:
        if n.op_type in CONVS and len(n.input) > 1:
            dqs = [view.producer.get(t) for t in n.input[:2]]
            if all(d is not None and d.op_type == "DequantizeLinear" for d in dqs) and is_weight_dq(view, dqs[1]):
                out.add(n.name)
    return out


def runs_int8(view: ModelView, conv, scales: dict[str, float]) -> tuple[bool, list[str]]:
    """(runs INT8, the sides lacking a scale) for ``conv`` under implicit quantization: its input,
    its output after the activation TensorRT may fuse into it, and its raw output (what it writes
    when TensorRT does not fuse), so the Conv runs INT8 whether or not it is fused."""
    missing = []
    if conv.input[0] not in scales:
        missing.append("input")
    chain = fused_output(view, conv)
    if chain[-1] not in scales:
        missing.append("output" if len(chain) == 1 else f"fused output {chain[-1]}")
    if len(chain) > 1 and chain[0] not in scales:
        missing.append(f"raw output {chain[0]}")
    return not missing, missing


def cache_coverage(model: Model, scales: dict[str, float], intended: set[str] | None = None) -> RuleResult:
    """Every Conv meant to run INT8 has scales on its input and on its (fused) output.

    ``intended``: Conv names from the Q/DQ model (:func:`intended_int8_convs`); by default the
    Convs whose input has a scale (what the cache itself suggests)."""
    view = as_view(model)
    convs = {n.name: n for n in view.nodes if n.op_type in CONVS}
    if intended is None:
        intended = {name for name, n in convs.items() if n.input[0] in scales}
    bad, absent, no_input, no_output = [], 0, 0, 0
    for name in sorted(intended):
        conv = convs.get(name)
        if conv is None:
            bad.append(name)
            absent += 1
            continue
        ok, missing = runs_int8(view, conv, scales)
        if not ok:
            bad.append(name)
            no_input += "input" in missing
            no_output += any(m != "input" for m in missing)
    detail = (f"{len(bad)} of {len(intended)} intended INT8 Convs would not run INT8: "
              f"{no_input} lack an input scale, {no_output} an output scale"
              + (f", {absent} not in this model" if absent else ""))
    return verdict("cache-coverage", bad, detail, f"{len(intended)} intended INT8 Convs covered")


def cache_stray(model: Model, scales: dict[str, float], intended: set[str],
                pinned: set[str] | frozenset = frozenset()) -> RuleResult:
    """No Conv that the recipe keeps in float has scales on both sides, unless the build pins its
    precision (``pinned``: the Convs `build` gives a float precision constraint)."""
    view = as_view(model)
    stray = [n for n in view.nodes
             if n.op_type in CONVS and n.name not in intended and runs_int8(view, n, scales)[0]]
    bad = [label(n) for n in stray if n.name not in pinned]
    held = len(stray) - len(bad)
    note = f"{held} Conv(s) outside the recipe have scales on both sides; build pins them to FP16" if held else ""
    return verdict("cache-stray-int8", bad, f"{len(bad)} Conv(s) outside the recipe would run INT8"
                   + (f"; {note}" if note else ""), note)
