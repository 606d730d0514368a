"""matting-deploy: portrait-matting networks from PyTorch to verified edge inference."""

__version__ = "0.1.0"
