"""Turn a catalog `input_schema` into a validator: parsed once, checked by msgspec types."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Union

import msgspec

from ._errors import InvalidInputError
from ._inputs import encode_json
from ._messages import not_one_of, plain, show, unknown_field, value_at
from ._rules import MediaSpec
from ._schema_parse import (
    LOOPBACK_URL_PATTERN,
    SCALARS,
    URL_PATTERN,
    URL_RULE,
    Node,
    Parser,
    same,
)

__all__ = ["SchemaValidator", "build_validator"]

_LITERAL: Any = Literal  # subscripted at run time with values read from the schema
_UNION: Any = Union


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
            base: Any = SCALARS.get(kind)
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
