"""The two seed models' catalog schemas, transcribed verbatim from their RunComfy pages."""

from __future__ import annotations

from typing import Any

_TOO_BIG = "The uploaded image width and height must not exceed 8000 pixels."

WAN_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Esquema de entrada",
    "required": ["prompt"],
    "properties": {
        "prompt": {"title": "Prompt", "description": "", "type": "string", "maxLength": 800},
        "negative_prompt": {"title": "Negative Prompt", "description": "", "type": "string"},
        "aspect_ratio": {
            "title": "Resolution (W:H)",
            "description": "",
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
        "seed": {"title": "Seed", "description": "", "type": "integer"},
        "prompt_extend": {
            "title": "Magic Prompt",
            "description": "",
            "type": "boolean",
            "default": True,
        },
    },
}

RUNWAY_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Esquema de entrada",
    "required": ["promptText", "promptImage"],
    "properties": {
        "promptText": {"title": "Prompt", "description": "", "type": "string", "maxLength": 512},
        "promptImage": {
            "title": "Image",
            "description": "",
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
            "description": "",
            "type": "string",
            "enum": ["1280:768", "768:1280"],
            "default": "1280:768",
        },
        "duration": {
            "title": "Duration",
            "description": "",
            "type": "integer",
            "enum": [5, 10],
            "default": 5,
        },
        "seed": {
            "title": "Seed",
            "description": "",
            "maximum": 4294967295,
            "minimum": 0,
            "type": "integer",
        },
    },
}

OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "image": {"type": "string", "format": "uri", "description": "URL de una sola imagen"},
        "video": {"type": "string", "format": "uri", "description": "URL de un solo vídeo"},
        "images": {
            "type": "array",
            "description": "varias URLs de imagen",
            "items": {"type": "string", "format": "uri"},
        },
        "videos": {
            "type": "array",
            "description": "varias URLs de vídeo",
            "items": {"type": "string", "format": "uri"},
        },
    },
}
