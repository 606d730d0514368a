"""Implicit INT8 (TensorRT 8.5/8.6/10.0) exactly as the Q/DQ recipe: the cache's scales for the
running TensorRT, the recipe's Convs constrained to INT8 with FP16 outputs, and every layer the
recipe keeps in float pinned to FP16.

- TensorRT skips a calibration cache whose header names another version, so the cache is fed
  re-headed with the running version's code (:func:`cache_for`);
- a layer runs INT8 when the tensors it reads and writes have scales; a Conv the recipe keeps in
  float can get scales on both sides from its INT8 neighbours, so every layer outside calib.json's
  INT8 list that could run INT8 gets ``layer.precision = float16`` and the builder obeys
  precision constraints (:func:`pin_float_layers`): only the recipe's Convs run INT8;
- left free, an INT8 Conv writes INT8 for its readers (its fused output has a scale, which
  TensorRT needs for the layer to run INT8 at all), while the Q/DQ artifact quantizes Conv inputs
  only and the Conv writes FP16. :func:`constrain_int8_layers` sets those Convs' precision to INT8
  and the output type of the Conv and of the activation fused into it to FP16 (``setOutputType``:
  under obey-precision-constraints the build fails rather than choose another output type), so
  both INT8 paths compute the same thing.
"""

from __future__ import annotations

from collections.abc import Container
from pathlib import Path
from typing import Any

from ..bundle import CALIB_JSON
from ..bundle.trt_cache import CalibCache, cache_version_code, int8_outputs, parse_cache, parse_version, with_version
from ..errors import MattingDeployError


def cache_for(cache: CalibCache, trt_version: str) -> CalibCache:
    """``cache`` with its header naming ``trt_version`` (what that TensorRT reads)."""
    text = with_version(cache.blob.decode("ascii"), cache_version_code(parse_version(trt_version)))
    header, scales = parse_cache(text)
    return CalibCache(header, cache.algorithm, scales, text.encode("ascii"))


def int8_layers(root: Path) -> dict[str, str]:
    """calib.json's INT8 Convs (the layers left free to run INT8), each with the tensor its fused
    activation writes; required."""
    layers = int8_outputs(root)
    if layers is None:
        raise MattingDeployError(f"{Path(root) / CALIB_JSON}: no list of INT8 layers (made by an older "
                                 "calibrate?): run 'matting-deploy calibrate --int8 --force' again")
    return layers


def _float(trt: Any, tensor: Any) -> bool:
    return tensor.dtype in (trt.float32, trt.float16)


def pin_float_layers(trt: Any, network: Any, scales: dict[str, float], int8: Container[str]) -> list[str]:
    """Pin to FP16 every layer not in ``int8`` that implicit INT8 could run in INT8: a convolution
    whose input has a scale (its output scale is the fused activation's, known only after fusion),
    any other layer whose float inputs (constants aside) and outputs all have scales. Returns their
    names."""
    convs = (trt.LayerType.CONVOLUTION, trt.LayerType.DECONVOLUTION)
    constant = set()
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    for layer in layers:
        if layer.type == trt.LayerType.CONSTANT:
            constant |= {layer.get_output(j).name for j in range(layer.num_outputs)}
    pinned = []
    for layer in layers:
        if layer.name in int8 or layer.type == trt.LayerType.CONSTANT:
            continue
        ins = [t for t in (layer.get_input(j) for j in range(layer.num_inputs))
               if t is not None and _float(trt, t) and t.name not in constant]
        outs = [] if layer.type in convs else [
            t for t in (layer.get_output(j) for j in range(layer.num_outputs)) if _float(trt, t)]
        if ins and (outs or layer.type in convs) and all(t.name in scales for t in ins + outs):
            layer.precision = trt.float16
            pinned.append(layer.name)
    return pinned


def constrain_int8_layers(trt: Any, network: Any, int8: dict[str, str]) -> list[str]:
    """INT8 precision and an FP16 output for the ``int8`` Convs; FP16 precision and output for the
    layer writing each one's fused output (its activation). Returns the Convs' names."""
    tails = set(int8.values())
    convs = []
    for layer in (network.get_layer(i) for i in range(network.num_layers)):
        if layer.name in int8:
            layer.precision = trt.int8
            convs.append(layer.name)
        elif layer.num_outputs and layer.get_output(0).name in tails:
            layer.precision = trt.float16
        else:
            continue
        layer.set_output_type(0, trt.float16)
    return convs
