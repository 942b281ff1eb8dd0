"""Catalog schemas become validators: every RunComfy quirk, plain-words errors, no crash ever."""

from __future__ import annotations

import copy
from typing import Any

import pytest

import runcomfy_async as rc
from runcomfy_async._rules import MediaKind, MediaRule
from runcomfy_async._schema import build_validator
from runcomfy_async.simulator._catalog_extra import EXTRA_MODELS, FLUX_LORA
from runcomfy_async.simulator._seeds import RUNWAY_INPUT_SCHEMA, WAN_INPUT_SCHEMA

MODEL = "acme/test/model"
IMAGE = "https://example.com/fox.png"


def obj(required: tuple[str, ...] = (), **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties}


def refusal(schema: Any, inputs: Any) -> rc.InvalidInputError:
    with pytest.raises(rc.InvalidInputError) as caught:
        build_validator(MODEL, schema).validate(inputs)
    return caught.value


FLOAT = {"type": "float", "minimum": 1, "maximum": 20}
INTEGER = {"type": "integer", "minimum": 1, "maximum": 50}
NULLABLE_SEED = {"type": "integer", "minimum": 0, "default": None}
LORAS = EXTRA_MODELS[FLUX_LORA].input_schema["properties"]["loras"]  # paths, 0 <= scale <= 4
CAMERA = {
    "type": "object",
    "required": ["motion"],
    "properties": {
        "motion": {"type": "string", "enum": ["static", "zoom_in"]},
        "strength": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
    },
}
SPECS: dict[str, dict[str, Any]] = {
    "float": FLOAT,
    "number": {"type": "number", "minimum": 0, "maximum": 1},
    "integer": INTEGER,
    "integer_float_bounds": {"type": "integer", "minimum": 0.5, "exclusiveMaximum": 2.5},
    "draft4": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
    "string": {"type": "string", "minLength": 1, "maxLength": 3},
    "boolean": {"type": "boolean"},
    "pattern": {"type": "string", "pattern": r"^\d+x\d+$"},
    "mixed_enum": {"enum": [1, "1", True, None]},
    "int_enum": {"type": "integer", "enum": [0, 1, 5]},
    "float_enum": {"type": "float", "enum": [0.5, 1.5, 2]},
    "list": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2},
    "seed": NULLABLE_SEED,
    "nullable": {"type": "string", "nullable": True},
    "or_null": {"type": ["string", "null"], "maxLength": 2},
    "image": {"type": "string", "format": "image_uri"},
    "images": {"type": "array", "format": "image_uris", "items": {"type": "string"}},
    "loras": LORAS,
    "camera": CAMERA,
    "multiple": {"type": "integer", "multipleOf": 5},
    "int_open": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
    "tie": {
        "type": "number",
        "minimum": 1,
        "exclusiveMinimum": 1,
        "maximum": 5,
        "exclusiveMaximum": 5,
    },
}
SCHEMA = {"type": "object", "required": [], "properties": SPECS}


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/files/r/0.png", "http://localhost/x.png", "http://[::1]:9/x.png"]
)
def test_loopback_http_file_urls_are_for_a_client_of_the_simulator_only(url: str) -> None:
    with pytest.raises(rc.InvalidInputError, match="must be a public https URL"):
        build_validator(MODEL, SCHEMA).validate({"image": url})  # RunComfy could never fetch it
    build_validator(MODEL, SCHEMA, allow_loopback=True).validate({"image": url})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("float", 1),
        ("float", 7.5),
        ("float", 20),
        ("number", 0),
        ("number", 0.25),
        ("integer", 50),
        ("integer_float_bounds", 1),
        ("integer_float_bounds", 2),
        ("draft4", 0.001),
        ("string", "é🦊x"),
        ("boolean", False),
        ("pattern", "1024x768"),
        ("mixed_enum", 1),
        ("mixed_enum", "1"),
        ("mixed_enum", True),
        ("mixed_enum", None),
        ("int_enum", 0),
        ("float_enum", 1.5),
        ("float_enum", 2),
        ("list", [1, 2]),
        ("seed", None),
        ("seed", 7),
        ("nullable", None),
        ("or_null", None),
        ("or_null", "ab"),
        ("image", IMAGE),
        ("image", "https://cdn.example.com/a/b.png?sig=abc&x=1"),
        ("image", "data:image/png;base64,iVBORw0KGgo="),
        ("images", [IMAGE, "data:image/png;base64,AA=="]),
        ("images", []),
        ("loras", [{"path": "https://example.com/a.safetensors", "scale": 4}]),
        ("loras", [{"path": "https://example.com/a.safetensors"}]),
        ("camera", {"motion": "zoom_in", "strength": 9.99}),
        ("camera", {"motion": "static"}),
        ("multiple", 15),
        ("int_open", 1),
        ("int_open", 9),
        ("tie", 1.01),
        ("tie", 4.99),
    ],
)
def test_values_keeping_every_rule_are_accepted(field: str, value: Any) -> None:
    inputs = {field: value}
    before = copy.deepcopy(inputs)
    build_validator(MODEL, SCHEMA).validate(inputs)
    assert inputs == before  # no default was filled in: RunComfy applies its own


@pytest.mark.parametrize(
    ("field", "value", "where", "rule"),
    [
        ("float", True, "float", "must be a number, got a boolean"),
        ("float", "7.5", "float", "must be a number, got a string"),
        ("float", 0.5, "float", "must be at least 1"),
        ("float", 20.5, "float", "must be at most 20"),
        ("number", None, "number", "must be a number, got null"),
        ("integer", 1.5, "integer", "must be an integer, got a number"),
        ("integer", 2.0, "integer", "must be an integer, got a number"),
        ("integer", True, "integer", "must be an integer, got a boolean"),
        ("integer", "2", "integer", "must be an integer, got a string"),
        ("integer", 0, "integer", "must be at least 1"),
        ("integer", 51, "integer", "must be at most 50"),
        ("integer_float_bounds", 0, "integer_float_bounds", "must be at least 1"),
        ("integer_float_bounds", 3, "integer_float_bounds", "must be at most 2"),
        ("draft4", 0, "draft4", "must be greater than 0"),
        ("string", "", "string", "must be at least 1 characters long"),
        ("string", "abcd", "string", "must be at most 3 characters long"),
        ("string", 3, "string", "must be a string, got an integer"),
        ("boolean", 1, "boolean", "must be a boolean, got an integer"),
        ("boolean", "true", "boolean", "must be a boolean, got a string"),
        ("pattern", "1024 x 768", "pattern", r"must match the pattern '^\\d+x\\d+$'"),
        ("mixed_enum", 1.0, "mixed_enum", 'is not one of 1, "1", true, null'),
        ("mixed_enum", False, "mixed_enum", "is not one of"),
        ("int_enum", True, "int_enum", "is not one of 0, 1, 5"),
        ("int_enum", 5.0, "int_enum", "is not one of 0, 1, 5"),
        ("float_enum", 1, "float_enum", "is not one of 0.5, 1.5, 2"),
        ("float_enum", "1.5", "float_enum", "is not one of"),
        ("list", [], "list", "must have at least 1 items"),
        ("list", [1, 2, 3], "list", "must have at most 2 items"),
        ("list", [1, "2"], "list[1]", "must be an integer, got a string"),
        ("list", "12", "list", "must be a list, got a string"),
        ("seed", -1, "seed", "must be at least 0"),
        ("seed", "x", "seed", "must be an integer or null, got a string"),
        ("integer", None, "integer", "must be an integer, got null"),
        ("nullable", 3, "nullable", "must be a string or null, got an integer"),
        ("or_null", "abc", "or_null", "must be at most 2 characters long"),
        ("image", "http://example.com/fox.png", "image", "must be a public https URL"),
        ("image", "https://", "image", "must be a public https URL or a data: URI"),
        ("image", "ftp://example.com/x.png", "image", "must be a public https URL"),
        ("image", "", "image", "must be a public https URL"),
        ("image", " https://example.com/x.png", "image", "must be a public https URL"),
        ("image", IMAGE + "\n", "image", "must be a public https URL"),
        ("image", "https://example.com/a fox.png", "image", "must be a public https URL"),
        ("image", "HTTP://example.com/x.png", "image", "must be a public https URL"),
        ("image", "http://localhost.evil.com/x.png", "image", "must be a public https URL"),
        ("image", "http://user@127.0.0.1/x.png", "image", "must be a public https URL"),
        ("image", "data:", "image", "must be a public https URL"),
        ("image", "file:///etc/passwd", "image", "must be a public https URL"),
        ("images", [IMAGE, "http://example.com/x.png"], "images[1]", "must be a public https"),
        ("images", IMAGE, "images", "must be a list, got a string"),
        (
            "loras",
            [{"path": IMAGE}, {"path": IMAGE, "scale": 5}],
            "loras[1].scale",
            "must be at most 4",
        ),
        ("loras", [{"path": IMAGE}, {"scale": 1}], "loras[1].path", "is required"),
        ("loras", [{"path": "http://example.com/l"}], "loras[0].path", "must be a public https"),
        ("loras", [{"path": IMAGE}] * 4, "loras", "must have at most 3 items"),
        ("loras", [{"path": IMAGE, "scale": True}], "loras[0].scale", "must be a number"),
        ("camera", {"motion": "pan"}, "camera.motion", "is not one of"),
        ("camera", {"strength": 1}, "camera.motion", "is required"),
        (
            "camera",
            {"motion": "static", "strength": 0},
            "camera.strength",
            "must be greater than 0",
        ),
        ("camera", {"motion": "static", "strength": 10}, "camera.strength", "must be less than 10"),
        ("camera", "zoom_in", "camera", "must be an object, got a string"),
        ("multiple", 7, "multiple", "must be a multiple of 5"),
        ("int_open", 0, "int_open", "must be at least 1"),
        ("int_open", 10, "int_open", "must be at most 9"),
        ("tie", 1, "tie", "must be greater than 1"),
        ("tie", 5, "tie", "must be less than 5"),
        ("float_enum", 0.7, "float_enum", "is not one of 0.5, 1.5, 2"),
    ],
)
def test_each_broken_rule_is_named_with_its_field(
    field: str, value: Any, where: str, rule: str
) -> None:
    error = refusal(SCHEMA, {field: value})
    assert error.field == where
    assert error.model_id == MODEL
    assert str(error).startswith(f"{MODEL}: {where}: ")
    assert rule in str(error)


def test_an_enum_refusal_shows_the_value_given_and_every_allowed_one() -> None:
    error = refusal(SCHEMA, {"camera": {"motion": "pan"}})
    assert str(error).endswith(': camera.motion: "pan" is not one of "static", "zoom_in"')


def test_a_missing_required_field_is_named() -> None:
    error = refusal(obj(("prompt",), prompt={"type": "string"}), {})
    assert (error.field, str(error)) == ("prompt", f"{MODEL}: prompt: is required")


def test_a_required_field_the_properties_do_not_list_must_still_be_there() -> None:
    schema = obj(("prompt", "mode"), prompt={"type": "string"})
    assert refusal(schema, {"prompt": "a"}).field == "mode"
    build_validator(MODEL, schema).validate({"prompt": "a", "mode": [1, {"any": None}]})


def test_unknown_fields_are_accepted_and_listed_unless_the_schema_closes_the_object() -> None:
    validator = build_validator(MODEL, obj(prompt={"type": "string"}))
    validator.validate({"prompt": "a", "promt": "typo"})
    assert validator.unknown_fields({"prompt": "a", "promt": "typo"}) == ("promt",)
    closed = {**obj(prompt={"type": "string"}), "additionalProperties": False}
    error = refusal(closed, {"prompt": "a", "promt": "typo"})
    assert (error.field, str(error)) == (
        "promt",
        f"{MODEL}: unknown field promt (did you mean prompt?)",
    )
    nested = obj(camera={**CAMERA, "additionalProperties": False})
    assert refusal(nested, {"camera": {"motion": "static", "speed": 1}}).field == "camera.speed"
    build_validator(MODEL, obj(camera=CAMERA)).validate({"camera": {"motion": "static", "x": 1}})


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (["prompt"], "inputs must be a mapping"),
        ({1: "x"}, "inputs must be a mapping"),
        ({"prompt": object()}, "not JSON-serialisable"),
    ],
)
def test_inputs_that_cannot_be_sent_are_refused(inputs: Any, message: str) -> None:
    error = refusal(obj(prompt={"type": "string"}), inputs)
    assert message in str(error)
    assert error.field is None


def test_the_seed_schemas_are_understood_in_full() -> None:
    for schema in (WAN_INPUT_SCHEMA, RUNWAY_INPUT_SCHEMA):
        assert build_validator(MODEL, schema).notes == ()
    error = refusal(RUNWAY_INPUT_SCHEMA, {"promptText": "x" * 513, "promptImage": IMAGE})
    assert (error.field, str(error)) == (
        "promptText",
        f"{MODEL}: promptText: must be at most 512 characters long",
    )
    assert refusal(WAN_INPUT_SCHEMA, {"prompt": "fox", "seed": 1.0}).field == "seed"
    assert refusal(RUNWAY_INPUT_SCHEMA, {"promptText": "a", "promptImage": ""}).field == (
        "promptImage"
    )


def test_file_inputs_and_their_rules_are_listed_for_the_preflight_check() -> None:
    runway = build_validator(MODEL, RUNWAY_INPUT_SCHEMA)
    (spec,) = runway.media
    assert (spec.field, spec.kind, spec.many) == ("promptImage", MediaKind.IMAGE, False)
    assert [(r.measure, r.op, r.value) for r in spec.rules] == [
        ("width_pixels", "<", 8000),
        ("height_pixels", "<", 8000),
        ("width/height", ">", 0.5),
        ("width/height", "<", 2),
        ("file_size_mb", "<", 16),
    ]
    assert spec.rules[4].message == "File size must be less than 16 MB."
    schema = obj(
        video={"type": "string", "format": "video_uri"},
        audio={"type": "string", "format": "audio_uri"},
        other={"type": "string", "format": "uri"},
        images={
            "type": "array",
            "format": "image_uris",
            "items": {"type": "string"},
            "validations": [{"validation_rule": "height_pixels<=", "validation_value": 4096}],
        },
        prompt={"type": "string"},
    )
    media = {m.field: m for m in build_validator(MODEL, schema).media}
    assert {name: (m.kind, m.many) for name, m in media.items()} == {
        "video": (MediaKind.VIDEO, False),
        "audio": (MediaKind.AUDIO, False),
        "other": (MediaKind.ANY, False),
        "images": (MediaKind.IMAGE, True),
    }
    assert media["images"].rules == (
        MediaRule("height_pixels", "<=", 4096.0, "height_pixels must be <= 4096"),
    )


def test_a_field_with_validations_but_no_format_is_an_image_url() -> None:
    schema = obj(
        image={
            "type": "string",
            "validations": [{"validation_rule": "file_size_mb<", "validation_value": 16}],
        }
    )
    (spec,) = build_validator(MODEL, schema).media
    assert spec.kind is MediaKind.IMAGE
    assert "https URL" in str(refusal(schema, {"image": "not a url"}))


def test_strange_validations_are_kept_or_noted_never_fatal() -> None:
    schema = obj(
        video={
            "type": "string",
            "format": "video_uri",
            "validations": [
                {"validation_rule": "duration_seconds<", "validation_value": 30},
                {"validation_rule": "bogus", "validation_value": 1},
                {"validation_rule": "file_size_mb<", "validation_value": "16"},
                "not an entry",
            ],
        }
    )
    validator = build_validator(MODEL, schema)
    (spec,) = validator.media
    assert [rule.measure for rule in spec.rules] == ["duration_seconds"]
    assert len(validator.notes) == 4
    assert all(note.startswith("field video: ") for note in validator.notes)


@pytest.mark.parametrize(
    ("spec", "note"),
    [
        ({"type": "tensor"}, "type 'tensor' not understood"),
        ({"type": 5}, "type 5 not understood"),
        ({"type": []}, "type [] not understood"),
        ({"oneOf": [{"type": "string"}]}, "'oneOf' not checked"),
        ({"anyOf": [{"type": "string"}]}, "'anyOf' not checked"),
        ({"$ref": "#/definitions/x"}, "'$ref' not checked"),
        ({"type": "string", "format": "email"}, "format 'email' not checked"),
        ({"type": "string", "pattern": "(unclosed"}, "pattern '(unclosed' not checked"),
        ({"type": "integer", "minimum": "0"}, "'minimum' is not a usable number"),
        ({"type": "integer", "maximum": 2**70}, "le 1180591620717411303424 not checked"),
        ({"type": "integer", "multipleOf": 0.5}, "multipleOf 0.5 not checked on an integer"),
        ({"type": "string", "maxLength": -1}, "'maxLength' is not a count"),
        ({"type": "string", "enum": "a"}, "'enum' is not a list"),
        ({"type": "array", "items": [{"type": "string"}]}, "'items' is not an object"),
        ({"type": "array", "uniqueItems": True}, "'uniqueItems' not checked"),
        ({"type": "object", "additionalProperties": {"type": "string"}}, "'additionalProperties'"),
        ({"type": "object", "properties": [1]}, "'properties' is not an object"),
        ({"type": "object", "properties": {}, "required": "a"}, "'required' is not a list"),
        ("string", "its rules are not an object"),
    ],
)
def test_unknown_constructs_are_accepted_and_noted(spec: Any, note: str) -> None:
    validator = build_validator(MODEL, obj(x=spec))
    assert any(n.startswith("field x: ") and note in n for n in validator.notes), validator.notes
    validator.validate({"y": 1})


def test_annotations_and_extension_keys_are_not_noted() -> None:
    spec = {"type": "string", "title": "T", "description": "", "examples": ["a"], "x-order": 1}
    assert build_validator(MODEL, obj(x=spec)).notes == ()


def test_what_a_type_list_allows_is_checked_per_type() -> None:
    schema = obj(x={"type": ["integer", "string"], "minimum": 2, "maxLength": 1})
    validator = build_validator(MODEL, schema)
    for good in (2, "a"):
        validator.validate({"x": good})
    for bad in (1, "ab", 2.5, None):
        with pytest.raises(rc.InvalidInputError):
            validator.validate({"x": bad})


def test_enum_options_outside_the_type_or_bounds_are_not_allowed() -> None:
    schema = obj(x={"type": "integer", "enum": [1, "1", 2.0, 50, 7], "maximum": 10})
    validator = build_validator(MODEL, schema)
    validator.validate({"x": 7})
    for value in ("1", 2.0, 50):
        assert "is not one of 1, 7" in str(refusal(schema, {"x": value}))
    assert validator.notes == ()


@pytest.mark.parametrize(
    "schema",
    [
        None,
        {},
        [],
        "object",
        3,
        {"type": "array"},
        {"type": "object", "properties": {}, "additionalProperties": True},
    ],
)
def test_a_missing_or_odd_schema_accepts_any_mapping(schema: Any) -> None:
    validator = build_validator(MODEL, schema)
    validator.validate({"anything": [1, {"x": None}], "camelCase": True})
    validator.validate({})
    with pytest.raises(rc.InvalidInputError):
        validator.validate(["not", "a", "mapping"])  # type: ignore[arg-type]


GARBAGE: list[Any] = [
    {"properties": {"a": None, "b": [], "c": {"type": None}, 1: {"type": "string"}}},
    {"properties": {"a": {"type": "object", "properties": {"b": {"type": "array"}}}}},
    {"properties": {"a": {"type": "array", "items": {"type": "array", "items": "x"}}}},
    {"properties": {"a": {"type": "integer", "minimum": float("nan"), "maximum": True}}},
    {"properties": {"a": {"type": "number", "exclusiveMinimum": 5, "exclusiveMaximum": 1}}},
    {"properties": {"a": {"enum": []}}, "required": [None, 3, "a"]},
    {"properties": {"a": {"enum": [[1], {"b": 2}, None]}}},
    {"properties": {"a": {"type": ["null"]}}},
    {"properties": {"a": {"type": ["object", "array"], "properties": {"b": {}}}}},
    {"properties": {"a": {"type": "string", "format": 7, "validations": {"x": 1}}}},
    {"properties": {"a": {"type": "string", "format": "image_uris", "pattern": "x"}}},
    {"properties": {"a": {"const": 3}, "b": {"type": "boolean", "enum": [1, True]}}},
    {"properties": {"a": {"type": "integer", "enum": [2**70, 1]}}},
    {"type": "object", "properties": {"a": {"type": "object", "additionalProperties": False}}},
]


@pytest.mark.parametrize("schema", GARBAGE)
def test_garbage_schemas_never_crash_the_build_or_the_check(schema: Any) -> None:
    validator = build_validator(MODEL, schema)
    messages = []
    for inputs in ({}, {"a": None}, {"a": 1}, {"a": [1]}, {"a": {"b": 2}}, {"b": True}):
        try:
            validator.validate(inputs)
        except rc.InvalidInputError as error:
            messages.append(str(error))
    assert all(message.startswith(f"{MODEL}: ") for message in messages)


def test_enum_const_and_empty_enum() -> None:
    validator = build_validator(MODEL, GARBAGE[11])
    validator.validate({"a": 3, "b": True})
    assert refusal(GARBAGE[11], {"a": 4}).field == "a"
    assert refusal(GARBAGE[11], {"b": 1}).field == "b"
    assert "is not one of " in str(refusal(GARBAGE[5], {"a": 1}))


def test_validator_is_built_once_and_reused() -> None:
    validator = build_validator(MODEL, SCHEMA)
    for _ in range(3):
        validator.validate({"integer": 3})
        with pytest.raises(rc.InvalidInputError):
            validator.validate({"integer": 0})
    assert repr(validator) == f"<SchemaValidator {MODEL} notes=0>"


def test_bounds_are_shown_as_the_schema_wrote_them() -> None:
    assert str(refusal(obj(x=FLOAT), {"x": 0.5})) == f"{MODEL}: x: must be at least 1"
    half = obj(x={"type": "number", "maximum": 2.5})
    assert str(refusal(half, {"x": 3})) == f"{MODEL}: x: must be at most 2.5"
