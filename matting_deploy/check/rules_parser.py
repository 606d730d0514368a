"""Rules about what TensorRT's ONNX parser accepts: ops, types, attributes, shapes, constants."""

from __future__ import annotations

from .graph import FLOAT_TYPES, TYPE_NAMES, ModelView, attr, label
from .result import Model, RuleResult, as_target, as_view, verdict
from .support import Target, support_data


def _type_name(elem_type: int, target: Target) -> str:
    """The operators.md name of an ONNX type as the parser treats it (DOUBLE is cast to FP32;
    8.x casts INT64 down to INT32: its tables' note on limited INT64 support)."""
    name = TYPE_NAMES.get(elem_type, str(elem_type))
    if name == "DOUBLE":
        return "FP32"
    if name == "INT64" and target.version[0] < 9:
        return "INT32"
    return name


def op_support(model: Model, target: str | Target) -> RuleResult:
    """Every node's op is marked supported in the target's parser table, its float data input has a
    listed type, and the model's opset is in the range the table states."""
    view, tgt = as_view(model), as_target(target)
    table, (lo, hi) = tgt.ops(), tgt.opset_range()
    bad, why = [], {}
    if (lo is not None and view.opset < lo) or view.opset > hi:
        bad.append(f"model (opset {view.opset})")
        why["opset"] = f"opset {view.opset} outside {lo or 1}..{hi}"
    for node in view.nodes:
        row = table.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if row is None or not row["supported"]:
            bad.append(label(node))
            domain = f"{node.domain}." if node.domain not in ("", "ai.onnx") else ""
            why.setdefault(f"{domain}{node.op_type}", f"{domain}{node.op_type} not supported")
            continue
        first = node.input[0] if node.input else ""
        etype = view.elem_type(first) if first else None
        if etype in FLOAT_TYPES and row["types"]:
            name = _type_name(etype, tgt)
            if name not in row["types"]:
                bad.append(label(node))
                why.setdefault(f"{node.op_type}:{name}", f"{node.op_type} on {name} (table: {', '.join(row['types'])})")
    commit = support_data()["parser_tables"][tgt.table]["commit"][:12]
    where = f"onnx-tensorrt operators.md @{commit} (TensorRT {tgt.table} table)"
    return verdict("parser-ops", bad, "; ".join(why.values()) + f" [{where}]", where)


def _resize_problems(view: ModelView, node) -> list[str]:
    spec = support_data()["attributes"]["Resize"]
    out = []
    for name, allowed in spec["allowed"].items():
        value = attr(node, name, spec["defaults"][name])
        if value not in allowed:
            out.append(f"{name}={value}")
    return out


def _pad_problems(view: ModelView, node, target: Target) -> list[str]:
    spec = support_data()["attributes"]["Pad"]
    allowed = spec["allowed_by_major"][str(min(max(target.version[0], 8), 11))]["mode"]
    mode = attr(node, "mode", spec["defaults"]["mode"])
    return [] if mode in allowed else [f"mode={mode}"]


def _constant_input_problems(view: ModelView, node, target: Target) -> list[str]:
    row = target.ops().get(node.op_type, {})
    text = row.get("restrictions", "")
    out = []
    for name, by_op in support_data()["attributes"]["constant_inputs"].items():
        if name == "note" or node.op_type not in by_op or f"`{name}`" not in text:
            continue
        idx = by_op[node.op_type]
        if len(node.input) > idx and node.input[idx] and not view.is_constant(node.input[idx]):
            out.append(f"{name} input '{node.input[idx]}' not constant")
    return out


def _cast_problems(view: ModelView, node, target: Target) -> list[str]:
    types = target.ops().get("Cast", {}).get("types", [])
    to = attr(node, "to")
    name = _type_name(to, target) if to is not None else None
    return [] if name is None or not types or name in types else [f"to={TYPE_NAMES.get(to, to)}"]


def attribute_support(model: Model, target: str | Target) -> RuleResult:
    """Resize modes, Pad mode, Cast target type and inputs that must be constants (where the
    target's table says so)."""
    view, tgt = as_view(model), as_target(target)
    bad, why = [], []
    for node in view.nodes:
        problems = _constant_input_problems(view, node, tgt)
        if node.op_type == "Resize":
            problems += _resize_problems(view, node)
        elif node.op_type == "Pad":
            problems += _pad_problems(view, node, tgt)
        elif node.op_type == "Cast":
            problems += _cast_problems(view, node, tgt)
        if problems:
            bad.append(label(node))
            why.append(f"{label(node)}: {', '.join(problems)}")
    return verdict("parser-attrs", bad, "; ".join(why[:6]) + (f"; ... ({len(why)} nodes)" if len(why) > 6 else ""))


def state_input_names(view: ModelView, state_inputs: list[str] | None = None) -> list[str]:
    """``state_inputs``, or by default every rank-4 float graph input after the first (the image)."""
    if state_inputs is not None:
        return list(state_inputs)
    return [n for n in view.inputs[1:] if view.elem_type(n) in FLOAT_TYPES and len(view.shape(n) or []) == 4]


def static_shapes(model: Model) -> RuleResult:
    """Every graph input and output has a fixed, positive size in each dimension."""
    view = as_view(model)
    bad = []
    for name in [*view.inputs, *view.outputs]:
        dims = view.shape(name)
        if dims is None or any(not isinstance(d, int) or d <= 0 for d in dims):
            bad.append(f"{name} {dims if dims is not None else '(rank unknown)'}")
    return verdict("static-shapes", bad, "symbolic or unknown dims: TensorRT would need optimization profiles, "
                   "and the bundle's engines are built for one size")


def state_shapes(model: Model, state_inputs: list[str] | None = None) -> RuleResult:
    """Recurrent-state inputs have their real shapes, not the official ONNX's [1,1,1,1] placeholders.

    ``state_inputs``: their names (e.g. from the bundle manifest); by default every rank-4 float
    graph input after the first (the image).
    """
    view = as_view(model)
    names = state_input_names(view, state_inputs)
    bad = []
    for name in names:
        dims = view.shape(name) or []
        if all(d == 1 or not isinstance(d, int) for d in dims[1:]):
            bad.append(f"{name} {dims}")
    return verdict("state-shapes", bad, "placeholder or symbolic state shapes: TensorRT needs the real state "
                   "size (export with fixed sizes)", f"{len(names)} state input(s) with real shapes")


def constant_ratio(model: Model) -> RuleResult:
    """No ``downsample_ratio`` graph input, and no Resize whose scales/sizes depend on input values."""
    view = as_view(model)
    bad = [f"input {n}" for n in view.inputs if n == "downsample_ratio"]
    for node in view.nodes:
        if node.op_type != "Resize":
            continue
        for idx in (2, 3):  # scales, sizes
            if len(node.input) > idx and node.input[idx]:
                sources = view.data_inputs_reaching(node.input[idx])
                if sources:
                    bad.append(label(node))
    return verdict("constant-ratio", bad, "data-dependent resize: bake downsample_ratio into the graph "
                   "(static export)")
