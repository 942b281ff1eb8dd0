"""Typed inputs for RunComfy models: one small file per model."""

from .runway_gen3_turbo_image_to_video import RunwayGen3TurboImageToVideo
from .wan22_text_to_image import Wan22TextToImage

__all__ = ["RunwayGen3TurboImageToVideo", "Wan22TextToImage"]
