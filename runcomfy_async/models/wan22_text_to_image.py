"""Input of `wan-ai/wan-2-2/text-to-image`: an image from a text prompt."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from msgspec import UNSET, Meta, UnsetType

from .._inputs import ModelInput

AspectRatio = Literal[
    "1440:720 (2:1)",
    "1440:810 (16:9)",
    "1440:864 (5:3)",
    "1440:960 (3:2)",
    "1440:1024 (7:5)",
    "1360:1020 (4:3)",
    "1280:1024 (5:4)",
    "1024:1024 (1:1)",
    "1024:1280 (4:5)",
    "1024:1365 (3:4)",
    "1024:1434 (5:7)",
    "960:1440 (2:3)",
    "864:1440 (3:5)",
    "810:1440 (9:16)",
    "720:1440 (1:2)",
]


class Wan22TextToImage(
    ModelInput, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Wan 2.2 text-to-image. Unset fields take RunComfy's defaults (16:9, magic prompt on)."""

    model_id: ClassVar[str] = "wan-ai/wan-2-2/text-to-image"

    prompt: Annotated[str, Meta(max_length=800)]
    negative_prompt: str | UnsetType = UNSET
    aspect_ratio: AspectRatio | UnsetType = UNSET
    seed: int | UnsetType = UNSET
    prompt_extend: bool | UnsetType = UNSET


__all__ = ["AspectRatio", "Wan22TextToImage"]
