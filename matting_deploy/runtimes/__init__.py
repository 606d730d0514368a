"""Engines only: the runner base, onnxruntime, TensorRT, OpenVINO, engine building, OFD, the C surface.

Backend names live here (importing this package loads nothing heavy).
"""

ORT_BACKENDS = ("cpu", "cuda", "ort-trt")  # onnxruntime execution providers
OPENVINO = "openvino"  # Intel CPU / GPU / NPU through OpenVINO (device: CPU by default)
BACKENDS = (*ORT_BACKENDS, "tensorrt", OPENVINO)  # + the native TensorRT engine, OpenVINO
