"""PyTorch networks: MODNet and Robust Video Matting, key-for-key compatible with the official code."""
