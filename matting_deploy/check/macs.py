"""Share of convolution multiply-accumulates that run in INT8 (reported by check and calibrate)."""

from __future__ import annotations

import numpy as np
import onnx

from .graph import ModelView, label
from .result import as_view
from .rules_implicit import CONVS, intended_int8_convs, runs_int8


def conv_macs(model: onnx.ModelProto | ModelView) -> dict[str, int]:
    """{conv label: multiply-accumulates per inference} from the inferred shapes (0 when unknown)."""
    view = as_view(model)
    out = {}
    for n in view.nodes:
        if n.op_type not in CONVS or len(n.input) < 2:
            continue
        w, y = view.shape(n.input[1]), view.shape(n.output[0])
        x = view.shape(n.input[0])
        if n.op_type == "Conv":
            known = w and y and all(isinstance(d, int) for d in [*w, *y])
            # every output element: Cin/group * kernel MACs
            macs = int(np.prod(y, dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64)) if known else 0
        else:  # ConvTranspose weights [Cin, Cout/group, k...]: every input element scatters Cout/g * k
            known = w and x and all(isinstance(d, int) for d in [*w, *x])
            macs = int(np.prod(x, dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64)) if known else 0
        out[label(n)] = macs
    return out


def int8_mac_share(model: onnx.ModelProto | ModelView, scales: dict[str, float] | None = None,
                   int8_layers: set[str] | None = None) -> dict:
    """Which convolutions run INT8 and their share of the convolution MACs.

    Without ``scales``: ``model`` is a Q/DQ model and a Conv runs INT8 when its input and weights
    come from DequantizeLinear. With ``scales`` (a calibration cache): ``model`` is the FP32 model
    and a Conv runs INT8 when its input and (fused) output have scales and, given
    ``int8_layers`` (what `build` leaves unpinned), it is one of them.
    """
    view = as_view(model)
    macs = conv_macs(view)
    if scales is None:
        names = intended_int8_convs(view)
        int8 = {label(n) for n in view.nodes if n.name in names}
    else:
        int8 = {label(n) for n in view.nodes if n.op_type in CONVS and runs_int8(view, n, scales)[0]
                and (int8_layers is None or n.name in int8_layers)}
    total = sum(macs.values())
    int8_macs = sum(m for name, m in macs.items() if name in int8)
    return {
        "mode": "qdq" if scales is None else "implicit",
        "int8_convs": len(int8),
        "convs": len(macs),
        "int8_macs": int8_macs,
        "total_macs": total,
        "share": int8_macs / total if total else 0.0,
        "unknown_shape_convs": sorted(k for k, m in macs.items() if m == 0),
    }
