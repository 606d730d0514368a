"""INT8 calibration and quantization (the ``calibrate`` stage)."""

# What each --method really computes: the calibrate command's help and log line (importable without
# onnxruntime; quantize/collect.py implements them).
METHOD_HELP = {
    "entropy": "least-error symmetric range on each tensor's histogram (KL's range where that is already it)",
    "percentile": "99.99th percentile of |x|",
    "minmax": "observed min and max",
}
