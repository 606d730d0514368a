"""``bench``'s closing line: the artifact to use on the benchmarked backend(s), and why.

The fastest row whose drift passes the gates of the bundle's validate report (``report/report.json``,
matched by artifact and backend; fp32 is the reference and always passes). A faster row whose drift
is unmeasured or fails is named with the command that measures it; on onnxruntime CPU and OpenVINO
the line also says what the CPU artifacts are (``int8`` is the TensorRT Q/DQ layout, ``int8-cpu``
comes from ``calibrate --target cpu``) and, on onnxruntime CPU, points at OpenVINO.
"""

from __future__ import annotations

import json
from typing import Any

from ..bundle import CPU_INT8, REPORT_DIR, Bundle
from ..optional import unavailable
from ..runtimes import OPENVINO

REPORT_JSON = "report.json"


def drift_verdicts(bundle: Bundle) -> tuple[dict[tuple[str, str], bool], str] | None:
    """{(artifact, backend): gates hold} from the bundle's validate report, and its path; None
    when there is no readable report."""
    path = bundle.root / REPORT_DIR / REPORT_JSON
    try:
        results = json.loads(path.read_text())["results"]
        return {(r["artifact"], r["backend"]): bool(r["ok"]) for r in results}, str(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _label(row: dict[str, Any]) -> str:
    return f"{row['artifact']} ({row['backend']})"


def _times(row: dict[str, Any], base: dict[str, Any]) -> str:
    s = base["p50_ms"] / row["p50_ms"]
    return f"{s:.2f}x the speed of {_label(base)}"


def advice(result: dict[str, Any], bundle: Bundle) -> str:
    """One line: ``use: <artifact> on <backend> (<speed>; <why>)`` plus what to try next."""
    rows = result["rows"]
    base = next((r for r in rows if r["artifact"] == "fp32"), rows[0])
    found = drift_verdicts(bundle)
    verdicts, where = found if found else ({}, None)

    def verdict(row: dict[str, Any]) -> bool | None:
        if row["artifact"] == "fp32":
            return True
        return verdicts.get((row["artifact"], row["backend"]))

    passing = [r for r in rows if verdict(r)]
    best = min(passing or [base], key=lambda r: r["p50_ms"])
    why = ("FP32: no drift to check" if best["artifact"] == "fp32"
           else f"the fastest that passes the drift gates in {where}")
    speed = "" if best is base else f"{_times(best, base)}, "
    parts = [f"use: {best['artifact']} on {best['backend']} ({speed}{why})"]
    fastest = min(rows, key=lambda r: r["p50_ms"])
    if fastest is not best:
        v = verdict(fastest)
        how = (f"matting-deploy validate --bundle {bundle.root} --data YOUR_DATA --backends "
               f"{fastest['backend']} --artifacts {fastest['artifact']}")
        state = "fails the drift gates" if v is False else (
            f"has no row in {where}" if where else "its drift is unmeasured (no validate report in the bundle)")
        parts.append(f"{_label(fastest)} is {_times(fastest, base)} but {state}: {how}")
    parts += _cpu_hints(rows, bundle, result)
    return "; ".join(parts)


def _cpu_hints(rows: list[dict[str, Any]], bundle: Bundle, result: dict[str, Any]) -> list[str]:
    """On onnxruntime CPU or OpenVINO: what int8 and int8-cpu are, and OpenVINO when it was not
    benchmarked."""
    cpu = {r["artifact"]: r for r in rows if r["backend"] == "cpu"}
    openvino = any(r["backend"].split(":")[0] == OPENVINO for r in rows)
    if not cpu and not openvino:
        return []
    out = []
    fp32, int8 = cpu.get("fp32"), cpu.get("int8")
    if int8 is not None and fp32 is not None and int8["p50_ms"] >= fp32["p50_ms"] * 0.95:
        out.append("int8 is the TensorRT Q/DQ layout, no faster on onnxruntime CPU")
    if CPU_INT8 not in bundle.artifacts and "int8" in bundle.artifacts:
        out.append(f"the INT8 calibrated for CPUs (onnxruntime; on OpenVINO an alternative to int8) is "
                   f"{CPU_INT8}: matting-deploy calibrate --int8 --target cpu --bundle {bundle.root} --data CALIB_DATA")
    if cpu and not openvino:
        if unavailable("openvino") is None:
            out.append(f"OpenVINO is installed: --backends cpu,{OPENVINO} compares its bf16/int8/int8-cpu "
                       "(faster on Intel CPUs)")
        else:
            out.append("on Intel CPUs OpenVINO runs bf16/int8 faster: pip install 'matting-deploy[openvino]'")
    return out
