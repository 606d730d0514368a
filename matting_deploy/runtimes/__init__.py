"""Engines only: the runner base, onnxruntime, TensorRT, engine building, OFD, the C surface.

Backend names live here (importing this package loads nothing heavy).
"""

ORT_BACKENDS = ("cpu", "cuda", "ort-trt")  # onnxruntime execution providers
BACKENDS = (*ORT_BACKENDS, "tensorrt")  # + the native TensorRT engine
