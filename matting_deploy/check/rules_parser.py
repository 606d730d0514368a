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
    """Resize attributes the importer refuses (``tensorrt_support.json`` attributes.Resize.sources):

    - modes nearest, linear and cubic (cubic is imported by 8.5-10.1 although operators.md lists
      only nearest and linear: builtin_op_importers.cpp 8.5-GA:3712, @6ba67d3428e0:3746;
      onnxOpImporters.cpp @eb43908b02a2:4371, 10.1-GA:4404);
    - opset >= 11: tf_half_pixel_for_nn only with nearest_mode round_prefer_floor
      (builtin_op_importers.cpp 8.5-GA:3736, @6ba67d3428e0:3770; onnxOpCheckers.cpp
      @eb43908b02a2:573, 10.1-GA:575);
    - constant scales: linear resizes at most the innermost 3 axes, cubic the innermost 2
      (canUseNDResize: builtin_op_importers.cpp 8.5-GA:3848/3854; onnxOpImporters.cpp 10.1-GA:4614/4620).
    """
    spec = support_data()["attributes"]["Resize"]
    values = {name: attr(node, name, default) for name, default in spec["defaults"].items()}
    out = [f"{name}={values[name]}" for name, allowed in spec["allowed"].items() if values[name] not in allowed]
    if view.opset >= 11:
        ctm = values["coordinate_transformation_mode"]
        need = spec["nearest_mode_for"].get(ctm)
        if need is not None and values["nearest_mode"] not in need:
            out.append(f"nearest_mode={values['nearest_mode']} with {ctm} (only {', '.join(need)})")
    inner = spec["scaled_axes"].get(values["mode"])
    idx = 2 if view.opset >= 11 else 1  # scales
    scales = view.constant(node.input[idx]) if len(node.input) > idx and node.input[idx] else None
    if inner is not None and scales is not None and scales.size > inner and (scales.ravel()[:-inner] != 1).any():
        out.append(f"{values['mode']} resize outside the innermost {inner} axes (scales {scales.ravel().tolist()})")
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


def _initializer_input_problems(view: ModelView, node, target: Target) -> list[str]:
    """Inputs an importer needs as initializers whatever its table row says: InstanceNormalization's
    scale and B below 10.0 (builtin_op_importers.cpp 8.5-GA:2195/2198; 8.6's default plugin path,
    onnx2trt_utils.cpp @6ba67d3428e0:1241/1244)."""
    rule = support_data()["attributes"]["initializer_inputs"].get(node.op_type)
    if not isinstance(rule, dict) or target.version >= tuple(rule["until"]):
        return []
    return [f"{name} input '{node.input[i]}' not an initializer" for name, i in rule["inputs"].items()
            if len(node.input) > i and node.input[i] and not view.is_constant(node.input[i])]


def _qdq_scale_problems(view: ModelView, node) -> list[str]:
    """A constant Q/DQ scale must be all positive (builtin_op_importers.cpp 8.5-GA:1222,
    @6ba67d3428e0:1197; onnxOpImporters.cpp @eb43908b02a2:1367, 10.1-GA:1404)."""
    scale = view.constant(node.input[1]) if len(node.input) > 1 else None
    if scale is None or (scale > 0).all():
        return []
    return [f"scale '{node.input[1]}' not all positive (min {float(scale.min()):g})"]


def _cast_problems(view: ModelView, node, target: Target) -> list[str]:
    types = target.ops().get("Cast", {}).get("types", [])
    to = attr(node, "to")
    name = _type_name(to, target) if to is not None else None
    return [] if name is None or not types or name in types else [f"to={TYPE_NAMES.get(to, to)}"]


def attribute_support(model: Model, target: str | Target) -> RuleResult:
    """Resize modes and axes, Pad mode, Cast target type, positive Q/DQ scales and inputs that must be
    constants (where the target's table or importer says so)."""
    view, tgt = as_view(model), as_target(target)
    bad, why = [], []
    for node in view.nodes:
        problems = _constant_input_problems(view, node, tgt) + _initializer_input_problems(view, node, tgt)
        if node.op_type == "Resize":
            problems += _resize_problems(view, node)
        elif node.op_type == "Pad":
            problems += _pad_problems(view, node, tgt)
        elif node.op_type == "Cast":
            problems += _cast_problems(view, node, tgt)
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            problems += _qdq_scale_problems(view, node)
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
