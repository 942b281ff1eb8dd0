"""Catalog models beyond the two seeds, shaped like RunComfy's: floats, files, LoRAs, objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._profile import ModelProfile, seed_models

_IMAGE = "https://example.com/input.png"


@dataclass(frozen=True, slots=True)
class ExtraModel:
    """One more catalog model: its name, schema, run profile and a valid example input.

    Its kind of output and price unit follow from the model id like every entry's: an id
    ending in `video` makes videos priced per second (of `duration`), others images.
    """

    name: str
    input_schema: dict[str, Any]
    profile: ModelProfile
    example: dict[str, Any]


def _schema(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _rule(rule: str, value: float, error: str) -> dict[str, Any]:
    """One `validations` entry, e.g. `_rule("file_size_mb<", 16, "File size must be ...")`."""
    return {"validation_rule": rule, "validation_value": value, "validation_error": error}


_SEED = {"title": "Seed", "type": "integer", "minimum": 0, "maximum": 2147483647, "default": None}
_FILE_SIZE = "File size must be less than {} MB."

FLUX_DEV = "blackforestlabs/flux-1-dev/text-to-image"
SEEDREAM_EDIT = "bytedance/seedream-4/edit"
ALEPH_VIDEO = "runwayml/gen4-aleph/video-to-video"
FLUX_LORA = "blackforestlabs/flux-1-dev/lora/text-to-image"
KLING_VIDEO = "kling/kling-2-1/master/text-to-video"
CLARITY_UPSCALE = "philz1337x/clarity-upscaler/image-upscale"
LIPSYNC_VIDEO = "sync/lipsync-2/lipsync-video"

EXTRA_MODELS: dict[str, ExtraModel] = {
    FLUX_DEV: ExtraModel(
        "FLUX.1 [dev] Text to Image",
        _schema(
            ["prompt"],
            prompt={"title": "Prompt", "type": "string", "minLength": 1, "maxLength": 2000},
            image_size={
                "title": "Image Size",
                "type": "string",
                "enum": ["square_hd", "square", "portrait_4_3", "landscape_4_3", "landscape_16_9"],
                "default": "landscape_4_3",
            },
            num_inference_steps={"type": "integer", "minimum": 1, "maximum": 50, "default": 28},
            guidance_scale={"type": "float", "minimum": 1, "maximum": 20, "default": 3.5},
            num_images={"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
            seed=_SEED,
            enable_safety_checker={"type": "boolean", "default": True},
        ),
        ModelProfile(run_time=(3.0, 10.0), price=0.025),
        {"prompt": "a red fox in snow", "guidance_scale": 3, "num_inference_steps": 28},
    ),
    SEEDREAM_EDIT: ExtraModel(
        "Seedream 4.0 Edit",
        _schema(
            ["prompt", "image_urls"],
            prompt={"type": "string", "maxLength": 5000},
            image_urls={
                "title": "Images",
                "type": "array",
                "format": "image_uris",
                "items": {"type": "string"},
                "minItems": 1,
                "maxItems": 10,
                "validations": [
                    _rule("width_pixels<=", 6000, "Each image must be at most 6000 pixels wide."),
                    _rule("file_size_mb<", 10, _FILE_SIZE.format(10)),
                ],
            },
            size={"type": "string", "pattern": r"^\d{3,4}x\d{3,4}$", "default": "2048x2048"},
            seed=_SEED,
        ),
        ModelProfile(run_time=(4.0, 12.0), price=0.03),
        {"prompt": "make it night", "image_urls": [_IMAGE], "size": "1024x1024"},
    ),
    ALEPH_VIDEO: ExtraModel(
        "Runway Gen-4 Aleph Video to Video",
        _schema(
            ["prompt", "video_url"],
            prompt={"type": "string", "maxLength": 1000},
            video_url={
                "title": "Video",
                "type": "string",
                "format": "video_uri",
                "validations": [_rule("file_size_mb<", 100, _FILE_SIZE.format(100))],
            },
            duration={"type": "integer", "enum": [5, 10], "default": 5},
            aspect_ratio={"type": "string", "enum": ["16:9", "9:16", "1:1"], "default": "16:9"},
        ),
        ModelProfile(run_time=(20.0, 60.0), price=0.15),
        {"prompt": "turn day into dusk", "video_url": "https://example.com/clip.mp4"},
    ),
    FLUX_LORA: ExtraModel(
        "FLUX.1 [dev] with LoRAs",
        _schema(
            ["prompt"],
            prompt={"type": "string", "maxLength": 2000},
            loras={
                "title": "LoRAs",
                "type": "array",
                "maxItems": 3,
                "items": {
                    "type": "object",
                    "required": ["path"],
                    "properties": {
                        "path": {"type": "string", "format": "uri"},
                        "scale": {"type": "float", "minimum": 0, "maximum": 4, "default": 1},
                    },
                },
                "default": [],
            },
            guidance_scale={"type": "float", "minimum": 1, "maximum": 20, "default": 3.5},
            seed=_SEED,
        ),
        ModelProfile(run_time=(4.0, 14.0), price=0.035),
        {
            "prompt": "a watercolour fox",
            "loras": [{"path": "https://example.com/style.safetensors", "scale": 0.8}],
        },
    ),
    KLING_VIDEO: ExtraModel(
        "Kling 2.1 Master Text to Video",
        _schema(
            ["prompt"],
            prompt={"type": "string", "maxLength": 2500},
            negative_prompt={"type": "string", "nullable": True},
            duration={"type": "integer", "enum": [5, 10], "default": 5},
            cfg_scale={"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
            camera_control={
                "title": "Camera",
                "type": "object",
                "required": ["motion"],
                "properties": {
                    "motion": {
                        "type": "string",
                        "enum": ["static", "pan_left", "pan_right", "zoom_in", "zoom_out"],
                    },
                    "strength": {"type": "float", "minimum": -10, "maximum": 10, "default": 5},
                },
                "additionalProperties": False,
            },
        ),
        ModelProfile(run_time=(30.0, 90.0), price=0.28),
        {"prompt": "a fox runs", "duration": 10, "camera_control": {"motion": "zoom_in"}},
    ),
    CLARITY_UPSCALE: ExtraModel(
        "Clarity Upscaler",
        _schema(
            ["image_url"],
            image_url={
                "title": "Image",
                "type": "string",
                "format": "image_uri",
                "validations": [
                    _rule("file_size_mb<", 20, _FILE_SIZE.format(20)),
                    _rule("width_pixels<=", 4096, "The image must be at most 4096 pixels wide."),
                    _rule("height_pixels<=", 4096, "The image must be at most 4096 pixels high."),
                ],
            },
            scale_factor={"type": "integer", "enum": [2, 4], "default": 2},
            creativity={"type": "float", "exclusiveMinimum": 0, "maximum": 1, "default": 0.35},
            prompt={"type": ["string", "null"], "maxLength": 500, "default": None},
        ),
        ModelProfile(run_time=(5.0, 20.0), price=0.02),
        {"image_url": _IMAGE, "scale_factor": 4, "creativity": 0.5, "prompt": None},
    ),
    LIPSYNC_VIDEO: ExtraModel(
        "Sync Lipsync 2",
        _schema(
            ["video_url", "audio_url"],
            video_url={"type": "string", "format": "video_uri"},
            audio_url={"type": "string", "format": "audio_uri"},
            sync_mode={
                "type": "string",
                "enum": ["cut_off", "loop", "bounce", "silence"],
                "default": "cut_off",
            },
        ),
        ModelProfile(run_time=(15.0, 45.0), price=0.05),
        {"video_url": "https://example.com/talk.mp4", "audio_url": "https://example.com/a.wav"},
    ),
}


def catalog_models() -> dict[str, ModelProfile]:
    """The seed models and every extra model (the simulator's default catalog)."""
    return {**seed_models(), **{mid: model.profile for mid, model in EXTRA_MODELS.items()}}
