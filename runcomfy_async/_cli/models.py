"""`runcomfy models list` and `models info`: the catalog, and one model's whole input shape."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import msgspec

from .._client import Client
from .._wire import ModelInfo
from .output import CommandError, print_json, usd

__all__ = ["describe_model", "field_lines", "list_line", "list_models", "shape"]

OpenClient = Callable[[argparse.Namespace], AbstractAsyncContextManager[Client]]

_FILES = {"image_uri": "image", "video_uri": "video", "audio_uri": "audio", "uri": "file"}
_ENUM_SHOWN = 20  # enum values listed inline before "… (N in all)"
ENUM_INLINE = 60  # characters of enum values shown on the field's line; longer: below it


def price(info: ModelInfo) -> str:
    """`$0.0400 per output`, or `price unknown`."""
    if info.base_price_usd is None:
        return "price unknown"
    return f"{usd(info.base_price_usd)} per {info.price_unit or 'run'}"


def list_line(info: ModelInfo, width: int) -> str:
    """One catalog entry as `models list` prints it: id, categories, price and unit."""
    categories = ",".join(info.categories) or "-"
    return f"{info.model_id:<{width}}  {categories:<18} {price(info)}"


async def list_models(args: argparse.Namespace, open_client: OpenClient) -> int:
    """`runcomfy models list`: one line (or JSON object) per model, in the catalog's order."""
    async with open_client(args) as client:
        found = [
            info
            async for info in client.models(
                args.search, args.category, include_schema=bool(args.json)
            )
        ]
    if args.json:
        for info in found:
            print_json(msgspec.to_builtins(info))
        return 0
    if not found:
        what = " ".join(
            f"{option} {value!r}"
            for option, value in (("--search", args.search), ("--category", args.category))
            if value
        )
        raise CommandError(f"no model in the catalog matches {what or 'anything'}", 5)
    width = max(len(info.model_id) for info in found)
    for info in found:
        print(list_line(info, width))
    return 0


def describe_model(info: ModelInfo) -> str:
    """A catalog entry for people: id, name, categories, price and unit, then every input."""
    categories = ", ".join(info.categories) or "no category"
    lines = [f"{info.model_id}: {info.name or ''} ({categories})", f"price: {price(info)}"]
    if info.pricing_note:
        lines.append(f"pricing: {info.pricing_note}")
    schema = info.input_schema or {}
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        return "\n".join([*lines, "inputs: any JSON object (no schema published)"])
    lines.append("inputs (* required):")
    lines += field_lines(schema, "  ")
    if schema.get("additionalProperties") is False:
        lines.append("  (no other fields)")
    return "\n".join(lines)


def field_lines(schema: Mapping[str, Any], indent: str) -> list[str]:
    """Each property of an object schema: name, shape, default, description; the fields of
    nested objects and list items below it, and a file input's media rules."""
    properties: Mapping[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    names = {name: f"{name}{'*' if name in required else ''}" for name in properties}
    width = max((len(label) for label in names.values()), default=0)
    lines: list[str] = []
    for name, spec in properties.items():
        spec = spec if isinstance(spec, Mapping) else {}
        inner = _object_of(spec)
        options: list[Any] = spec["enum"] if isinstance(spec.get("enum"), list) else []
        long_enum = len(_enum(options)) > ENUM_INLINE
        text = shape(spec)
        if inner is not None and len(text) <= ENUM_INLINE + 10:
            inner = None  # its fields fit on the line: `up to 3 of {path*: file URL, ...}`
        elif inner is not None:
            text = shape(spec, brief=True)
        if long_enum:
            kinds = " or ".join(k for k in _kinds(spec) if k != "null") or "value"
            text = f"{kinds}, one of {len(options)} values (below)"
        if "default" in spec:
            text += f", default {_json(spec['default'])}"
        lines.append(f"{indent}{names[name]:<{width}}  {text}")
        under = f"{indent}{'':<{width}}    "
        about = _about(name, spec)
        if about:
            lines.append(under + about)
        if long_enum:
            lines += _wrap([_json(option) for option in options], under)
        lines += _rules(spec, under)
        if inner is not None:
            lines += field_lines(inner, under)
    return lines


def _wrap(words: list[str], indent: str, width: int = 96) -> list[str]:
    """`words` joined by ` | `, in lines of at most `width` characters."""
    lines, line = [], ""
    for word in words:
        if line and len(indent) + len(line) + len(word) + 3 > width:
            lines.append(indent + line + " |")
            line = ""
        line = f"{line} | {word}" if line else word
    return [*lines, indent + line] if line else lines


def shape(spec: Mapping[str, Any], *, brief: bool = False) -> str:
    """A value's type and limits in a few words: `up to 3 of {path*: file URL, scale:
    number 0 to 4}`, `string of at most 800 characters`, `one of "16:9" | "9:16"`.
    `brief` names an object's fields without their shapes (they are listed below it)."""
    kinds = _kinds(spec)
    nullable = spec.get("nullable") is True or "null" in kinds
    kinds = [kind for kind in kinds if kind != "null"]
    if "enum" in spec and isinstance(spec["enum"], list):
        text = _enum(spec["enum"])
    elif _file(spec) is not None and "array" not in kinds:
        text = _file(spec) or "file"
    elif not kinds:
        text = "any value"
    else:
        text = " or ".join(_one(kind, spec, brief) for kind in kinds)
    return f"{text} or null" if nullable else text


def _kinds(spec: Mapping[str, Any]) -> list[str]:
    raw = spec.get("type")
    names = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return ["number" if name == "float" else str(name) for name in names]


def _one(kind: str, spec: Mapping[str, Any], brief: bool) -> str:
    if kind == "string":
        return "string" + _length(spec, "minLength", "maxLength", "characters") + _pattern(spec)
    if kind in ("integer", "number"):
        return kind + _bounds(spec)
    if kind == "array":
        return _array(spec, brief)
    if kind == "object":
        inner = _object_of(spec)
        return _inline(inner, brief) if inner is not None else "object"
    return kind


def _array(spec: Mapping[str, Any], brief: bool) -> str:
    low, high = spec.get("minItems"), spec.get("maxItems")
    items = spec.get("items") if isinstance(spec.get("items"), Mapping) else {}
    file = _file(spec)
    if file is not None:  # `image_uris`: a list of file URLs
        what = file.replace(" file (https URL or data: URI)", " files (https URLs or data: URIs)")
        what = what.replace("file URL", "file URLs")
    elif items and isinstance(items.get("properties"), Mapping):
        what = _inline(items, brief)
    else:
        what = shape(items) if items else "any value"
    if isinstance(low, int) and isinstance(high, int):
        count = f"{low} to {high}" if low != high else f"exactly {low}"
    elif isinstance(high, int):
        count = f"up to {high}"
    elif isinstance(low, int):
        count = f"at least {low}"
    else:
        return f"list of {what}"
    return f"{count} of {what}"


def _inline(schema: Mapping[str, Any], brief: bool = False) -> str:
    """An object schema on one line: `{path*: file, scale: number 0 to 4}` (`brief`:
    `{path*, scale}`)."""
    properties: Mapping[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    parts = []
    for name, spec in properties.items():
        spec = spec if isinstance(spec, Mapping) else {}
        star = "*" if name in required else ""
        parts.append(f"{name}{star}" if brief else f"{name}{star}: {shape(spec)}")
    return "{" + ", ".join(parts) + "}"


def _object_of(spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The object schema whose fields are listed under this one (itself, or its items)."""
    if isinstance(spec.get("properties"), Mapping) and spec["properties"]:
        return spec
    items = spec.get("items")
    if isinstance(items, Mapping) and isinstance(items.get("properties"), Mapping):
        return items if items["properties"] else None
    return None


def _file(spec: Mapping[str, Any]) -> str | None:
    """`image file (https URL or data: URI)` for a file input, else None."""
    fmt = spec.get("format")
    kind = _FILES.get(fmt.removesuffix("s")) if isinstance(fmt, str) else None
    if kind is None and "validations" in spec:
        kind = "image"
    if kind is None:
        return None
    return f"{kind} file (https URL or data: URI)" if kind != "file" else "file URL"


def _length(spec: Mapping[str, Any], low_key: str, high_key: str, unit: str) -> str:
    low, high = spec.get(low_key), spec.get(high_key)
    if isinstance(low, int) and isinstance(high, int):
        return f" of {low} to {high} {unit}"
    if isinstance(high, int):
        return f" of at most {high} {unit}"
    if isinstance(low, int):
        return f" of at least {low} {unit}"
    return ""


def _pattern(spec: Mapping[str, Any]) -> str:
    pattern = spec.get("pattern")
    return f" matching {pattern}" if isinstance(pattern, str) else ""


def _bounds(spec: Mapping[str, Any]) -> str:
    """` 1 to 50`, ` > 0, ≤ 1`, ` ≥ 0`; and `, a multiple of 8`."""
    low, high = _num(spec.get("minimum")), _num(spec.get("maximum"))
    low_x, high_x = _num(spec.get("exclusiveMinimum")), _num(spec.get("exclusiveMaximum"))
    if spec.get("exclusiveMinimum") is True:  # draft 4: the bound itself is exclusive
        low, low_x = None, low
    if spec.get("exclusiveMaximum") is True:
        high, high_x = None, high
    parts = []
    if low is not None and high is not None:
        parts.append(f"{low} to {high}")
    else:
        parts += [f"≥ {low}"] if low is not None else []
        parts += [f"≤ {high}"] if high is not None else []
    parts = ([f"> {low_x}"] if low_x is not None else []) + parts
    parts += [f"< {high_x}"] if high_x is not None else []
    step = _num(spec.get("multipleOf"))
    text = " " + ", ".join(parts) if parts else ""
    return text + (f", a multiple of {step}" if step is not None else "")


def _num(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return f"{value:g}" if isinstance(value, float) else str(value)


def _enum(options: list[Any]) -> str:
    shown = " | ".join(_json(option) for option in options[:_ENUM_SHOWN])
    more = f" … ({len(options)} in all)" if len(options) > _ENUM_SHOWN else ""
    return f"one of {shown}{more}"


def _about(name: str, spec: Mapping[str, Any]) -> str:
    """The field's title (unless it only repeats the name) and description, as one line."""
    title, description = (
        str(spec[key]).strip() if isinstance(spec.get(key), str) else ""
        for key in ("title", "description")
    )
    if _plain(title) == _plain(name):
        title = ""
    return ": ".join(word for word in (title, description) if word)


def _plain(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def _rules(spec: Mapping[str, Any], indent: str) -> list[str]:
    """A file input's media rules (RunComfy's `validations`), one line each."""
    raw = spec.get("validations")
    lines = []
    for rule in raw if isinstance(raw, list) else []:
        if not isinstance(rule, Mapping):
            continue
        name = str(rule.get("validation_rule", ""))
        value = _num(rule.get("validation_value"))
        measure = name.rstrip("<>=")
        op = name[len(measure) :] or "?"
        error = rule.get("validation_error")
        said = f" ({error})" if isinstance(error, str) and error else ""
        lines.append(f"{indent}rule: {measure} {op} {value}{said}")
    return lines


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
