"""The words of an input refusal, shared by the typed inputs and the catalog-schema check."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

__all__ = ["not_one_of", "plain", "show", "similar", "unknown_field", "value_at"]

_NAMES = {"int": "an integer", "float": "a number", "str": "a string", "bool": "a boolean"}
_NAMES |= {"array": "a list", "object": "an object", "null": "null"}
_OPS = {">=": "at least", "<=": "at most", ">": "greater than", "<": "less than"}
_ENCODER = msgspec.json.Encoder()


def show(value: object) -> str:
    """A value as JSON: `"16:9"`, `7`, `true`, `null`."""
    try:
        return _ENCODER.encode(value).decode()
    except (TypeError, ValueError, OverflowError):
        return repr(value)


def plain(rule: str) -> str:
    """msgspec's `Expected `int` >= 0` as `must be at least 0`."""
    got = re.match(r"Expected `(.+)`, got `(.+)`$", rule)
    if got:
        wanted = " or ".join(_NAMES.get(t, t) for t in got[1].split(" | "))
        return f"must be {wanted}, got {_NAMES.get(got[2], got[2])}"
    bound = re.match(r"Expected `(\w+)` (of length )?(>=|<=|>|<) (\S+)$", rule)
    if bound:
        unit = {"str": " characters long", "array": " items", "object": " fields"}
        verb = "have" if bound[1] in ("array", "object") else "be"
        number = bound[4].removesuffix(".0")  # the schema's 4, not msgspec's 4.0
        return f"must {verb} {_OPS[bound[3]]} {number}{unit.get(bound[1], '')}"
    pattern = re.match(r"Expected `str` matching regex (.+)$", rule)
    if pattern:
        return f"must match the pattern {pattern[1]}"
    multiple = re.match(r"Expected `\w+` that's a multiple of (\S+)$", rule)
    return f"must be a multiple of {multiple[1]}" if multiple else rule


def not_one_of(value: object, options: Sequence[Any]) -> str:
    """`"16:9" is not one of "1440:810 (16:9)", "810:1440 (9:16)"`."""
    return f"{show(value)} is not one of {', '.join(show(option) for option in options)}"


def _fold(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def similar(name: str, known: Iterable[str]) -> list[str]:
    """The known names `name` was probably meant to be: the same letters in another case or
    spelling (`prompt_text` for `promptText`), else the closest by difflib."""
    names = list(dict.fromkeys(known))
    folded = [n for n in names if _fold(n) == _fold(name)]
    return folded or difflib.get_close_matches(name, names, n=2, cutoff=0.7)


def unknown_field(path: str, known: Iterable[str]) -> str:
    """`unknown field prompt_text (did you mean promptText?)`; `path` may be nested
    (`camera.speeed`), its last part is the name compared with `known`."""
    parent, _, name = path.rpartition(".")
    found = [f"{parent}.{n}" if parent else n for n in similar(name, known)]
    hint = f" (did you mean {' or '.join(found)}?)" if found else ""
    return f"unknown field {path}{hint}"


def value_at(raw: bytes, path: str) -> tuple[bool, Any]:
    """(found, value) of the JSON document `raw` at a path such as `loras[1].scale`."""
    try:
        value: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return False, None
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        if index:
            if not isinstance(value, list) or int(index) >= len(value):
                return False, None
            value = value[int(index)]
        elif isinstance(value, dict) and name in value:
            value = value[name]
        else:
            return False, None
    return True, value
