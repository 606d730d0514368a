"""The build plan (:mod:`matting_deploy.bundle.trt_plan`) applied to TensorRT's parsed network, and
the calibration cache fed for the running TensorRT (implicit INT8, TensorRT 8.5/8.6/10.0).

- TensorRT skips a calibration cache whose header names another version, so the cache is fed
  re-headed with the running version's code (:func:`cache_for`);
- :func:`apply_plan` sets each planned layer's precision and output types, matching layers to
  ONNX nodes by the names TensorRT's ONNX parser gives them (:func:`~..bundle.trt_plan.layer_names`);
  an INT8 Conv of calib.json that is not a convolution layer of that name fails the build, naming it
  (the parser renames a layer whose name is taken).
"""

from __future__ import annotations

from typing import Any

from ..bundle.trt_cache import CalibCache, cache_version_code, parse_cache, parse_version, with_version
from ..bundle.trt_plan import BuildPlan, layer_names
from ..errors import MattingDeployError


def cache_for(cache: CalibCache, trt_version: str) -> CalibCache:
    """``cache`` with its header naming ``trt_version`` (what that TensorRT reads)."""
    text = with_version(cache.blob.decode("ascii"), cache_version_code(parse_version(trt_version)))
    header, scales = parse_cache(text)
    return CalibCache(header, cache.algorithm, scales, text.encode("ascii"))


def _dtype(trt: Any, name: str) -> Any:
    return {"fp32": trt.float32, "fp16": trt.float16, "int8": trt.int8}[name]


def apply_plan(trt: Any, network: Any, plan: BuildPlan) -> dict[str, int]:
    """Constrain the layers of ``network`` as ``plan`` asks; returns {why: layers constrained}."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    by_name = {layer.name: layer for layer in layers}
    convs = (trt.LayerType.CONVOLUTION, trt.LayerType.DECONVOLUTION)
    for conv in plan.int8_convs():
        layer = by_name.get(conv)
        if layer is None or layer.type not in convs:
            raise MattingDeployError(
                f"{plan.onnx_file}: INT8 Conv '{conv}' of calib.json is not a convolution layer of that name in "
                "TensorRT's parsed network (renamed by the parser on a name collision?); nothing built")
    exact = {r.node: r for r in plan.rules}
    counts: dict[str, int] = {}
    for layer in layers:
        rule = exact.get(layer.name)
        if rule is None:
            base = layer.name.rsplit("_", 1)[0]
            rule = exact.get(base) if layer_names(base, plan.nodes, layer.name) else None
        if rule is None or layer.type == trt.LayerType.CONSTANT:
            continue
        if rule.why == "int8-conv" and layer.name != rule.node:
            continue  # only the convolution itself
        if rule.precision:
            layer.precision = _dtype(trt, rule.precision)
        if rule.output_type:
            for j in range(layer.num_outputs):
                if layer.get_output(j).dtype in (trt.float32, trt.float16):
                    layer.set_output_type(j, _dtype(trt, rule.output_type))
        counts[rule.why] = counts.get(rule.why, 0) + 1
    return counts
