"""`-i NAME=VALUE` read by the model's schema: text stays text, numbers only where it says."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from .._inputs import TYPED
from .output import CommandError

__all__ = ["file_input", "input_schema_of", "parse_inputs", "typed_value"]

_FILE_FORMATS = frozenset({"uri", "image_uri", "video_uri", "audio_uri"})
_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})


def input_schema_of(model_id: str, catalog: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The input schema that types `-i` values: the catalog's, else the typed input's own
    (a catalog that could not be read), else None (values read as JSON where they parse)."""
    if catalog and isinstance(catalog.get("properties"), Mapping):
        return catalog
    typed = TYPED.get(model_id)
    if typed is None:
        return None
    found: dict[str, Any] = msgspec.json.schema(typed)
    ref = str(found.get("$ref", "")).rsplit("/", 1)[-1]
    resolved: dict[str, Any] = found.get("$defs", {}).get(ref, found)
    return resolved


def parse_inputs(
    pairs: Sequence[str], raw_json: str | None, schema: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Inputs from `--input-json` and `-i NAME=VALUE` pairs (which win), each value read as
    its field's schema type; `-i NAME=@PATH` reads it from a file (`@@` starts a value with
    a literal `@`)."""
    inputs: dict[str, Any] = {}
    if raw_json is not None:
        try:
            value = json.loads(raw_json)
        except ValueError as exc:
            raise CommandError(f"--input-json is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise CommandError("--input-json must be a JSON object")
        inputs.update(value)
    properties = (schema or {}).get("properties")
    fields: Mapping[str, Any] = properties if isinstance(properties, Mapping) else {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CommandError(f"-i {pair!r}: expected NAME=VALUE")
        spec = fields.get(name)
        spec = spec if isinstance(spec, Mapping) else None
        if text.startswith("@@"):
            text = text[1:]
        elif text.startswith("@"):
            if spec is not None and is_file(spec):
                inputs[name] = file_input(text[1:])
                continue
            text = _read_text(name, text[1:])
        inputs[name] = typed_value(name, text, spec)
    return inputs


def is_file(spec: Mapping[str, Any]) -> bool:
    """Whether a field takes a file (an image, video or audio URL, or a list of them)."""
    fmt = spec.get("format")
    return (isinstance(fmt, str) and fmt.removesuffix("s") in _FILE_FORMATS) or (
        "validations" in spec
    )


def file_input(path: str) -> Any:
    """The value of `-i NAME=@PATH` for a file input: the local file itself, which the SDK
    checks against the model's media rules and sends (the local-files feature)."""
    return Path(path).expanduser()


def _read_text(name: str, path: str) -> str:
    """A text file's content for `-i NAME=@PATH`, without its final line break."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except UnicodeError:
        raise CommandError(f"-i {name}=@{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise CommandError(f"-i {name}=@{path}: cannot read it: {exc.strerror or exc}") from None
    return text.removesuffix("\n").removesuffix("\r")


def typed_value(name: str, text: str, spec: Mapping[str, Any] | None) -> Any:
    """`text` as the value its schema `spec` says: a string field keeps it as typed
    (`1984` is the prompt "1984"); integer, number, boolean are parsed; lists and objects
    are JSON. A field the schema does not describe: JSON if it parses, else the text."""
    kinds = _kinds(spec)
    if kinds is None:
        if spec is not None and _enum_text(spec, text):
            return text
        return _json_or_text(text)
    if "null" in kinds and text == "null":
        return None
    if "string" in kinds:
        return text
    for kind in kinds:
        try:
            return _parse(kind, text)
        except ValueError:
            continue
    wanted = " or ".join(_WORDS.get(kind, kind) for kind in kinds)
    raise CommandError(f"-i {name}={text}: {name} takes {wanted}")


_WORDS = {"integer": "an integer", "number": "a number", "boolean": "true or false"}
_WORDS |= {"array": "a JSON list", "object": "a JSON object", "null": "null"}


def _kinds(spec: Mapping[str, Any] | None) -> list[str] | None:
    raw = (spec or {}).get("type")
    names = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else None
    if not names:
        return None
    return ["number" if name == "float" else str(name) for name in names]


def _parse(kind: str, text: str) -> Any:
    if kind == "integer":
        return int(text.strip())
    if kind == "number":
        try:
            return int(text.strip())
        except ValueError:
            number = float(text)
        if not math.isfinite(number):
            raise ValueError(text)
        return number
    if kind == "boolean":
        word = text.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ValueError(text)
    if kind in ("array", "object"):
        value = json.loads(text, parse_constant=_no_constant)
        if not isinstance(value, list if kind == "array" else dict):
            raise ValueError(text)
        return value
    raise ValueError(text)


def _enum_text(spec: Mapping[str, Any], text: str) -> bool:
    options = spec.get("enum")
    return isinstance(options, list) and text in options


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError:
        return text


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN and Infinity stay text
