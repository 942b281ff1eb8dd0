"""The schema validator accepts exactly what a plain, independent reading of the schema accepts.

The reference below is written from RunComfy's dialect as documented, not from _schema.py:
types ("float" is a number; booleans are not numbers; 2.0 is not an integer), enums compared
with their JSON type, bounds, lengths, patterns (searched, as JSON Schema does), file URLs,
required fields, nested objects, arrays and the three ways of saying null is allowed.
"""

from __future__ import annotations

import math
import operator
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runcomfy_async as rc
from runcomfy_async._schema import build_validator

NAMES = ["a", "b", "camelCase", "with_underscore"]
PATTERNS = [r"^\d+$", "x", r"^[a-z]{2}$"]
STRINGS = ["", "a", "ab", "abc", "12", "xx", "1x", "ab\n"]
URLS = [
    "https://x/y.png",
    "https://",
    "data:image/png;base64,AA==",
    "data:",
    "http://127.0.0.1:8000/f.png",
    "http://localhost",
    "http://localhost:",
    "http://127.0.0.1:80",
    "http://[::1]/a",
    "http://localhost.evil/a",
    "http://example.com/a",
    "https://a b",
]
SCALARS: list[Any] = [None, True, False, -1, 0, 1, 2, 3, 5, 10, 11, 0.5, 1.0, 2.5, 10.0, 10.5]
SCALARS += STRINGS + URLS


# ------------------------------------------------------------------ the reference checker


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def equal(a: Any, b: Any) -> bool:
    if kind_of(a) != kind_of(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return set(a) == set(b) and all(equal(a[k], b[k]) for k in a)
    return bool(a == b)


def is_file_url(text: str, loopback: bool = False) -> bool:
    """https or data:, and (for a client of the simulator) plain http to a loopback host."""
    if any(ch.isspace() for ch in text):
        return False
    if text.startswith("https://"):
        return len(text) > len("https://")
    if text.startswith("data:"):
        return len(text) > len("data:")
    if not (loopback and text.startswith("http://")):
        return False
    rest = text[len("http://") :]
    for host in ("127.0.0.1", "localhost", "[::1]"):
        if rest.startswith(host):
            after = rest[len(host) :]
            port, slash, _ = after[1:].partition("/") if after.startswith(":") else ("", "", "")
            if after.startswith(":"):
                return port.isdecimal() and (slash == "/" or after[1:] == port)
            return after == "" or after.startswith("/")
    return False


def allows_null(spec: dict[str, Any]) -> bool:
    types = spec.get("type")
    return (
        spec.get("nullable") is True
        or ("default" in spec and spec["default"] is None)
        or (isinstance(types, list) and "null" in types)
    )


def keeps_type(spec: dict[str, Any], type_name: str, value: Any) -> bool:
    kind = kind_of(value)
    if type_name in ("float", "number"):
        if kind not in ("integer", "float"):
            return False
        for key, holds in (
            ("minimum", operator.ge),
            ("maximum", operator.le),
            ("exclusiveMinimum", operator.gt),
            ("exclusiveMaximum", operator.lt),
        ):
            if key in spec and not holds(value, spec[key]):
                return False
        return True
    if type_name == "integer":
        return kind == "integer" and keeps_type(spec, "number", value)
    if type_name == "boolean":
        return kind == "boolean"
    if type_name == "string":
        if kind != "string":
            return False
        if len(value) < spec.get("minLength", 0) or len(value) > spec.get("maxLength", math.inf):
            return False
        if spec.get("format") in ("image_uri", "video_uri", "audio_uri", "uri"):
            return is_file_url(value)
        return "pattern" not in spec or re.search(spec["pattern"], value) is not None
    if type_name == "array":
        if kind != "array":
            return False
        if not spec.get("minItems", 0) <= len(value) <= spec.get("maxItems", math.inf):
            return False
        return all(reference(spec["items"], item) for item in value) if "items" in spec else True
    if kind != "object":
        return False
    return "properties" not in spec or object_ok(spec, value)


def reference(spec: dict[str, Any], value: Any) -> bool:
    if value is None and allows_null(spec):
        return True
    types = spec.get("type")
    names = [types] if isinstance(types, str) else [t for t in types or [] if t != "null"]
    if names and not any(keeps_type(spec, name, value) for name in names):
        return False
    return "enum" not in spec or any(equal(value, option) for option in spec["enum"])


def object_ok(spec: dict[str, Any], value: dict[str, Any]) -> bool:
    properties = spec["properties"]
    if any(name not in value for name in spec.get("required", [])):
        return False
    if spec.get("additionalProperties") is False and any(k not in properties for k in value):
        return False
    return all(reference(properties[k], v) for k, v in value.items() if k in properties)


# ------------------------------------------------------------------ schemas and inputs

nullability: st.SearchStrategy[dict[str, Any]] = st.sampled_from(
    [{}, {}, {}, {"nullable": True}, {"default": None}, {"default": 1}, {"null_in_type": True}]
)


def near(spec: dict[str, Any]) -> list[Any]:
    """Values close to a scalar's rules: many keep them, many miss by a little."""
    types = spec.get("type")
    names = [types] if isinstance(types, str) else list(types or [])
    pool: list[Any] = list(spec.get("enum", []))
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound = spec.get(key)
        if bound is not None:
            pool += [bound, bound + 1, bound - 1, bound + 0.5, bound - 0.5, float(bound)]
            pool += [math.floor(bound), math.ceil(bound)] * 2
    if {"integer", "float", "number"} & set(names):
        pool += [0, 1, 2, 3, 5, 1.5, 2.0, 7.5, True]
    if "string" in names:
        pool += STRINGS + URLS * (4 if "format" in spec else 1) + ["1", "123", "é🦊", 1]
    if "boolean" in names:
        pool += [True, False, False, 1]
    return [*pool, None, "x"]


@st.composite
def scalar_specs(draw: st.DrawFn) -> dict[str, Any]:
    type_name = draw(st.sampled_from(["string", "integer", "float", "number", "boolean"]))
    spec: dict[str, Any] = {"type": type_name}
    if type_name in ("integer", "float", "number"):
        sides = [(["minimum", "exclusiveMinimum"], [0, 1, 2.5]), (["maximum"], [2, 2.5, 10])]
        sides[1][0].append("exclusiveMaximum")
        for keys, bounds in sides:
            for key in draw(st.sampled_from([[], [], keys[:1], keys[1:], keys])):
                spec[key] = draw(st.sampled_from(bounds))
    elif type_name == "string":
        for key, sizes in (("minLength", [None, None, 1, 2]), ("maxLength", [None, None, 2, 3])):
            size = draw(st.sampled_from(sizes))
            if size is not None:
                spec[key] = size
        extra = draw(st.sampled_from(["none", "none", "pattern", "format"]))
        if extra == "pattern":
            spec["pattern"] = draw(st.sampled_from(PATTERNS))
        elif extra == "format":
            spec["format"] = draw(st.sampled_from(["image_uri", "video_uri", "uri"]))
    if draw(st.integers(0, 2)) == 0:
        spec["enum"] = draw(st.lists(st.sampled_from(near(spec)), min_size=1, max_size=4))
    null = dict(draw(nullability))  # a copy: sampled_from hands out the same dict
    if null.pop("null_in_type", False):
        spec["type"] = [type_name, "null"]
    return {**spec, **null}


def value_specs(depth: int = 2) -> st.SearchStrategy[dict[str, Any]]:
    """Mostly scalars; arrays and objects of them, nested `depth` levels at most."""
    if depth == 0:
        return scalar_specs()
    inner = value_specs(depth - 1)
    arrays = st.fixed_dictionaries(
        {"type": st.just("array"), "items": inner},
        optional={"minItems": st.integers(0, 1), "maxItems": st.integers(1, 3)},
    )
    return st.one_of(scalar_specs(), scalar_specs(), scalar_specs(), arrays, object_specs(inner))


def object_specs(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
        spec: dict[str, Any] = {
            "type": "object",
            "properties": {name: draw(inner) for name in names},
            "required": draw(st.lists(st.sampled_from(names), unique=True)),
        }
        if draw(st.integers(0, 2)) == 0:
            spec["additionalProperties"] = False
        return spec

    return build()


def values() -> st.SearchStrategy[Any]:
    return st.recursive(
        st.sampled_from(SCALARS),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from([*NAMES, "other"]), inner, max_size=3)
        ),
        max_leaves=6,
    )


def conforming(spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values built the schema's way (right names, items), right or wrong in the details."""
    types = spec.get("type")
    if types == "array":
        return st.lists(conforming(spec["items"]), max_size=3)
    if types == "object":
        properties, required = spec["properties"], spec["required"]
        fields = st.fixed_dictionaries(
            {name: conforming(properties[name]) for name in required},
            optional={n: conforming(sub) for n, sub in properties.items() if n not in required},
        )
        unknown = st.builds(lambda d, v: {**d, "other": v}, fields, st.sampled_from(SCALARS))
        return st.one_of(fields, fields, fields, unknown)
    pool = st.sampled_from(near(spec))
    return st.one_of(pool, pool, pool, st.just(None))


@st.composite
def schemas_and_inputs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    schema = draw(object_specs(value_specs()))
    anything = st.dictionaries(st.sampled_from(NAMES), values())
    inputs = draw(st.one_of(conforming(schema), conforming(schema), anything))
    return schema, inputs


def check(schema: dict[str, Any], inputs: dict[str, Any]) -> None:
    """The validator and the reference agree; a refusal names a field the inputs concern."""
    validator = build_validator("acme/prop/model", schema)
    assert validator.notes == ()
    expected = object_ok(schema, inputs)
    refusal: rc.InvalidInputError | None = None
    try:
        validator.validate(inputs)
    except rc.InvalidInputError as error:
        refusal = error
    if refusal is None:
        assert expected, "accepted invalid inputs"
    else:
        assert not expected, f"refused valid inputs: {refusal}"
        top = (refusal.field or "").split(".")[0].split("[")[0]
        assert top in inputs or top in schema["required"], refusal.field


PROFILE = settings(
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@settings(PROFILE, max_examples=450)
@given(st.data())
def test_one_field_is_accepted_exactly_when_the_reference_accepts_it(data: st.DataObject) -> None:
    spec = data.draw(value_specs(), label="spec")
    value = data.draw(st.one_of(conforming(spec), conforming(spec), values()), label="value")
    schema = {"type": "object", "properties": {"x": spec}, "required": []}
    check(schema, {"x": value})


@settings(PROFILE, max_examples=200)
@given(schemas_and_inputs())
def test_whole_inputs_are_accepted_exactly_when_the_reference_accepts_them(
    case: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    check(*case)


FILE_SCHEMA = {"type": "object", "properties": {"x": {"type": "string", "format": "uri"}}}
FILE_FIELD = {
    loopback: build_validator("acme/prop/model", FILE_SCHEMA, allow_loopback=loopback)
    for loopback in (False, True)
}
HOSTS = ["https://", "http://", "data:", "http://127.0.0.1", "http://localhost", "http://[::1]"]


@settings(PROFILE, max_examples=400)
@given(
    st.sampled_from([*HOSTS, "ftp://", "HTTPS://", ""]),
    st.text(alphabet=":/0123456789ab.@ \n\t", max_size=6),
)
def test_a_file_url_is_accepted_exactly_when_the_reference_accepts_it(
    start: str, rest: str
) -> None:
    url = start + rest
    for loopback, validator in FILE_FIELD.items():
        try:
            validator.validate({"x": url})
        except rc.InvalidInputError:
            accepted = False
        else:
            accepted = True
        assert accepted == is_file_url(url, loopback), (url, loopback)
