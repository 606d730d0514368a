"""The checks `calibrate` and `build` run before writing: an artifact we made that breaks our own
TensorRT rules is a bug in us, so nothing is written and the error names the rule.

``KNOWN_GAPS`` lists the (file, rule) failures that are known open defects: they print one
warning line instead of refusing. Remove an entry when its fix lands (the tests then require it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import onnx

from ..bundle.trt_cache import cache_version_code, format_cache, parse_cache
from ..errors import MattingDeployError
from .load import load_inputs
from .report import ARTIFACT_FILES, CheckReport, check_bundle
from .result import RuleResult
from .support import parse_version, resolve_target, target_for_version

KNOWN_GAPS: dict[tuple[str, str], str] = {}
# What calibrate makes (the Q/DQ model and the cache); parser rules on model.onnx are the export's.
CALIBRATE_RULES = frozenset({"dq-int8", "qdq-zero-point", "weight-scale-axis", "activation-per-tensor",
                             "qdq-fusable", "fp16-outside-qdq", "cache-header", "cache-coverage",
                             "cache-stray-int8"})


def _line(r: RuleResult, report: CheckReport) -> str:
    nodes = ", ".join(r.nodes[:3]) + (f" (+{len(r.nodes) - 3} more)" if len(r.nodes) > 3 else "")
    return (f"{r.artifact}: fails TensorRT {report.target.version_text} rule {r.rule} "
            f"({r.detail}{'; ' + nodes if nodes else ''})")


def enforce(reports: Iterable[CheckReport], rules: Iterable[str] | None = None,
            files: Iterable[str] | None = None, warn: Callable[[str], None] = print) -> None:
    """Raise on the first failed rule (of ``rules``, on ``files``) that is not a known gap; warn once
    per known gap."""
    rules = None if rules is None else set(rules)
    files = None if files is None else set(files)
    warned = set()
    for report in reports:
        for r in report.failed:
            if (rules is not None and r.rule not in rules) or (files is not None and r.artifact not in files):
                continue
            gap = KNOWN_GAPS.get((r.artifact, r.rule))
            if gap is None:
                raise MattingDeployError(_line(r, report))
            if (r.artifact, r.rule) not in warned:
                warned.add((r.artifact, r.rule))
                warn(f"warning: {r.artifact}: TensorRT rule {r.rule} fails: {gap}")


def calibration_targets(trt_version: str) -> list[str]:
    """The versions calibrate writes for: the cache's (``--trt-version``) and every strongly typed
    line that builds from model.int8.onnx (10.1, 11)."""
    own = target_for_version(trt_version).version_text
    return list(dict.fromkeys([own, resolve_target("tensorrt-10").version_text,
                               resolve_target("tensorrt-11").version_text]))


def check_calibration(fp32: onnx.ModelProto, qdq: onnx.ModelProto, cache_text: str, trt_version: str,
                      int8_convs: set[str], warn: Callable[[str], None] = print) -> list[CheckReport]:
    """calibrate's gate on what it is about to commit (the Q/DQ model and the cache)."""
    header, scales = parse_cache(cache_text)
    reports = []
    for version in calibration_targets(trt_version):
        tgt = target_for_version(version)
        reports.append(check_bundle({"fp32": fp32, "int8": qdq}, tgt.name, trt_version=version,
                                    cache=(header, scales), int8_layers=int8_convs))
    enforce(reports, CALIBRATE_RULES, warn=warn)
    return reports


def check_build(bundle_dir, artifact: str, calib_cache: bool, trt_version: str,
                warn: Callable[[str], None] = print) -> CheckReport | None:
    """build's gate: the file it parses (and the cache, re-headed for this TensorRT as build feeds
    it) against the rules of the running TensorRT. None (with a warning) for versions not known."""
    try:
        tgt = target_for_version(trt_version)
    except MattingDeployError as e:
        warn(f"warning: TensorRT rules not checked ({e})")
        return None
    names = [artifact] + (["int8"] if calib_cache else [])
    inputs = load_inputs(bundle_dir, names)
    cache = inputs.cache
    if calib_cache and cache is not None:  # build re-heads the cache for the running TensorRT
        header, scales = cache
        cache = parse_cache(format_cache(scales, cache_version_code(parse_version(trt_version)),
                                         header.split("-")[-1]))
    report = check_bundle(inputs.artifacts, tgt.name, trt_version=tgt.version_text, cache=cache,
                          state_inputs=inputs.state_inputs, int8_layers=inputs.int8_layers)
    files = {ARTIFACT_FILES[artifact]} | ({"calib.cache"} if calib_cache else set())
    enforce([report], files=files, warn=warn)
    return report
