"""Split a Conv over the Concat it reads when that Concat mixes image pixels with features.

RVM's decoder (and MODNet's branches) concatenate a pooled copy of the input image with feature
maps and convolve the lot. In INT8 that Concat gets one scale, set by the features (tens), which
leaves the image channels (0..1) about five levels: on the official RVM the half-size decoder Conv
alone carried half of the INT8 drift on a video clip. A Conv is linear in its input channels:

    Conv(Concat(f, x), W, b) = Conv(f, W_f, b) + Conv(x, W_x)

so export writes the right-hand side: the feature Conv keeps the node's name, the pixel Conv
(``<name>_pixels``) reads only image-derived channels, and an Add writes the original output
tensor. Each half then gets an INT8 scale of its own. Exact in real arithmetic; export's parity
check measures it in float.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..check.graph import ModelView, attr, conv_free_tensors

PIXELS_SUFFIX = "_pixels"


def _split_candidates(view: ModelView, pixels: set[str]):
    """(conv, concat, pixel positions) for each ungrouped Conv with constant weights reading, alone,
    a channel Concat of both pixel and feature tensors."""
    for conv in view.nodes:
        if conv.op_type != "Conv" or attr(conv, "group", 1) != 1 or conv.input[1] not in view.inits:
            continue
        concat = view.producer.get(conv.input[0])
        if concat is None or concat.op_type != "Concat" or len(view.consumers[conv.input[0]]) != 1:
            continue
        if attr(concat, "axis") not in (1, 1 - len(view.shape(conv.input[0]) or [])):
            continue
        where = [i in pixels for i in concat.input]
        if any(where) and not all(where):
            yield conv, concat, where


def _split(conv, concat, where: list[bool], weight: np.ndarray, widths: list[int]):
    """(new initializers, new nodes) replacing ``conv`` and ``concat``."""
    edges = np.cumsum([0, *widths])
    name, y = conv.name or conv.output[0], conv.output[0]
    inits, nodes = [], []
    for pixel, suffix in ((False, "_features"), (True, PIXELS_SUFFIX)):
        idx = np.concatenate([np.arange(edges[k], edges[k + 1]) for k, p in enumerate(where) if p == pixel])
        names = [t for t, p in zip(concat.input, where, strict=True) if p == pixel]
        src = names[0]
        if len(names) > 1:
            src = f"{concat.output[0]}{suffix}"
            nodes.append(helper.make_node("Concat", names, [src], name=src, axis=1))
        w_name = f"{conv.input[1]}{suffix}"
        inits.append(numpy_helper.from_array(np.ascontiguousarray(weight[:, idx]), w_name))
        bias = [conv.input[2]] if not pixel and len(conv.input) > 2 and conv.input[2] else []
        part = helper.make_node("Conv", [src, w_name, *bias], [f"{y}{suffix}"],
                                name=f"{name}{PIXELS_SUFFIX}" if pixel else name)
        part.attribute.extend(conv.attribute)
        nodes.append(part)
    nodes.append(helper.make_node("Add", [f"{y}_features", f"{y}{PIXELS_SUFFIX}"], [y], name=f"{name}_sum"))
    return inits, nodes


def split_pixel_concats(model: onnx.ModelProto, images: set[str]) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` with every such Conv split (a new ModelProto; ``model`` itself if none) and the
    split Convs' names."""
    view = ModelView(model)
    replace, drop, inits = {}, set(), []
    for conv, concat, where in list(_split_candidates(view, conv_free_tensors(view, images))):
        widths = [(view.shape(t) or [0, 0])[1] for t in concat.input]
        if not all(isinstance(w, int) and w > 0 for w in widths):
            continue
        new_inits, replace[conv.name or conv.output[0]] = _split(
            conv, concat, where, numpy_helper.to_array(view.inits[conv.input[1]]), widths)
        inits += new_inits
        drop.add(concat.output[0])
    if not replace:
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    nodes = []
    for node in graph.node:
        if (node.name or node.output[0]) in replace and node.op_type == "Conv":
            nodes.extend(replace[node.name or node.output[0]])
        elif not (node.op_type == "Concat" and node.output[0] in drop):
            nodes.append(node)
    nodes = [_copy(n) for n in nodes]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    used = {i for n in graph.node for i in n.input}
    live = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(out), sorted(replace)


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    c = onnx.NodeProto()
    c.CopyFrom(node)
    return c
