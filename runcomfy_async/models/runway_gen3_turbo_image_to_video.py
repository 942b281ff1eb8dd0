"""Input of `runwayml/runway-gen-3-alpha/turbo/image-to-video`: a video from an image."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from msgspec import UNSET, Meta, UnsetType

from .._inputs import ModelInput

Ratio = Literal["1280:768", "768:1280"]
Duration = Literal[5, 10]
ImageURL = Annotated[
    str,
    Meta(
        pattern=r"^(https://\S+|data:\S+)\Z",
        description="a public https URL or a data: URI; RunComfy checks the image itself "
        "(width and height < 8000 px, aspect ratio 1:2 to 2:1, file < 16 MB)",
    ),
]


class RunwayGen3TurboImageToVideo(
    ModelInput,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    rename="camel",
):
    """Runway Gen-3 Alpha Turbo image-to-video. Unset fields take RunComfy's defaults
    (1280:768, 5 seconds)."""

    model_id: ClassVar[str] = "runwayml/runway-gen-3-alpha/turbo/image-to-video"
    rule_hints: ClassVar[dict[str, str]] = {
        "prompt_image": "must be a public https URL or a data: URI"
    }

    prompt_text: Annotated[str, Meta(max_length=512)]
    prompt_image: ImageURL
    ratio: Ratio | UnsetType = UNSET
    duration: Duration | UnsetType = UNSET
    seed: Annotated[int, Meta(ge=0, le=4294967295)] | UnsetType = UNSET


__all__ = ["Duration", "ImageURL", "Ratio", "RunwayGen3TurboImageToVideo"]
