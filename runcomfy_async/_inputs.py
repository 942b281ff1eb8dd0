"""Typed model inputs: the ModelInput base and the validation every input passes before a call."""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Self, TypeVar, cast

import msgspec

from ._errors import InvalidInputError
from ._files import has_files, refer
from ._messages import not_one_of, plain, unknown_field, value_at

__all__ = ["ModelInput"]

_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)+")
_CHECKED_IDS: set[str] = set()  # model ids found well-formed, up to 1,024 kept
_ENCODER = msgspec.json.Encoder()
#: RunComfy refuses submit bodies over 64 MiB (its own nodes check before sending).
MAX_SUBMIT_BYTES = 64 * 1024 * 1024

M = TypeVar("M", bound="ModelInput")


class ModelInput(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Base of the typed inputs in `runcomfy_async.models`: each knows its `model_id`.

    Fields left unset are not sent, so RunComfy applies its own defaults. Constructing an
    input checks nothing (a msgspec trait); `validate()` and every submit check all rules.
    """

    model_id: ClassVar[str]
    #: Plain-words rule per field, shown instead of msgspec's regex text.
    rule_hints: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "model_id" in cls.__dict__:
            TYPED[cls.model_id] = cls

    def validate(self) -> Self:
        """Check every schema rule; raise InvalidInputError naming the field and the rule."""
        decode_input(
            type(self), encode_json(refer(self) if has_files(self) else self, self.model_id)
        )
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build and check an input from wire-named fields (e.g. `promptText`)."""
        return decode_input(cls, encode_json(dict(data), cls.model_id))

    def to_dict(self) -> dict[str, Any]:
        """The wire dict RunComfy is sent (wire names, unset fields left out): the inverse
        of from_dict(). Checks nothing; validate() does."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data


# model_id -> its typed input, filled as `runcomfy_async.models` defines them.
TYPED: dict[str, type[ModelInput]] = {}


def encode_json(value: object, model_id: str) -> bytes:
    """The JSON bytes of inputs; InvalidInputError naming `model_id` if they have none."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:  # UnicodeEncodeError is a ValueError
        raise InvalidInputError(
            f"{model_id}: inputs are not JSON-serialisable: {exc}", model_id=model_id
        ) from None


@functools.cache
def _decoder(cls: type[M]) -> msgspec.json.Decoder[M]:
    return msgspec.json.Decoder(cls)


def decode_input(cls: type[M], raw: bytes) -> M:
    """Decode wire JSON into `cls`, enforcing every constraint, with a readable error: the
    same words the catalog-schema check uses for the same rule (`_messages`)."""
    try:
        decoded: M = _decoder(cls).decode(raw)
    except msgspec.ValidationError as exc:
        raise _refusal(cls, str(exc), raw) from None
    return decoded


_AT = re.compile(r"^(?P<rule>.*?) - at `\$\.?(?P<path>[^`]*)`$")
_NAMED = re.compile(r"Object (?P<what>missing required|contains unknown) field `(?P<name>[^`]+)`")


def _refusal(cls: type[ModelInput], message: str, raw: bytes) -> InvalidInputError:
    """`wan-ai/…: aspect_ratio: "16:9" is not one of …` from a msgspec message."""
    at = _AT.match(message)
    rule, path = (at["rule"], at["path"]) if at else (message, "")
    wires = [f.encode_name for f in msgspec.structs.fields(cls)]
    names = {f.encode_name: f.name for f in msgspec.structs.fields(cls)}
    named = _NAMED.match(rule)
    if named:
        path = f"{path}.{named['name']}" if path else named["name"]
    top = re.split(r"[.\[]", path, maxsplit=1)[0]
    field = names.get(top, top) if top else None
    options = _options(cls, field) if field and path == top else None
    found, value = value_at(raw, path)
    if named and named["what"].startswith("contains"):
        text = unknown_field(path, wires if path == top else ())
    elif named:
        text = "is required"
    elif field in cls.rule_hints and "regex" in rule:
        text = cls.rule_hints[field]
    elif options and found:
        text = not_one_of(value, options)
    else:
        text = plain(rule)
    where = path + (f" ({field})" if field and field != top else "")
    head = (
        f"{cls.model_id}: " if text.startswith("unknown field ") else f"{cls.model_id}: {where}: "
    )
    return InvalidInputError(head + text, model_id=cls.model_id, field=field)


def _options(cls: type[ModelInput], field: str) -> tuple[Any, ...] | None:
    """The values a Literal-typed field allows (with None when it is optional)."""
    pending: list[Any] = [typing.get_type_hints(cls, include_extras=True).get(field)]
    values: list[Any] = []
    while pending:
        tp = pending.pop(0)
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            pending.insert(0, typing.get_args(tp)[0])
        elif origin is typing.Literal:
            values += typing.get_args(tp)
        elif origin in (typing.Union, types.UnionType):
            pending[:0] = typing.get_args(tp)
        elif tp is type(None):
            values.append(None)
    return tuple(values) if any(v is not None for v in values) else None


def encode_inputs(model: ModelInput | str, inputs: Mapping[str, Any] | None) -> tuple[str, bytes]:
    """(model_id, JSON body) for a submit, checked before anything is sent.

    Dict inputs for a model that has a typed input are checked by it too. A local file
    (Path, LocalFile) is in the body as a reference to it (`_files.refer`): the journal's
    form; Client._check turns it into what is sent.
    """
    if isinstance(model, ModelInput):
        if inputs is not None:
            raise TypeError("pass either a typed input, or a model id and a dict of inputs")
        if has_files(model):  # local files: a reference each (path, sha256), sent later
            model = cast(ModelInput, refer(model))
        raw = encode_json(model, model.model_id)
        _check_size(model.model_id, raw, model)
        decode_input(type(model), raw)
        return model.model_id, raw
    if not isinstance(model, str):
        raise TypeError(f"expected a typed input or a model id string, got {type(model)!r}")
    check_model_id(model)
    if not isinstance(inputs, Mapping):
        raise InvalidInputError(
            f"{model}: inputs must be a mapping of field names to values", model_id=model
        )
    if not all(isinstance(key, str) for key in inputs):
        raise InvalidInputError(f"{model}: input field names must be strings", model_id=model)
    raw = encode_json(refer(inputs) if has_files(inputs) else dict(inputs), model)
    _check_size(model, raw, inputs)
    typed = TYPED.get(model)
    if typed is not None:
        decode_input(typed, raw)
    return model, raw


def _check_size(model_id: str, raw: bytes, inputs: object) -> None:
    """Refuse a body RunComfy would refuse for its size, naming the size and the largest
    input (typically a `data:` URI), before anything is sent."""
    if len(raw) <= MAX_SUBMIT_BYTES:
        return
    fields = msgspec.to_builtins(inputs)
    sizes = {
        str(name): len(_ENCODER.encode(value))
        for name, value in (fields.items() if isinstance(fields, dict) else ())
    }
    largest = max(sizes, key=sizes.__getitem__, default=None)
    where, field = "", largest
    if largest is not None:
        where = f"; the largest input is {largest} ({_mib(sizes[largest])})"
        if isinstance(inputs, msgspec.Struct):  # the Python name of a typed input's field
            names = {f.encode_name: f.name for f in msgspec.structs.fields(type(inputs))}
            field = names.get(largest, largest)
    raise InvalidInputError(
        f"{model_id}: the submit body is {_mib(len(raw))} ({len(raw):,} bytes), over RunComfy's "
        f"limit of 64 MiB ({MAX_SUBMIT_BYTES:,} bytes){where}: nothing was sent. Pass large "
        "files as https URLs instead of data: URIs",
        model_id=model_id,
        field=field,
    )


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def check_model_id(model_id: str) -> str:
    """A RunComfy model id such as `wan-ai/wan-2-2/text-to-image`, or InvalidInputError."""
    if isinstance(model_id, str) and model_id in _CHECKED_IDS:  # a batch's few, many times
        return model_id
    if not isinstance(model_id, str) or not _MODEL_ID.fullmatch(model_id) or ".." in model_id:
        raise InvalidInputError(
            f"{model_id!r} is not a RunComfy model id (like 'wan-ai/wan-2-2/text-to-image')",
            model_id=model_id,
        )
    if len(_CHECKED_IDS) < 1024:
        _CHECKED_IDS.add(model_id)
    return model_id
