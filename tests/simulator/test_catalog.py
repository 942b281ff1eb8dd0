"""Input validation against the seed schemas, and catalog prices."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from runcomfy_async.simulator import (
    RUNWAY_IMAGE_TO_VIDEO,
    WAN_TEXT_TO_IMAGE,
    ModelProfile,
    default_models,
    validate,
)
from runcomfy_async.simulator._catalog import build_catalog
from runcomfy_async.simulator._media import png

CATALOG = build_catalog(default_models())
WAN = CATALOG[WAN_TEXT_TO_IMAGE].input_schema
RUNWAY = CATALOG[RUNWAY_IMAGE_TO_VIDEO].input_schema
IMAGE = "https://example.com/cat.png"


def data_uri(width: int, height: int, padding: int = 0) -> str:
    """A PNG as a data: URI; only its IHDR is real past 64x64, which is all the rules read."""
    if width * height <= 64 * 64:
        data = png(width, height, (1, 2, 3))
    else:
        data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sII", 13, b"IHDR", width, height)
    return "data:image/png;base64," + base64.b64encode(data + b"\0" * padding).decode()


@pytest.mark.parametrize(
    "inputs",
    [
        {"prompt": "a cat"},
        {"prompt": "x" * 800},
        {
            "prompt": "a cat",
            "negative_prompt": "dogs",
            "aspect_ratio": "720:1440 (1:2)",
            "seed": 42,
            "prompt_extend": False,
        },
    ],
)
def test_valid_wan_inputs_pass(inputs: dict[str, Any]) -> None:
    assert validate(WAN, inputs) == []


@pytest.mark.parametrize(
    ("inputs", "field", "message"),
    [
        ({}, "prompt", "field required"),
        ({"prompt": "x" * 801}, "prompt", "must be at most 800 characters"),
        ({"prompt": 3}, "prompt", "must be of type string"),
        ({"prompt": "a", "aspect_ratio": "16:9"}, "aspect_ratio", "must be one of"),
        ({"prompt": "a", "prompt_extend": "yes"}, "prompt_extend", "must be of type boolean"),
        ({"prompt": "a", "seed": "1"}, "seed", "must be of type integer"),
        ({"prompt": "a", "seed": 1.5}, "seed", "must be of type integer"),
        ({"prompt": "a", "seed": True}, "seed", "must be of type integer"),
        ({"prompt": "a", "steps": 4}, "steps", "unknown field"),
    ],
)
def test_each_wan_rule_is_enforced(inputs: dict[str, Any], field: str, message: str) -> None:
    [(got_field, got_message)] = validate(WAN, inputs)
    assert got_field == field
    assert got_message.startswith(message)


@pytest.mark.parametrize(
    "inputs",
    [
        {"promptText": "a cat walks", "promptImage": IMAGE},
        {"promptText": "x" * 512, "promptImage": IMAGE, "seed": 0},
        {"promptText": "", "promptImage": IMAGE, "seed": 4294967295},
        {"promptText": "a", "promptImage": IMAGE, "ratio": "768:1280", "duration": 10},
        {"promptText": "a", "promptImage": data_uri(64, 36)},
        {"promptText": "a", "promptImage": data_uri(8000, 4000)},
    ],
)
def test_valid_runway_inputs_pass(inputs: dict[str, Any]) -> None:
    assert validate(RUNWAY, inputs) == []


@pytest.mark.parametrize(
    ("inputs", "field", "message"),
    [
        ({"promptImage": IMAGE}, "promptText", "field required"),
        ({"promptText": "a"}, "promptImage", "field required"),
        ({"promptText": "x" * 513, "promptImage": IMAGE}, "promptText", "must be at most 512"),
        ({"promptText": "a", "promptImage": IMAGE, "ratio": "1:1"}, "ratio", "must be one of"),
        ({"promptText": "a", "promptImage": IMAGE, "duration": 7}, "duration", "must be one of"),
        ({"promptText": "a", "promptImage": IMAGE, "duration": "5"}, "duration", "must be of"),
        ({"promptText": "a", "promptImage": IMAGE, "seed": -1}, "seed", "must be >= 0"),
        ({"promptText": "a", "promptImage": IMAGE, "seed": 2**32}, "seed", "must be <= 4294967295"),
        ({"promptText": "a", "promptImage": IMAGE, "fps": 24}, "fps", "unknown field"),
        ({"promptText": "a", "promptImage": ""}, "promptImage", "must be a public http(s) URL"),
        ({"promptText": "a", "promptImage": "file:///etc/passwd"}, "promptImage", "must be a"),
        ({"promptText": "a", "promptImage": data_uri(300, 100)}, "promptImage", "The aspect"),
        ({"promptText": "a", "promptImage": data_uri(8001, 8000)}, "promptImage", "The uploaded"),
        ({"promptText": "a", "promptImage": data_uri(800, 3000)}, "promptImage", "The aspect"),
        ({"promptText": "a", "promptImage": data_uri(64, 36, 16 << 20)}, "promptImage", "File"),
        ({"promptText": "a", "promptImage": "data:image/png;base64,!!"}, "promptImage", "data:"),
    ],
)
def test_each_runway_rule_is_enforced(inputs: dict[str, Any], field: str, message: str) -> None:
    [(got_field, got_message)] = validate(RUNWAY, inputs)
    assert got_field == field
    assert got_message.startswith(message)


def test_every_broken_rule_is_reported() -> None:
    errors = validate(RUNWAY, {"seed": -5, "extra": 1})
    assert {field for field, _ in errors} == {"promptText", "promptImage", "seed", "extra"}


def test_a_body_that_is_not_an_object_is_rejected() -> None:
    assert validate(WAN, ["a cat"]) == [("", "the request body must be a JSON object of inputs")]


def test_runcomfy_float_type_takes_ints_and_floats_but_not_bools_or_strings() -> None:
    schema = {"type": "object", "properties": {"cfg": {"type": "float", "minimum": 1}}}
    assert validate(schema, {"cfg": 1}) == []
    assert validate(schema, {"cfg": 7.5}) == []
    assert validate(schema, {"cfg": 0.5}) == [("cfg", "must be >= 1")]
    assert validate(schema, {"cfg": "7.5"}) == [("cfg", "must be of type float")]
    assert validate(schema, {"cfg": True}) == [("cfg", "must be of type float")]


def test_catalog_entries_carry_the_seed_schema_and_prices() -> None:
    wan, runway = CATALOG[WAN_TEXT_TO_IMAGE], CATALOG[RUNWAY_IMAGE_TO_VIDEO]
    assert (wan.categories, wan.price_unit, wan.media) == (("text-to-image",), "output", "image")
    assert (runway.categories, runway.price_unit, runway.media) == (
        ("image-to-video",),
        "second",
        "video",
    )
    rules = [
        v["validation_rule"]
        for v in runway.input_schema["properties"]["promptImage"]["validations"]
    ]
    assert rules == [
        "width_pixels<",
        "height_pixels<",
        "width/height>",
        "width/height<",
        "file_size_mb<",
    ]
    assert wan.cost({"prompt": "a"}) == 0.04
    assert runway.cost({"duration": 10}) == 0.5
    assert runway.cost({}) == 0.25  # the schema's default duration, 5 s


def test_a_custom_model_gets_a_derived_entry() -> None:
    catalog = build_catalog({"acme/fast/text-to-video": ModelProfile(price=0.1, outputs=2)})
    entry = catalog["acme/fast/text-to-video"]
    assert (entry.categories, entry.media, entry.price_unit) == (
        ("text-to-video",),
        "video",
        "second",
    )
    assert validate(entry.input_schema, {"anything": [1, 2]}) == []
