"""Robust Video Matting (RVM) network, key-compatible with the official checkpoints."""

from .model import REFINERS, VARIANTS, MattingNetwork

__all__ = ["MattingNetwork", "REFINERS", "VARIANTS"]
