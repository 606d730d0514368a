"""MODNet portrait matting network, key-compatible with the official checkpoints."""

from .mobilenetv2 import MobileNetV2Backbone
from .modnet import Conv2dIBNormRelu, IBNorm, MODNet, SEBlock

__all__ = ["MODNet", "MobileNetV2Backbone", "IBNorm", "Conv2dIBNormRelu", "SEBlock"]
