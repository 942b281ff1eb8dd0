"""A simulated model's profile (run time, failures, outputs, price) and the two seed models."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

WAN_TEXT_TO_IMAGE = "wan-ai/wan-2-2/text-to-image"
RUNWAY_IMAGE_TO_VIDEO = "runwayml/runway-gen-3-alpha/turbo/image-to-video"


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """How one model behaves: run time, failures, outputs, price and catalog entry.

    `run_time` is a uniform (min, max) range in seconds before `time_scale`; `price` is USD
    per catalog `price_unit` (None: "output" for image models, "second" of video for video
    models, as RunComfy's catalog prices them; "request" is also understood). `outputs` is
    the outputs per run unless the inputs ask for a count (`num_images` and the like).
    `failure_rate` None takes the simulator-wide rate. `input_schema` None uses the seed
    schema for a seed model id, else accepts any JSON object. `display_name`, `categories`
    and `pricing_note` are what the catalog shows (None: the defaults of the model id).
    """

    run_time: tuple[float, float] = (2.0, 6.0)
    price: float = 0.04
    failure_rate: float | None = None
    outputs: int = 1
    input_schema: Mapping[str, Any] | None = None
    price_unit: str | None = None
    display_name: str | None = None
    categories: tuple[str, ...] | None = None
    pricing_note: str | None = None

    def __post_init__(self) -> None:
        low, high = self.run_time
        if not 0 <= low <= high:
            raise ValueError(f"run_time must be 0 <= min <= max, got {self.run_time}")
        if self.failure_rate is not None and not 0 <= self.failure_rate <= 1:
            raise ValueError(f"failure_rate must be within [0, 1], got {self.failure_rate}")
        if self.outputs < 1:
            raise ValueError(f"outputs must be >= 1, got {self.outputs}")
        if self.price < 0:
            raise ValueError(f"price must be >= 0, got {self.price}")


def seed_models() -> dict[str, ModelProfile]:
    """The two seed models with realistic run times (seconds, before scaling)."""
    return {
        WAN_TEXT_TO_IMAGE: ModelProfile(run_time=(2.0, 6.0), price=0.04),
        RUNWAY_IMAGE_TO_VIDEO: ModelProfile(run_time=(10.0, 30.0), price=0.05),
    }
