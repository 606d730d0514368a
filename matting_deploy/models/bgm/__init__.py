"""Background Matting v1 generator (ResnetConditionHR), key-compatible with the official checkpoints."""

from .blocks import ResnetBlock
from .deploy import BGMDeploy
from .generator import ResnetConditionHR
from .seeded import seeded_generator, seeded_inputs, settle_batchnorm

__all__ = ["BGMDeploy", "ResnetBlock", "ResnetConditionHR", "seeded_generator", "seeded_inputs",
           "settle_batchnorm"]
