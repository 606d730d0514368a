"""Which nodes get Q/DQ and which stay float: the INT8 recipe.

Nodes are picked by graph structure (not by name), so the rules hold for any export of the same
network. Rules:

- ``stem``: the first Conv reached from the model input and the Conv right after its activation
  (the two highest-resolution layers; the stem's output has by far the widest range);
- ``hardswish``: the Mul of x * HardSigmoid(x);
- ``gate``: squeeze-excite / attention gating Muls (x * sigmoid-like(pooled x)) and the small
  1x1 Convs on globally pooled tensors that compute the gate;
- ``early``: encoder Convs (ancestors of the lowest-resolution tensor, not fed by recurrent
  state) that read a tensor at 1/8 of the encoder's working size (its largest input, e.g. RVM's
  downsampled frame) or larger: the stem, the high-resolution backbone stages and the stride-2 Conv
  that leaves them, where INT8 noise is amplified most;
- ``pixels``: the image halves of the Convs export splits (``export/split_pixels.py``): a Conv
  reading a tensor computed from the model's inputs with no Conv before it, whose output is added
  to another Conv's; not in the TensorRT recipe (there they run INT8 with a scale of their own),
  kept float by the CPU target;
- ``full-size``: Convs whose output has the model input's full size (CPU target only: there the
  Q/DQ and layout conversions of full-size tensors cost what the integer kernel saves);
- ``refiner``: RVM's deep guided filter (everything computed from the projection's output);
- ``projection``: the Conv whose output is split into the alpha/foreground channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import onnx

from ..check.graph import Graph, conv_free_tensors


@dataclass(frozen=True)
class Recipe:
    name: str
    op_types: tuple[str, ...] = ("Conv",)
    exclude_rules: tuple[str, ...] = ()
    exclude_nodes: tuple[str, ...] = ()  # explicit node names (from --max-drift or experiments)
    no_output_qdq: tuple[str, ...] = ()  # op types whose outputs get no Q/DQ of their own
    calibrator_options: dict = field(default_factory=dict)  # method -> calibrator kwargs
    # Per tensor, a calibrated range whose INT8 error (on the tensor's histogram) exceeds
    # range_guard x the least achievable is replaced by the least-error range (None: never).
    range_guard: float | None = None

    def __post_init__(self) -> None:
        unknown = [r for r in self.exclude_rules if r not in RULES]
        if unknown:
            raise ValueError(f"recipe {self.name!r}: unknown rule(s) {', '.join(unknown)} "
                             f"(rules: {', '.join(RULES)})")

    def with_excluded(self, nodes) -> Recipe:
        return replace(self, exclude_nodes=tuple(sorted(set(self.exclude_nodes) | set(nodes))))

    def describe(self) -> dict:
        return {
            "name": self.name,
            "op_types": list(self.op_types),
            "exclude_rules": list(self.exclude_rules),
            "exclude_nodes": list(self.exclude_nodes),
            "no_output_qdq": list(self.no_output_qdq),
            "calibrator_options": self.calibrator_options,
            "range_guard": self.range_guard,
        }


def _image(g: Graph) -> str:
    """The image input the rules measure from: ``src`` (the contract's name), else the first."""
    return "src" if "src" in g.inputs else g.inputs[0]


def _stem(g: Graph) -> set[str]:
    src = _image(g)
    out, todo, seen = set(), [src], set()
    while todo:
        for n in g.consumers.get(todo.pop(), []):
            if n.name in seen:
                continue
            seen.add(n.name)
            if n.op_type == "Conv":
                out.add(n.name)
            elif n.op_type not in ("Concat", "AveragePool", "ReduceMean"):
                todo.extend(n.output)
    # ... and the Conv(s) fed by the stem's activation (HardSwish/ReLU), not through another Conv.
    todo = [o for n in g.nodes if n.name in out for o in n.output]
    while todo:
        for n in g.consumers.get(todo.pop(), []):
            if n.op_type == "Conv":
                out.add(n.name)
            elif n.op_type in ("HardSigmoid", "Mul", "Relu", "Clip", "HardSwish", "Sigmoid"):
                todo.extend(n.output)
    return out


def _hardswish(g: Graph) -> set[str]:
    out = set()
    for n in g.nodes:
        if n.op_type == "Mul" and len(n.input) == 2:
            for a, b in ((n.input[0], n.input[1]), (n.input[1], n.input[0])):
                p = g.parent(a)
                if p is not None and p.op_type == "HardSigmoid" and p.input[0] == b:
                    out.add(n.name)
    return out


def _pooled(g: Graph, tensor: str, depth: int = 6) -> bool:
    """Is ``tensor`` computed from a global pool within ``depth`` nodes (a 1x1 gate branch)?"""
    p = g.parent(tensor)
    if p is None or depth == 0:
        return False
    if p.op_type in ("GlobalAveragePool", "ReduceMean"):
        return True
    return p.op_type in ("Conv", "Relu", "HardSigmoid", "Sigmoid") and _pooled(g, p.input[0], depth - 1)


def _gate(g: Graph) -> set[str]:
    out = set()
    for n in g.nodes:
        if n.op_type == "Conv" and _pooled(g, n.input[0], 3):
            out.add(n.name)
        if n.op_type == "Mul" and any(_pooled(g, i) for i in n.input):
            out.add(n.name)
    return out


def _projection(g: Graph) -> set[str]:
    """Conv(s) whose output is split into the model's foreground/alpha channels."""
    out = set()
    for n in g.nodes:
        if n.op_type != "Conv" or n.input[1] not in g.inits:
            continue
        channels = g.inits[n.input[1]].dims[0]
        uses = g.consumers.get(n.output[0], [])
        if channels in (1, 4) and any(u.op_type in ("Split", "Slice", "Sigmoid") for u in uses):
            out.add(n.name)
    return out


def _refiner(g: Graph) -> set[str]:
    proj = _projection(g)
    if not proj:
        return set()
    proj_out = [n.output[0] for n in g.nodes if n.name in proj]
    after = g.descendants(proj_out)
    before = g.ancestors(proj_out)
    # Nodes feeding the refiner that the decoder does not use (box filters of the image).
    feeding = set()
    for n in g.nodes:
        if n.name in after:
            feeding |= g.ancestors(n.input)
    return after | (feeding - before - proj)


def _spatial(g: Graph, tensor: str) -> tuple[int, int] | None:
    vi = g.value_info.get(tensor)
    if vi is None or not vi.type.HasField("tensor_type"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim]
    return (dims[-2], dims[-1]) if len(dims) == 4 and all(dims[-2:]) else None


def _early(g: Graph, fraction: int = 8) -> set[str]:
    """Sizes are relative to the largest tensor an encoder Conv reads: the resolution the network
    works at (RVM with a downsample ratio runs its encoder on the downsampled frame, not ``src``)."""
    src = _image(g)
    sizes = {t: hw for t in g.value_info if (hw := _spatial(g, t)) and hw[0] * hw[1] > 1}
    if not sizes:
        return set()
    smallest = min(h * w for h, w in sizes.values())
    encoder = g.ancestors([t for t, (h, w) in sizes.items() if h * w == smallest])
    stateful = g.descendants([i for i in g.inputs if i != src])
    convs = {n.name: hw for n in g.nodes if n.op_type == "Conv" and n.name in encoder
             and n.name not in stateful and (hw := _spatial(g, n.input[0]))}
    if not convs:
        return set()
    full = max(convs.values(), key=lambda hw: hw[0] * hw[1])
    # the input: a stride-2 Conv reads the larger tensor
    return {name for name, (h, w) in convs.items() if h * fraction >= full[0] and w * fraction >= full[1]}


def _pixels(g: Graph) -> set[str]:
    free = conv_free_tensors(g, g.inputs)
    out = set()
    for n in g.nodes:
        if n.op_type != "Conv" or n.input[0] not in free:
            continue
        users = g.consumers.get(n.output[0], [])
        if len(users) != 1 or users[0].op_type != "Add":
            continue
        other = [g.parent(t) for t in users[0].input if t != n.output[0]]
        if other and other[0] is not None and other[0].op_type == "Conv":
            out.add(n.name)
    return out


def _full_size(g: Graph) -> set[str]:
    full = _spatial(g, _image(g))
    return {n.name for n in g.nodes if n.op_type == "Conv" and full and _spatial(g, n.output[0]) == full}


_RULE_FUNCS = {
    "stem": _stem,
    "early": _early,
    "pixels": _pixels,
    "full-size": _full_size,
    "hardswish": _hardswish,
    "gate": _gate,
    "refiner": _refiner,
    "projection": _projection,
}
RULES = tuple(_RULE_FUNCS)  # what a recipe's exclude_rules may name


def excluded_nodes(model: onnx.ModelProto, recipe: Recipe) -> set[str]:
    """Names of the nodes ``recipe`` keeps in float on ``model``."""
    g = Graph(model)
    out = set(recipe.exclude_nodes)
    for rule in recipe.exclude_rules:
        out |= _RULE_FUNCS[rule](g)
    return out


# Measured on the official RVM MobileNetV3 (bench/NOTES-int8.md, bench/int8_fidelity.py);
# MODNet uses the same recipe. Q/DQ on Conv inputs and weights only (where TensorRT runs INT8);
# stem, high-resolution encoder stages and the refiner in float (about 92% of the conv MACs stay
# INT8); every range is the least-error symmetric INT8 range on the tensor's own (order-free)
# histogram (range_guard 1: KL's range is kept only where it is already the least-error one).
# KL with a 3x guard swung 1.09-1.20x FP32 MSE with the histogram's binning alone; least-error
# ranges are smooth in the data and gave 1.04x on the same histograms.
DEFAULT = Recipe(
    name="default",
    op_types=("Conv",),
    no_output_qdq=("Conv",),
    exclude_rules=("early", "refiner"),
    range_guard=1.0,
)


def default_recipe(model: str = "rvm") -> Recipe:
    """The recipe `matting-deploy calibrate` uses when no option changes it."""
    return DEFAULT
