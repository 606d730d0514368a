"""TensorRT's rules, checked on CPU: what each TensorRT version's ONNX parser accepts and how it
will run each artifact (Q/DQ fusion, strong typing, implicit-INT8 calibration cache).

Rule functions take plain objects (an ``onnx.ModelProto``, ``{tensor: scale}`` and the cache
header, a target name) and return a :class:`RuleResult`; :func:`check_bundle` runs those that
apply to a bundle's artifacts and :func:`render_table` prints them.
"""

from .macs import conv_macs, int8_mac_share
from .report import CheckReport, check_bundle, default_fp32_ops, render_table
from .result import TITLES, RuleResult
from .rules_implicit import cache_coverage, cache_header, cache_stray, fused_output, intended_int8_convs
from .rules_parser import attribute_support, constant_ratio, op_support, state_shapes, static_shapes
from .rules_qdq import (
                        activation_per_tensor,
                        dq_int8,
                        fp16_outside_qdq,
                        fp32_islands,
                        qdq_fusable,
                        weight_scale_axis,
                        zero_points,
)
from .support import TARGETS, Target, cache_version_code, resolve_target

__all__ = [
    "TARGETS", "TITLES", "CheckReport", "RuleResult", "Target", "activation_per_tensor", "attribute_support",
    "cache_coverage", "cache_header", "cache_stray", "cache_version_code", "check_bundle", "constant_ratio",
    "conv_macs", "default_fp32_ops", "dq_int8", "fp16_outside_qdq", "fp32_islands", "fused_output", "int8_mac_share",
    "intended_int8_convs", "op_support", "qdq_fusable", "render_table", "resolve_target", "state_shapes",
    "static_shapes", "weight_scale_axis", "zero_points",
]
