"""The TensorRT build plan: for a bundle, a precision and a TensorRT version, which ONNX file is
parsed, which builder flags are set and which layers get which precision constraints. Pure Python
(no TensorRT): ``runtimes/trt_build.py`` applies it to a parsed network, ``runtimes/trtexec.py``
renders it as a trtexec command line. This module is the one owner of both.

============  =============================================  ====================================
precision     TensorRT 8.5 / 8.6 / 10.0                      later
============  =============================================  ====================================
fp32          model.onnx, TF32 off                           same
fp16          model.onnx + FP16 flag, FP32 layers pinned     >= 10.12 (FP16 flag deprecated) and
              (obey precision constraints)                   11.x: model.fp16.onnx, strongly typed
int8          model.onnx + INT8 + FP16 flags, calib.cache,   >= 10.1: model.int8.onnx (Q/DQ),
              the layer constraints below                    strongly typed
============  =============================================  ====================================

Layer constraints of a weakly typed build (layer names are the ONNX node names TensorRT's ONNX
parser gives the layers it makes for each node; :func:`layer_names` has the parser's rule):

- FP32 layers (the ops both FP16 artifacts keep in FP32, :func:`fp32_ops`, and the recurrent-state
  update, :func:`recurrent_nodes`): precision FP32 and FP32 outputs, every layer of the node;
- implicit INT8 only: calib.json's Convs precision INT8 with an FP16 output (FP32 inside the
  recurrent update), the heterogeneous Conv the developer guide documents (INT8 input, float
  output); any other layer that could run INT8 (every float tensor it reads and writes has a scale):
  a Conv gets precision FP16, any other layer an FP16 output type only. No constraint is a
  precision on a layer TensorRT fuses into an INT8 Conv, so a fused Conv + activation cannot meet
  two precisions; an FP16 output type keeps the activation's output out of INT8 fused or not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from ..errors import MattingDeployError
from .layout import ARTIFACT_FILES, FP32_OPS, PRECISIONS, TRT_CACHE_FILE, engine_name, implicit_onnx
from .trt_cache import cache_version_code, int8_outputs, parse_version, read_cache

FLOAT = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
CONVS = ("Conv", "ConvTranspose")
FP16_STRONGLY_TYPED = (10, 12)  # BuilderFlag::kFP16 "Deprecated in TensorRT 10.12. Superseded by strong typing."
EXPLICIT_INT8 = (10, 1)  # implicit INT8 (calibrators) deprecated from 10.1
# The bundle artifact implicit INT8 (and weakly typed FP16) parses: the one place to change if
# calibrate names another FP32 ONNX for it (e.g. with adjusted weights); its file is the manifest's.
IMPLICIT_SOURCE = "fp32"


def fp32_ops() -> tuple[str, ...]:
    """The op types both FP16 artifacts keep in FP32: onnxconverter-common's default block list
    plus :data:`~.layout.FP32_OPS` (export/fp16.py converts with both)."""
    from onnxconverter_common import float16

    return tuple(sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS)))


@dataclass(frozen=True)
class LayerRule:
    """Constraints on the layers TensorRT makes for one ONNX node (``node``)."""

    node: str
    op_type: str
    precision: str | None  # fp32 / fp16 / int8, None: free
    output_type: str | None
    why: str  # int8-conv, fp32-op, recurrent-update, float-conv, float-output


@dataclass(frozen=True)
class BuildPlan:
    """How ``build`` (and the trtexec line) builds one precision with one TensorRT version."""

    precision: str
    artifact: str  # the bundle artifact parsed (fp32 / fp16 / int8)
    onnx_file: str
    mode: str  # human-readable recipe, recorded in the manifest
    trt_version: str
    flags: tuple[str, ...] = ()  # BuilderFlag names set (FP16, INT8)
    strongly_typed: bool = False
    calib_cache: bool = False
    tf32: bool = False  # TF32 is cleared: FP32 layers compute FP32, as the artifacts and emulation do
    rules: tuple[LayerRule, ...] = ()
    nodes: frozenset[str] = field(default_factory=frozenset)  # every node name of the parsed ONNX

    @property
    def obey(self) -> bool:
        """OBEY_PRECISION_CONSTRAINTS: set whenever a layer is constrained."""
        return bool(self.rules)

    @property
    def engine_file(self) -> str:
        return engine_name(self.precision)

    def rule_of(self, node: str) -> LayerRule | None:
        return next((r for r in self.rules if r.node == node), None)

    def int8_convs(self) -> list[str]:
        return [r.node for r in self.rules if r.why == "int8-conv"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rules:
            out[r.why] = out.get(r.why, 0) + 1
        return out


def version_tuple(version: str) -> tuple[int, int]:
    parts = (str(version).split(".") + ["0", "0"])[:2]
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except ValueError:
        raise MattingDeployError(f"cannot parse the TensorRT version '{version}'") from None


def layer_names(node: str, plan_nodes: frozenset[str], layer: str) -> bool:
    """Whether TensorRT's ONNX parser named ``layer`` for the ONNX node ``node``: the first layer a
    node makes takes its name, each further one (HardSwish: HardSigmoid then a product) the name
    plus ``_<n>``, n a counter shared by the whole parse (onnx-tensorrt ImporterContext::registerLayer
    and generateUniqueName, 8.5-GA ... 10.x). A name that is itself a node's belongs to that node."""
    if layer == node:
        return True
    m = re.fullmatch(r"(.+)_\d+", layer)
    return m is not None and m.group(1) == node and layer not in plan_nodes


def parser_name(node) -> str:
    """The layer name TensorRT's ONNX parser gives a node's (first) layer: its name, or
    ``node_of_<first output>`` when it has none (onnx-tensorrt ``getNodeName``, 8.5-GA ... 10.x)."""
    return node.name if node.name or not node.output else f"node_of_{node.output[0]}"


def _unique(model: onnx.ModelProto, rules: list[LayerRule]) -> None:
    """A constrained layer must keep its node's name: the parser renames a layer whose name another
    layer took first (a node of the same name, or a weight made a constant layer of that name)."""
    seen: dict[str, int] = {}
    for n in model.graph.node:
        seen[parser_name(n)] = seen.get(parser_name(n), 0) + 1
    weights = {i.name for i in model.graph.initializer}
    clash = [r.node for r in rules if seen.get(r.node, 0) > 1 or r.node in weights]
    if clash:
        raise MattingDeployError(
            f"ONNX node '{clash[0]}' shares its name with another node or a weight: TensorRT's parser would rename "
            f"its layer and the build could not constrain it ({len(clash)} such); give the nodes unique names")


def recurrent_nodes(model: onnx.ModelProto, states) -> set[str]:
    """Nodes on a path from a state input to its own state output (RVM's recurrent update, which
    model.int8.onnx keeps FP32); ``states``: StateSpecs or (input, output) pairs."""
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out: set[str] = set()
    for state in states:
        src, dst = (state.input, state.output) if hasattr(state, "input") else state
        down, todo = set(), [src]
        while todo:
            for n in consumers.get(todo.pop(), []):
                if n.name not in down:
                    down.add(n.name)
                    todo.extend(n.output)
        up, todo = set(), [dst]
        while todo:
            n = producer.get(todo.pop())
            if n is not None and n.name not in up:
                up.add(n.name)
                todo.extend(n.input)
        out |= down & up
    return out


def _types(model: onnx.ModelProto) -> dict[str, int]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001  (onnx raises several types; fall back to declared types)
        inferred = model
    g = inferred.graph
    return {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)}


def layer_rules(model: onnx.ModelProto, states, scales: dict[str, float] | None = None,
                int8: dict[str, str] | None = None) -> list[LayerRule]:
    """The constraints of a weakly typed build of ``model``: FP32 layers always; with ``scales``
    (the cache) and ``int8`` ({INT8 Conv: fused output}) the implicit INT8 ones too."""
    types = _types(model)
    constant = {i.name for i in model.graph.initializer}
    constant |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    keep32, ops32 = recurrent_nodes(model, states), set(fp32_ops())
    rules = []
    for n in model.graph.node:
        if n.op_type in ("Constant", "Shape"):
            continue
        ins = [t for t in n.input if t and t not in constant and types.get(t, FLOAT[0]) in FLOAT]
        outs = [t for t in n.output if t and types.get(t, FLOAT[0]) in FLOAT]
        if not outs:
            continue
        in32, name = n.name in keep32, parser_name(n)
        if int8 is not None and n.name in int8:
            rules.append(LayerRule(name, n.op_type, "int8", "fp32" if in32 else "fp16", "int8-conv"))
        elif n.op_type in ops32 or in32:
            rules.append(LayerRule(name, n.op_type, "fp32", "fp32", "fp32-op" if n.op_type in ops32
                                   else "recurrent-update"))
        elif scales is not None and ins and all(t in scales for t in ins):
            if n.op_type in CONVS:  # an INT8-input Conv may write float: its precision must be pinned
                rules.append(LayerRule(name, n.op_type, "fp16", None, "float-conv"))
            elif all(t in scales for t in outs):
                rules.append(LayerRule(name, n.op_type, None, "fp16", "float-output"))
    _unique(model, rules)
    return rules


def plan_build(bundle, precision: str, trt_version: str, rules: bool = True) -> BuildPlan:
    """The plan for ``precision`` under TensorRT ``trt_version``; checks the bundle has what it
    needs (``rules=False``: flags and files only, no ONNX read)."""
    if precision not in PRECISIONS:
        raise MattingDeployError(f"unknown precision '{precision}' (choose {', '.join(PRECISIONS)})")
    if bundle.dynamic:
        raise MattingDeployError(
            f"{bundle.root}: TensorRT engines are built from static bundles (shapes and "
            "downsample_ratio fixed); export again without --dynamic")
    ver = version_tuple(trt_version)
    if precision == "fp32":
        kw = dict(artifact="fp32", mode="fp32 (TF32 off)")
    elif precision == "fp16" and ver >= FP16_STRONGLY_TYPED:
        kw = dict(artifact="fp16", mode="strongly typed model.fp16.onnx (FP16 flag deprecated from 10.12)",
                  strongly_typed=True)
    elif precision == "fp16":
        kw = dict(artifact=IMPLICIT_SOURCE, mode="FP16 flag on model.onnx, FP32 layers pinned", flags=("FP16",))
    elif ver >= EXPLICIT_INT8:
        kw = dict(artifact="int8", mode="explicit INT8: Q/DQ model.int8.onnx, strongly typed", strongly_typed=True)
    else:
        kw = dict(artifact=IMPLICIT_SOURCE, mode="implicit INT8: INT8+FP16 flags, scales from calib.cache, "
                  "INT8 Convs and FP32 layers constrained", flags=("INT8", "FP16"), calib_cache=True)
    if kw["artifact"] not in bundle.artifacts:
        how = {"fp16": "export with --fp16", "int8": "run 'matting-deploy calibrate --int8'"}
        raise MattingDeployError(
            f"{bundle.root}: {precision} with TensorRT {trt_version} needs the '{kw['artifact']}' artifact "
            f"({ARTIFACT_FILES[kw['artifact']]}): {how.get(kw['artifact'], 'export the bundle again')}")
    # implicit INT8 parses the FP32 file calibrate names for it (model.onnx, or its lever-adjusted copy)
    onnx_file = implicit_onnx(bundle.manifest) if kw.get("calib_cache") else bundle.artifacts[kw["artifact"]]
    if kw.get("calib_cache") and not (bundle.root / TRT_CACHE_FILE).is_file():
        raise MattingDeployError(f"{bundle.root / TRT_CACHE_FILE}: missing; implicit INT8 (TensorRT < 10.1) "
                                 "reads its scales from it: run 'matting-deploy calibrate --int8'")
    plan = BuildPlan(precision, onnx_file=onnx_file, trt_version=str(trt_version), **kw)
    if not rules or not plan.flags:
        return plan
    model = onnx.load(str(bundle.file_path(plan.onnx_file)), load_external_data=False)
    scales = int8 = None
    if plan.calib_cache:
        scales = read_cache(bundle.file_path(TRT_CACHE_FILE)).scales
        int8 = implicit_int8_convs(bundle.root, model, scales)
    found = layer_rules(model, bundle.states, scales, int8)
    return BuildPlan(**{**plan.__dict__, "rules": tuple(found),
                        "nodes": frozenset(parser_name(n) for n in model.graph.node)})


def implicit_int8_convs(root: Path, model: onnx.ModelProto, scales: dict[str, float]) -> dict[str, str]:
    """calib.json's INT8 Convs ({conv: fused output}), each with scales on its input, raw output and
    fused output in the cache (else the Conv would silently run in float)."""
    from .layout import CALIB_JSON

    layers = int8_outputs(root)
    if layers is None:
        raise MattingDeployError(f"{Path(root) / CALIB_JSON}: no list of INT8 layers (made by an older "
                                 "calibrate?): run 'matting-deploy calibrate --int8 --force' again")
    nodes = {n.name: n for n in model.graph.node}
    for conv, fused in layers.items():
        node = nodes.get(conv)
        if node is None or node.op_type not in CONVS:
            raise MattingDeployError(f"{Path(root) / CALIB_JSON}: INT8 Conv '{conv}' is not a Conv of "
                                     "the implicit build's FP32 ONNX (calibrated for another model?)")
        missing = [t for t in (node.input[0], node.output[0], fused) if t not in scales]
        if missing:
            raise MattingDeployError(
                f"{Path(root) / TRT_CACHE_FILE}: no scale for '{missing[0]}' of INT8 Conv '{conv}' (a cache "
                "from an older calibrate lacks the raw Conv outputs): run 'matting-deploy calibrate --int8 --force'")
    return layers


def cache_code(trt_version: str) -> int:
    """The calibration cache header code TensorRT ``trt_version`` reads."""
    return cache_version_code(parse_version(trt_version))
