"""Read a catalog `input_schema` into Nodes: the rules the validator and codegen share."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, TypeGuard

import msgspec

from ._rules import MediaKind, MediaRule, MediaSpec

__all__ = [
    "LOOPBACK_URL_PATTERN",
    "SCALARS",
    "URL_PATTERN",
    "URL_RULE",
    "Field",
    "Node",
    "Parser",
    "same",
]

#: A file input: a public https URL (RunComfy fetches it) or a data: URI.
URL_PATTERN = r"^(https://\S+|data:\S+)\Z"
#: The same, and plain http to a loopback host: the simulator's own files, for a client whose
#: API is on loopback too (RunComfy itself could never fetch those).
LOOPBACK_URL_PATTERN = (
    r"^(https://\S+|data:\S+|http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/\S*)?)\Z"
)
URL_RULE = "must be a public https URL or a data: URI"

_FILES = {"uri": MediaKind.ANY, "image_uri": MediaKind.IMAGE, "video_uri": MediaKind.VIDEO}
_FILES |= {"audio_uri": MediaKind.AUDIO}
SCALARS: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool}
_KINDS = {*SCALARS, "array", "object"}
_RULE_KEYS = {"type", "enum", "const", "nullable", "format", "validations", "pattern", "items"}
_RULE_KEYS |= {"minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "multipleOf"}
_RULE_KEYS |= {"exclusiveMaximum", "minItems", "maxItems", "properties", "required"}
_RULE_KEYS |= {"additionalProperties", "minProperties", "maxProperties"}
_WORDS = {"title", "description", "default", "examples", "example", "$comment", "$schema", "$id"}
_WORDS |= {"readOnly", "writeOnly", "deprecated"}
_MEASURE = re.compile(r"^(?P<measure>.+?)(?P<op><=|>=|<|>)$")
_MEASURES = ("width_pixels", "height_pixels", "width/height", "file_size_mb")


@dataclass(frozen=True, slots=True)
class Node:
    """The rules of one value, parsed from its schema; what the validator and codegen share.

    `kinds` None accepts any JSON value; `enum` (already narrowed to `kinds` and bounds) wins
    over the rest; `meta` holds msgspec.Meta keywords per kind; `url` marks a file URL string.
    """

    kinds: tuple[str, ...] | None = None
    nullable: bool = False
    enum: tuple[Any, ...] | None = None
    meta: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    url: MediaKind | None = None
    items: Node | None = None
    fields: tuple[Field, ...] | None = None
    closed: bool = False


@dataclass(frozen=True, slots=True)
class Field:
    """One property of an object: its wire name, rules, and whether it must be present."""

    name: str
    node: Node
    required: bool
    default: Any = None
    has_default: bool = False


class Parser:
    """Reads a schema into Nodes; records what it cannot check in `notes`, never raises."""

    def __init__(self, url_pattern: str = URL_PATTERN) -> None:
        self.notes: list[str] = []
        self.media: list[MediaSpec] = []
        self.url_pattern = url_pattern

    def note(self, path: str, text: str) -> None:
        self.notes.append(f"field {path}: {text}" if path else text)

    def properties(self, spec: Mapping[str, Any], path: str) -> tuple[tuple[Field, ...], bool]:
        """The fields of an object schema and whether it forbids other fields."""
        props = spec.get("properties", {})
        if not isinstance(props, Mapping):
            self.note(path, "'properties' is not an object: not checked")
            props = {}
        required = spec.get("required", [])
        if not isinstance(required, list):
            self.note(path, "'required' is not a list: not checked")
            required = []
        must = [name for name in required if isinstance(name, str)]
        fields = []
        for name, sub in props.items():
            if isinstance(name, str):
                node = self.node(sub, f"{path}.{name}" if path else name)
                known = isinstance(sub, Mapping) and "default" in sub
                default = sub.get("default") if known else None
                fields.append(Field(name, node, name in must, default, known))
                if not path and isinstance(sub, Mapping):
                    self._media(name, sub, node)
                elif isinstance(sub, Mapping) and "validations" in sub:
                    self.note(f"{path}.{name}", "file rules inside an object are not checked")
        fields += [Field(name, Node(), True) for name in dict.fromkeys(must) if name not in props]
        extra = spec.get("additionalProperties", True)
        if isinstance(extra, Mapping):
            self.note(path, "an 'additionalProperties' schema is not checked")
        return tuple(fields), extra is False

    def node(self, spec: object, path: str) -> Node:
        if not isinstance(spec, Mapping):
            self.note(path, "its rules are not an object: any value accepted")
            return Node()
        for key in spec:
            if key not in _RULE_KEYS | _WORDS and not str(key).startswith(("x-", "ui")):
                self.note(path, f"{key!r} not checked")
        kinds, nullable = self._kinds(spec, path)
        fmt = spec.get("format")
        url = _FILES.get(fmt.removesuffix("s")) if isinstance(fmt, str) else None
        if isinstance(fmt, str) and url is None:
            self.note(path, f"format {fmt!r} not checked")
        url = url or (MediaKind.IMAGE if "validations" in spec else None)
        meta = {kind: self._meta(kind, spec, path, url is not None) for kind in kinds or ()}
        items = fields = None
        closed = False
        if kinds and "array" in kinds:
            raw = spec.get("items", {})
            if not isinstance(raw, Mapping):
                self.note(path, "'items' is not an object: items not checked")
            elif url is not None:  # `image_uris`: a list of file URLs
                items = self.node({"type": "string", **raw, "format": "uri"}, f"{path}[]")
                items = replace(items, url=url)
            elif raw:
                items = self.node(raw, f"{path}[]")
        if kinds and "object" in kinds and "properties" in spec:
            fields, closed = self.properties(spec, path)
        elif isinstance(spec.get("additionalProperties"), Mapping):
            self.note(path, "an 'additionalProperties' schema is not checked")
        enum = self._enum(spec, kinds, nullable, meta, path)
        string_url = url if kinds is not None and "string" in kinds else None
        return Node(kinds, nullable, enum, meta, string_url, items, fields, closed)

    def _kinds(self, spec: Mapping[str, Any], path: str) -> tuple[tuple[str, ...] | None, bool]:
        nullable = spec.get("nullable") is True or ("default" in spec and spec["default"] is None)
        raw = spec.get("type")
        if raw is None:
            return None, nullable
        names = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        names = ["number" if name == "float" else name for name in names]
        if not names or any(name not in _KINDS and name != "null" for name in names):
            self.note(path, f"type {raw!r} not understood: any value accepted")
            return None, nullable
        kinds = tuple(dict.fromkeys(name for name in names if name != "null"))
        return kinds, nullable or "null" in names

    def _meta(self, kind: str, spec: Mapping[str, Any], path: str, url: bool) -> dict[str, Any]:
        keys = {"string": ("minLength", "maxLength"), "array": ("minItems", "maxItems")}
        keys["object"] = ("minProperties", "maxProperties")
        kw: dict[str, Any] = {}
        for key, name in zip(keys.get(kind, ()), ("min_length", "max_length"), strict=False):
            value = spec.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                kw[name] = value
            elif key in spec:
                self.note(path, f"{key!r} is not a count: not checked")
        if kind == "string" and (url or isinstance(spec.get("pattern"), str)):
            if url and "pattern" in spec:
                self.note(path, "'pattern' not checked on a file URL")
            kw["pattern"] = self.url_pattern if url else spec["pattern"]
        if kind in ("integer", "number"):
            kw |= self._bounds(spec, path, integer=kind == "integer")
        base = SCALARS.get(kind, list if kind == "array" else dict)
        for name in list(kw):
            try:  # constraints msgspec cannot take (bad regex, 2**70 bound) are noted, not fatal
                msgspec.json.Decoder(Annotated[base, msgspec.Meta(**{name: kw[name]})])
            except (TypeError, ValueError, re.error) as exc:
                self.note(path, f"{name} {kw.pop(name)!r} not checked ({exc})")
        return kw

    def _bounds(self, spec: Mapping[str, Any], path: str, *, integer: bool) -> dict[str, Any]:
        number: dict[str, float] = {}
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
            value = spec.get(key)
            if _real(value) and math.isfinite(value) and (key != "multipleOf" or value > 0):
                number[key] = value
                continue
            if key in spec and not isinstance(value, bool):
                self.note(path, f"{key!r} is not a usable number: not checked")
        for side in ("minimum", "maximum"):  # draft 4: a boolean makes the bound exclusive
            exclusive = "exclusive" + side.capitalize()
            if spec.get(exclusive) is True and side in number:
                number[exclusive] = number.pop(side)
        kw: dict[str, Any] = {}
        low = [(number[k], k == "minimum") for k in ("minimum", "exclusiveMinimum") if k in number]
        high = [(number[k], k == "maximum") for k in ("maximum", "exclusiveMaximum") if k in number]
        if low:  # the stricter bound wins: msgspec takes one of ge/gt
            value, inclusive = max(low, key=lambda b: (b[0], not b[1]))
            if integer:
                kw["ge"] = math.ceil(value) if inclusive else math.floor(value) + 1
            else:
                kw["ge" if inclusive else "gt"] = value
        if high:
            value, inclusive = min(high, key=lambda b: (b[0], b[1]))
            if integer:
                kw["le"] = math.floor(value) if inclusive else math.ceil(value) - 1
            else:
                kw["le" if inclusive else "lt"] = value
        step = number.get("multipleOf")
        if step is not None and (not integer or isinstance(step, int)):
            kw["multiple_of"] = step
        elif step is not None:
            self.note(path, f"multipleOf {step!r} not checked on an integer")
        return kw

    def _enum(
        self,
        spec: Mapping[str, Any],
        kinds: tuple[str, ...] | None,
        nullable: bool,
        meta: Mapping[str, Mapping[str, Any]],
        path: str,
    ) -> tuple[Any, ...] | None:
        raw = spec["enum"] if "enum" in spec else [spec["const"]] if "const" in spec else None
        if raw is None:
            return None
        if not isinstance(raw, list):
            self.note(path, "'enum' is not a list: not checked")
            return None
        kept: list[Any] = []
        for option in [*raw, None] if nullable else raw:
            fits = (option is None and nullable) or kinds is None
            fits = fits or any(_fits(option, kind, meta.get(kind, {})) for kind in kinds or ())
            if fits and not any(same(option, seen) for seen in kept):
                kept.append(option)
        return tuple(kept)

    def _media(self, name: str, spec: Mapping[str, Any], node: Node) -> None:
        kind = node.url or (node.items.url if node.items else None)
        if kind is None:
            return
        rules = []
        raw = spec.get("validations", [])
        for entry in raw if isinstance(raw, list) else [raw]:
            rule = entry.get("validation_rule") if isinstance(entry, Mapping) else None
            found = _MEASURE.match(rule) if isinstance(rule, str) else None
            value = entry.get("validation_value") if isinstance(entry, Mapping) else None
            if not found or not _real(value):
                self.note(name, f"validation {entry!r} not understood: not checked")
                continue
            measure, op = found["measure"], found["op"]
            if measure not in _MEASURES:
                self.note(name, f"validation {rule!r} not checked")
            text = entry.get("validation_error")
            message = text if isinstance(text, str) and text else f"{measure} must be {op} {value}"
            rules.append(MediaRule(measure, op, float(value), message))
        many = node.items is not None and node.items.url is not None
        self.media.append(MediaSpec(name, kind, many, tuple(rules)))


def _fits(option: object, kind: str, meta: Mapping[str, Any]) -> bool:
    """Whether an enum option is a value of `kind` within its bounds (checked by msgspec)."""
    if kind == "array" or kind == "object":
        return isinstance(option, list if kind == "array" else dict)
    typed = Annotated[SCALARS[kind], msgspec.Meta(**meta)] if meta else SCALARS[kind]
    try:
        msgspec.json.decode(msgspec.json.encode(option), type=typed)
    except (msgspec.ValidationError, TypeError, ValueError, OverflowError):
        return False
    return True


def _real(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def same(a: object, b: object) -> bool:
    """JSON equality where true is not 1 and 1 is not 1.0 (as msgspec and the server see it)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b
