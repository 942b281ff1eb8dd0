"""Turn a catalog `input_schema` into a validator: parsed once, checked by msgspec types."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, TypeGuard, Union

import msgspec

from ._errors import InvalidInputError
from ._inputs import encode_json
from ._messages import not_one_of, plain, show, unknown_field, value_at
from ._rules import MediaKind, MediaRule, MediaSpec

__all__ = [
    "LOOPBACK_URL_PATTERN",
    "URL_PATTERN",
    "URL_RULE",
    "Field",
    "Node",
    "SchemaValidator",
    "build_validator",
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
_SCALARS: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool}
_KINDS = {*_SCALARS, "array", "object"}
_RULE_KEYS = {"type", "enum", "const", "nullable", "format", "validations", "pattern", "items"}
_RULE_KEYS |= {"minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "multipleOf"}
_RULE_KEYS |= {"exclusiveMaximum", "minItems", "maxItems", "properties", "required"}
_RULE_KEYS |= {"additionalProperties", "minProperties", "maxProperties"}
_WORDS = {"title", "description", "default", "examples", "example", "$comment", "$schema", "$id"}
_WORDS |= {"readOnly", "writeOnly", "deprecated"}
_MEASURE = re.compile(r"^(?P<measure>.+?)(?P<op><=|>=|<|>)$")
_MEASURES = ("width_pixels", "height_pixels", "width/height", "file_size_mb")
_LITERAL: Any = Literal  # subscripted at run time with values read from the schema
_UNION: Any = Union


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
        base = _SCALARS.get(kind, list if kind == "array" else dict)
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
    typed = Annotated[_SCALARS[kind], msgspec.Meta(**meta)] if meta else _SCALARS[kind]
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


class SchemaValidator:
    """Checks a dict of inputs against one model's catalog schema, before anything is sent.

    Fields the schema does not name are accepted (the catalog may lag behind the model)
    unless it says `additionalProperties: false`; defaults are never filled in, so RunComfy
    applies its own. `notes` lists the rules that are not checked; `media` the file inputs.
    """

    def __init__(
        self,
        model_id: str,
        input_schema: Mapping[str, Any] | None,
        *,
        allow_loopback: bool = False,
    ) -> None:
        self.model_id = model_id
        self._checks: dict[type, tuple[Callable[[Any], bool], str]] = {}
        self._hints: dict[str, str] = {}
        self._enums: dict[str, tuple[Any, ...]] = {}  # allowed values, by path shape
        self._names: dict[str, tuple[str, ...]] = {}  # an object's field names, by path shape
        self._open = isinstance(input_schema, Mapping) and (
            input_schema.get("additionalProperties") is True
        )
        self._fields: frozenset[str] | None = None
        self._notes: list[str] = []
        parser = Parser(LOOPBACK_URL_PATTERN if allow_loopback else URL_PATTERN)
        self._decoder: msgspec.json.Decoder[Any] | None = None
        if not isinstance(input_schema, Mapping) or not input_schema:
            parser.note("", "no input schema: any inputs accepted")
        elif input_schema.get("type", "object") != "object":
            parser.note("", f"schema type {input_schema.get('type')!r}: any inputs accepted")
        else:
            fields, closed = parser.properties(input_schema, "")
            root = self._type(Node(("object",), fields=fields, closed=closed), "")
            if root is not Any:
                self._decoder = msgspec.json.Decoder(root, dec_hook=self._hook)
                self._fields = frozenset(f.name for f in fields)
        self.notes: tuple[str, ...] = (*parser.notes, *self._notes)
        self.media: tuple[MediaSpec, ...] = tuple(parser.media)

    def validate(self, inputs: Mapping[str, Any]) -> None:
        """Raise InvalidInputError naming the first field (`loras[1].scale`) and its rule."""
        if not isinstance(inputs, Mapping) or not all(isinstance(k, str) for k in inputs):
            raise InvalidInputError(
                f"{self.model_id}: inputs must be a mapping of field names to values",
                model_id=self.model_id,
            )
        self.validate_json(encode_json(dict(inputs), self.model_id))

    def validate_json(self, raw: bytes) -> None:
        """validate() for inputs already encoded as a JSON object (a submit's body)."""
        if self._decoder is None:
            return
        try:
            self._decoder.decode(raw)
        except msgspec.ValidationError as exc:
            path, rule = self._explain(str(exc), raw)
            where = f"{path}: " if path and not rule.startswith("unknown field ") else ""
            raise InvalidInputError(
                f"{self.model_id}: {where}{rule}", model_id=self.model_id, field=path or None
            ) from None

    def unknown_fields(self, inputs: Mapping[str, Any]) -> tuple[str, ...]:
        """Top-level names the schema does not list (none when it says
        `additionalProperties: true`, or lists no fields)."""
        if self._fields is None or self._open or not self._fields:
            return ()
        return tuple(k for k in inputs if k not in self._fields)

    def refuse_unknown(self, inputs: Mapping[str, Any]) -> None:
        """Raise InvalidInputError for the first top-level name the schema does not list:
        `unknown field prompt_text (did you mean promptText?)`."""
        unknown = self.unknown_fields(inputs)
        if unknown:
            rule = unknown_field(unknown[0], self._fields or ())
            raise InvalidInputError(
                f"{self.model_id}: {rule}", model_id=self.model_id, field=unknown[0]
            )

    def __repr__(self) -> str:
        return f"<SchemaValidator {self.model_id} notes={len(self.notes)}>"

    def _type(self, node: Node, path: str) -> Any:
        if node.enum is not None:
            rule = "must be one of " + ", ".join(show(o) for o in node.enum)
            self._hints[_shape(path)] = rule
            self._enums[_shape(path)] = node.enum
            if node.enum and all(o is None or isinstance(o, str | int) for o in node.enum):
                with contextlib.suppress(TypeError, ValueError, NotImplementedError):
                    msgspec.json.Decoder(_LITERAL[node.enum])  # not for ints beyond 64 bits
                    return _LITERAL[node.enum]
            return self._custom(lambda v: any(same(v, o) for o in node.enum or ()), rule)
        if node.kinds is None:
            return Any
        if node.url is not None:
            self._hints[_shape(path)] = URL_RULE
        members: list[Any] = []
        for kind in node.kinds:
            base: Any = _SCALARS.get(kind)
            if kind == "array":
                item = self._type(node.items, f"{path}[0]") if node.items else Any
                base = list.__class_getitem__(item)
            elif kind == "object" and node.fields is not None:
                base = self._struct(node, path)
            elif kind == "object":
                base = dict[str, Any]
            meta = node.meta.get(kind)
            members.append(Annotated[base, msgspec.Meta(**meta)] if meta else base)
        typed = _UNION[(*members, None) if node.nullable else tuple(members)]
        try:
            msgspec.json.Decoder(typed, dec_hook=self._hook)
        except (TypeError, ValueError, NotImplementedError) as exc:  # a union it can't tell apart
            self._notes.append(f"field {path}: not checked ({exc})")
            return Any
        return typed

    def _struct(self, node: Node, path: str) -> type:
        self._names[_shape(path)] = tuple(f.name for f in node.fields or ())
        specs: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        for index, f in enumerate(node.fields or ()):
            typed = self._type(f.node, f"{path}.{f.name}" if path else f.name)
            specs.append((f"f{index}", typed) if f.required else (f"f{index}", typed, None))
        rename = {f"f{index}": f.name for index, f in enumerate(node.fields or ())}
        return msgspec.defstruct(
            "Inputs", specs, kw_only=True, forbid_unknown_fields=node.closed, rename=rename
        )

    def _custom(self, check: Callable[[Any], bool], rule: str) -> type:
        marker = type(f"Rule{len(self._checks)}", (), {})
        self._checks[marker] = (check, rule)
        return marker

    def _hook(self, kind: type, value: Any) -> Any:
        check, rule = self._checks[kind]
        if not check(value):
            raise ValueError(rule)
        return kind()

    def _explain(self, message: str, raw: bytes) -> tuple[str, str]:
        rule, _, at = message.partition(" - at `$")
        path = at.rstrip("`").lstrip(".")
        named = re.match(r"Object (missing required|contains unknown) field `(.+)`$", rule)
        if named:
            inside = path
            path = f"{path}.{named[2]}" if path else named[2]
            if named[1].startswith("missing"):
                return path, "is required"
            return path, unknown_field(path, self._names.get(_shape(inside), ()))
        options = self._enums.get(_shape(path))
        found, value = value_at(raw, path)
        if options is not None and found:
            return path, not_one_of(value, options)
        hint = self._hints.get(_shape(path))
        return path, hint or plain(rule)


def _shape(path: str) -> str:
    return re.sub(r"\[\d+\]", "[0]", path)


def build_validator(
    model_id: str, input_schema: Mapping[str, Any] | None, *, allow_loopback: bool = False
) -> SchemaValidator:
    """A validator for one model's catalog `input_schema`; it never raises on a strange schema.

    File URLs must be https or data: URIs; `allow_loopback` also takes plain http to a
    loopback host, for a client of the simulator (whose files are served there).
    """
    return SchemaValidator(model_id, input_schema, allow_loopback=allow_loopback)
