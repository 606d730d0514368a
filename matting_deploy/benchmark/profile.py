"""Where the time goes: onnxruntime's per-op-type kernel time of each artifact (``bench --profile-ops``).

onnxruntime's profiler records one event per node and run (``<node>_kernel_time``, with the op
type of the node *after* graph optimisation: ``QLinearConv``, ``FusedConv``, ``DequantizeLinear``,
...); the events are summed per op type and divided by the runs, so FP32 and INT8 can be compared
op type by op type.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..bundle import CPU_INT8, Bundle
from ..errors import MattingDeployError
from ..fileio import temp_dir
from ..runtimes import ORT_BACKENDS
from ..runtimes.onnxruntime_runner import PROVIDERS, OrtRunner, session_options


def profile_ops(bundle: Bundle, artifact: str, src: np.ndarray, runs: int, backend: str = "cpu",
                threads: int = 0) -> dict[str, float]:
    """{op type: milliseconds per run} of ``artifact`` on ``src`` (zero recurrent state), largest first."""
    import onnxruntime as ort

    if backend not in ORT_BACKENDS:
        raise MattingDeployError(f"--profile-ops: onnxruntime backends only ({', '.join(ORT_BACKENDS)})")
    feed = OrtRunner.from_bundle(bundle, artifact).model_inputs(src)
    opts = session_options(threads, qdq_fusions=artifact == CPU_INT8)  # as the runners open it
    opts.enable_profiling = True
    with temp_dir("md-profile-") as tmp:
        opts.profile_file_prefix = str(tmp / artifact)
        session = ort.InferenceSession(str(bundle.verify(artifact)), opts, providers=PROVIDERS[backend])
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            per_op[event["args"].get("op_name", "?")] += event["dur"] / 1000.0 / runs
    return dict(sorted(per_op.items(), key=lambda kv: -kv[1]))


def op_table(profiles: dict[str, dict[str, float]], top: int = 12) -> list[tuple[str, ...]]:
    """Rows (header first) of the ``top`` op types by their largest time, then the kernel total."""
    names = list(profiles)
    ops = sorted({op for p in profiles.values() for op in p},
                 key=lambda op: -max(p.get(op, 0.0) for p in profiles.values()))[:top]
    rows = [("op type", *[f"{n} ms/run" for n in names])]
    rows += [(op, *[f"{profiles[n].get(op, 0.0):.2f}" for n in names]) for op in ops]
    rows.append(("total (kernels)", *[f"{sum(profiles[n].values()):.2f}" for n in names]))
    return rows
