"""The two seed models' catalog schemas, transcribed from their RunComfy pages (the rules
verbatim; titles and descriptions in English, as RunComfy's English pages give them)."""

from __future__ import annotations

from typing import Any

_TOO_BIG = "The uploaded image width and height must not exceed 8000 pixels."

WAN_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Input schema",
    "required": ["prompt"],
    "properties": {
        "prompt": {
            "title": "Prompt",
            "description": "What the image should show.",
            "type": "string",
            "maxLength": 800,
        },
        "negative_prompt": {
            "title": "Negative Prompt",
            "description": "What the image should not show.",
            "type": "string",
        },
        "aspect_ratio": {
            "title": "Resolution (W:H)",
            "description": "Width and height of the image in pixels, with its aspect ratio.",
            "type": "string",
            "enum": [
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
            ],
            "default": "1440:810 (16:9)",
        },
        "seed": {
            "title": "Seed",
            "description": "The same seed and inputs give the same image; unset: a random one.",
            "type": "integer",
        },
        "prompt_extend": {
            "title": "Magic Prompt",
            "description": "Let the model expand the prompt with more detail first.",
            "type": "boolean",
            "default": True,
        },
    },
}

RUNWAY_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Input schema",
    "required": ["promptText", "promptImage"],
    "properties": {
        "promptText": {
            "title": "Prompt",
            "description": "What should happen in the video.",
            "type": "string",
            "maxLength": 512,
        },
        "promptImage": {
            "title": "Image",
            "description": "The first frame of the video: a public https URL or a data: URI.",
            "type": "string",
            "validations": [
                {
                    "validation_rule": "width_pixels<",
                    "validation_value": 8000,
                    "validation_error": _TOO_BIG,
                },
                {
                    "validation_rule": "height_pixels<",
                    "validation_value": 8000,
                    "validation_error": _TOO_BIG,
                },
                {
                    "validation_rule": "width/height>",
                    "validation_value": 0.5,
                    "validation_error": "The aspect ratio range should be 1:2 to 2:1.",
                },
                {
                    "validation_rule": "width/height<",
                    "validation_value": 2,
                    "validation_error": "The aspect ratio range should be 1:2 to 2:1.",
                },
                {
                    "validation_rule": "file_size_mb<",
                    "validation_value": 16,
                    "validation_error": "File size must be less than 16 MB.",
                },
            ],
        },
        "ratio": {
            "title": "Aspect Ratio (W:H)",
            "description": "Width and height of the video in pixels.",
            "type": "string",
            "enum": ["1280:768", "768:1280"],
            "default": "1280:768",
        },
        "duration": {
            "title": "Duration",
            "description": "Length of the video in seconds.",
            "type": "integer",
            "enum": [5, 10],
            "default": 5,
        },
        "seed": {
            "title": "Seed",
            "description": "The same seed and inputs give the same video; unset: a random one.",
            "maximum": 4294967295,
            "minimum": 0,
            "type": "integer",
        },
    },
}

OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "image": {"type": "string", "format": "uri", "description": "The URL of one image"},
        "video": {"type": "string", "format": "uri", "description": "The URL of one video"},
        "images": {
            "type": "array",
            "description": "The URLs of several images",
            "items": {"type": "string", "format": "uri"},
        },
        "videos": {
            "type": "array",
            "description": "The URLs of several videos",
            "items": {"type": "string", "format": "uri"},
        },
    },
}
