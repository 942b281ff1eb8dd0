"""The model catalog: entries, prices, and a validator for RunComfy's JSON-schema dialect."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ._catalog_extra import EXTRA_MODELS
from ._profile import RUNWAY_IMAGE_TO_VIDEO, WAN_TEXT_TO_IMAGE, ModelProfile
from ._seeds import OUTPUT_SCHEMA, RUNWAY_INPUT_SCHEMA, WAN_INPUT_SCHEMA

_SEEDS: dict[str, tuple[str, dict[str, Any]]] = {
    WAN_TEXT_TO_IMAGE: ("Wan 2.2 Text to Image", WAN_INPUT_SCHEMA),
    RUNWAY_IMAGE_TO_VIDEO: ("Runway Gen-3 Alpha Turbo Image to Video", RUNWAY_INPUT_SCHEMA),
    **{model_id: (extra.name, extra.input_schema) for model_id, extra in EXTRA_MODELS.items()},
}
_ANY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": True}
_URI_FORMATS = frozenset({"uri", "image_uri", "image_uris", "video_uri", "video_uris", "audio_uri"})
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "float": (int, float),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One model as the catalog shows it, plus what the simulator needs to run it."""

    model_id: str
    display_name: str
    categories: tuple[str, ...]
    media: Literal["image", "video"]
    price_unit: str
    profile: ModelProfile
    input_schema: Mapping[str, Any]
    pricing_note: str | None = None

    def to_json(self, *, include_schema: bool = True) -> dict[str, Any]:
        """The `GET /v1/models/{model_id}` answer (in RunComfy's field names)."""
        body: dict[str, Any] = {
            "model_id": self.model_id,
            "display_name": self.display_name,
            "categories": list(self.categories),
            "base_price_usd": self.profile.price,
            "price_unit": self.price_unit,
        }
        if self.pricing_note is not None:
            body["pricing_note"] = self.pricing_note
        if include_schema:
            body["input_schema"] = self.input_schema
            body["output_schema"] = OUTPUT_SCHEMA
        return body

    def outputs(self, inputs: Mapping[str, Any]) -> int:
        """Outputs one run makes: the count the inputs ask for (`num_images`, ...), else
        the schema's default for it, else the profile's."""
        properties = self.input_schema.get("properties", {})
        for name in COUNT_FIELDS:
            if name not in properties:
                continue
            value = inputs.get(name, properties[name].get("default"))
            if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
                return value
        return self.profile.outputs

    def cost(self, inputs: Mapping[str, Any]) -> float:
        """USD for one run: per output, per second of video (`duration`), or per request."""
        if self.price_unit in ("output", "image"):
            units = float(self.outputs(inputs))
        elif self.price_unit == "second":
            default = self.input_schema.get("properties", {}).get("duration", {}).get("default")
            duration = inputs.get("duration", default)
            units = float(duration) if isinstance(duration, int | float) else 1.0
        else:
            units = 1.0
        return round(self.profile.price * units, 6)


#: Inputs that ask a model for several outputs per run, in the names models use for it.
COUNT_FIELDS = ("num_images", "num_outputs", "num_videos", "batch_size")
_NOTES = {"second": "Billed per second of output video (the `duration` input, else its default)."}


def build_catalog(models: Mapping[str, ModelProfile]) -> dict[str, CatalogEntry]:
    """Catalog entries for the configured models, seeds first-class, others derived."""
    catalog: dict[str, CatalogEntry] = {}
    for model_id, profile in models.items():
        name, seed_schema = _SEEDS.get(model_id, (model_id, _ANY_OBJECT))
        category = model_id.rsplit("/", 1)[-1]
        media: Literal["image", "video"] = "video" if category.endswith("video") else "image"
        unit = profile.price_unit or ("second" if media == "video" else "output")
        catalog[model_id] = CatalogEntry(
            model_id=model_id,
            display_name=profile.display_name or name,
            categories=profile.categories if profile.categories is not None else (category,),
            media=media,
            price_unit=unit,
            profile=profile,
            input_schema=profile.input_schema or seed_schema,
            pricing_note=profile.pricing_note or _NOTES.get(unit),
        )
    return catalog


def validate(schema: Mapping[str, Any], inputs: object) -> list[tuple[str, str]]:
    """(field, message) for each rule `inputs` breaks; empty if the inputs are valid."""
    if not isinstance(inputs, dict):
        return [("", "the request body must be a JSON object of inputs")]
    properties: Mapping[str, Any] = schema.get("properties", {})
    errors = [(name, "field required") for name in schema.get("required", ()) if name not in inputs]
    for name, value in inputs.items():
        spec = properties.get(name)
        if spec is None:
            if not schema.get("additionalProperties", False):
                errors.append((name, "unknown field"))
            continue
        message = _check(spec, value)
        if message is not None:
            errors.append((name, message))
    return errors


def _check(spec: Mapping[str, Any], value: object) -> str | None:
    kind = spec.get("type")
    if value is None and (
        spec.get("nullable") is True
        or ("default" in spec and spec["default"] is None)
        or (isinstance(kind, list) and "null" in kind)
    ):
        return None
    if isinstance(kind, list):  # ["string", "null"]: checked as its one non-null type
        kind = next((k for k in kind if k != "null"), None)
    accepted = _TYPES.get(kind) if isinstance(kind, str) else None
    if accepted is not None and (
        not isinstance(value, accepted) or (isinstance(value, bool) and kind != "boolean")
    ):
        return f"must be of type {kind}"
    if "enum" in spec and not any(
        value == option and type(value) is type(option) for option in spec["enum"]
    ):
        return f"must be one of {spec['enum']}"
    if isinstance(value, str):
        if "maxLength" in spec and len(value) > spec["maxLength"]:
            return f"must be at most {spec['maxLength']} characters"
        if "minLength" in spec and len(value) < spec["minLength"]:
            return f"must be at least {spec['minLength']} characters"
        if spec.get("format") in _URI_FORMATS or "validations" in spec:
            return _check_file(spec, value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in spec and value < spec["minimum"]:
            return f"must be >= {spec['minimum']}"
        if "maximum" in spec and value > spec["maximum"]:
            return f"must be <= {spec['maximum']}"
        if "exclusiveMinimum" in spec and value <= spec["exclusiveMinimum"]:
            return f"must be > {spec['exclusiveMinimum']}"
        if "exclusiveMaximum" in spec and value >= spec["exclusiveMaximum"]:
            return f"must be < {spec['exclusiveMaximum']}"
    if isinstance(value, list):
        return _check_items(spec, value)
    if isinstance(value, dict) and "properties" in spec:
        errors = validate(spec, value)
        return f"{errors[0][0]}: {errors[0][1]}" if errors else None
    return None


def _check_items(spec: Mapping[str, Any], value: list[Any]) -> str | None:
    if "minItems" in spec and len(value) < spec["minItems"]:
        return f"must have at least {spec['minItems']} items"
    if "maxItems" in spec and len(value) > spec["maxItems"]:
        return f"must have at most {spec['maxItems']} items"
    items: Mapping[str, Any] = spec.get("items", {})
    if spec.get("format") in _URI_FORMATS:  # image_uris: each item is a file
        items = {**items, "format": "uri", "validations": spec.get("validations", [])}
    for index, item in enumerate(value):
        message = _check(items, item)
        if message is not None:
            return f"item {index}: {message}"
    return None


def _check_file(spec: Mapping[str, Any], value: str) -> str | None:
    """A file input must be a URL the server can fetch; data: URIs are checked in full."""
    if value.startswith(("https://", "http://")):
        return None  # the real service fetches it; the simulator takes it on trust
    if not value.startswith("data:") or "," not in value:
        return "must be a public http(s) URL or a data: URI"
    header, _, payload = value.partition(",")
    try:
        data = base64.b64decode(payload, validate=True) if header.endswith(";base64") else b""
    except (binascii.Error, ValueError):
        return "data: URI is not valid base64"
    width, height = _png_size(data)
    measures = {"file_size_mb": len(data) / (1024 * 1024), "width_pixels": width}
    measures["height_pixels"] = height
    measures["width/height"] = width / height if width and height else None
    for rule in spec.get("validations", ()):
        name = str(rule.get("validation_rule", ""))
        limit = rule.get("validation_value")
        measured = measures.get(name.rstrip("<>="))
        if measured is None or not isinstance(limit, int | float):
            continue
        broken = measured > limit if "<" in name else measured < limit
        if broken:
            return str(rule.get("validation_error") or f"breaks {name} {limit}")
    return None


def _png_size(data: bytes) -> tuple[float | None, float | None]:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None, None
