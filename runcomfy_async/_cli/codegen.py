"""Write a typed model input module (the style of `runcomfy_async/models/`) from a schema."""

from __future__ import annotations

import keyword
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec

from .._place import replace_whole
from .._rules import MediaKind, MediaSpec
from .._schema_parse import URL_PATTERN, URL_RULE, Field, Node, Parser
from .._wire import ModelInfo
from .layout import WIDTH, Call, Text, docstring, flat, literal, render, wrapped

__all__ = ["class_name_for", "generate_model_module", "module_name_for", "write_model_module"]

_OPTIONS = ["frozen=True", "kw_only=True", "forbid_unknown_fields=True", "omit_defaults=True"]
_IMPORTED = {"Annotated", "Any", "ClassVar", "Literal", "Meta", "ModelInput", "Struct", "UNSET"}
_IMPORTED |= {"UnsetType"}
# ModelInput's own names, and builtins a field must not shadow inside its class body.
_RESERVED = {"model_id", "rule_hints", "validate", "from_dict", "str", "int", "float", "bool"}
_RESERVED |= {"list", "dict", "type", "object"}
_NOUNS = {"text": "a text prompt", "image": "an image", "video": "a video", "audio": "audio"}
_KIND_NAMES = {MediaKind.IMAGE: "Image", MediaKind.VIDEO: "Video", MediaKind.AUDIO: "Audio"}
_MEASURES = {"width_pixels": "width {} {} px", "height_pixels": "height {} {} px"}
_MEASURES |= {"width/height": "width/height {} {}", "file_size_mb": "file {} {} MB"}
_BASES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}


def class_name_for(model_id: str) -> str:
    """`wan-ai/wan-2-2/text-to-image` -> `Wan22TextToImage` (the vendor segment dropped)."""
    path = model_id.split("/", 1)[-1]
    name = "".join(word[:1].upper() + word[1:] for word in re.split(r"[^A-Za-z0-9]+", path))
    return name if name[:1].isalpha() else f"Model{name}"


def module_name_for(class_name: str) -> str:
    """`Wan22TextToImage` -> `wan22_text_to_image`: the file name, without `.py`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower()


def generate_model_module(
    info: ModelInfo, *, class_name: str | None = None, in_package: bool = True
) -> str:
    """Python source of a typed input for `info.model_id`, in the style of the hand-written ones.

    `class_name` defaults to `class_name_for(info.model_id)`. `in_package` False imports
    ModelInput from `runcomfy_async`, for a module kept outside the package. Rules a typed
    input cannot check are listed in comments above the class. ValueError if the schema
    names no fields.
    """
    parser = Parser()
    schema = info.input_schema
    fields = parser.properties(schema, "")[0] if isinstance(schema, dict) else ()
    if not fields:
        raise ValueError(f"{info.model_id}: its input schema names no fields to generate from")
    return _Module(info, class_name or class_name_for(info.model_id), parser).source(
        fields, in_package
    )


def write_model_module(source: str, path: Path, *, overwrite: bool) -> None:
    """Write `source` to `path` whole or not at all (a temporary file, then a rename).

    FileExistsError if `path` exists and `overwrite` is False.
    """
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    replace_whole(path, source.encode("utf-8"))


class _Module:
    """One generated module: its aliases, nested classes and imports, gathered field by field."""

    def __init__(self, info: ModelInfo, class_name: str, parser: Parser) -> None:
        self.info = info
        self.class_name = class_name
        self.notes = list(parser.notes)
        self.media = {spec.field: spec for spec in parser.media}
        self.literals: dict[str, Call] = {}
        self.aliases: dict[str, Call] = {}
        self.classes: list[list[str]] = []
        self.exported = [class_name]
        self.taken = {class_name, *_IMPORTED}
        self.typing = {"ClassVar"}
        self.msgspec: set[str] = set()

    def source(self, fields: tuple[Field, ...], in_package: bool) -> str:
        names = _python_names(fields)
        body, hints = self._fields(fields, names, self.class_name, "")
        purpose = _purpose(self.info)
        lines = [docstring(f"Input of `{self.info.model_id}`{purpose}.", 0)]
        lines += ["", "from __future__ import annotations", ""]
        lines += [f"from typing import {', '.join(_ordered(self.typing))}", ""]
        if self.msgspec:
            lines += [f"from msgspec import {', '.join(_ordered(self.msgspec))}", ""]
        lines.append(
            "from .._inputs import ModelInput"
            if in_package
            else "from runcomfy_async import ModelInput"
        )
        if self.literals or self.aliases:
            lines.append("")
        for name, value in [*self.literals.items(), *self.aliases.items()]:
            lines += render(value, 0, f"{name} = ")
        for block in self.classes:
            lines += ["", "", *block]
        lines += ["", ""] + [f"# Not checked here: {note}" for note in self.notes]
        header = (*("ModelInput", *_OPTIONS), *_rename(fields, names))
        lines += render(Call(f"class {self.class_name}(", header, ")"), 0, suffix=":")
        lines += [docstring(self._summary(fields, names), 4), ""]
        lines.append(f"    model_id: ClassVar[str] = {literal(self.info.model_id)}")
        pairs = tuple(f"{literal(key)}: {literal(hint)}" for key, hint in hints.items())
        if pairs:
            lines += render(Call("{", pairs, "}"), 4, "rule_hints: ClassVar[dict[str, str]] = ")
        lines += ["", *body, "", ""]
        exported = sorted([*self.literals, *self.aliases, *self.exported], key=_sort_key)
        lines += render(Call("[", tuple(map(literal, exported)), "]"), 0, "__all__ = ")
        return "\n".join(wrapped(lines)) + "\n"

    def _summary(self, fields: tuple[Field, ...], names: dict[str, str]) -> str:
        title = self.info.name or self.class_name
        defaults = ", ".join(
            f"{names[f.name]}={literal(f.default)}".replace(" ", "\0")  # kept on one line
            for f in fields
            if f.has_default and f.default is not None and not f.required
        )
        if defaults:
            return f"{title}. Unset fields take RunComfy's defaults ({defaults})."
        return f"{title}. Unset fields are not sent: RunComfy applies its own defaults."

    def _fields(
        self, fields: tuple[Field, ...], names: dict[str, str], owner: str, path: str
    ) -> tuple[list[str], dict[str, str]]:
        lines: list[str] = []
        hints: dict[str, str] = {}
        for f in fields:
            name = names[f.name]
            media = self.media.get(f.name) if not path else None
            where = f"{path}.{f.name}" if path else f.name
            annotation = self._annotation(f.node, name, owner, where, media)
            if f.node.url or (f.node.items and f.node.items.url):
                hints[name] = URL_RULE
            elif _has_url(f.node):
                hints[name] = "its file URLs must be public https URLs or data: URIs"
            text = flat(annotation)
            if len(f"    {name}: {text} | UnsetType = UNSET") > WIDTH and isinstance(
                annotation, Call
            ):
                text = self._name([_camel(name)], owner)
                self.aliases[text] = annotation
            if not f.required:  # None stays last in a union (ruff's RUF036)
                nullable = text.endswith(" | None")
                text = text.removesuffix(" | None") + " | UnsetType" + " | None" * nullable
                text += " = UNSET"
                self.msgspec |= {"UNSET", "UnsetType"}
            field_line = f"    {name}: {text}"
            if len(field_line) > WIDTH:  # ruff's layout for a long annotation
                annotation_text, _, default = text.partition(" = ")
                after = f" = {default}" if default else ""
                field_line = f"    {name}: (\n        {annotation_text}\n    ){after}"
            lines.append(field_line)
        return lines, hints

    def _annotation(
        self, node: Node, name: str, owner: str, path: str, media: MediaSpec | None
    ) -> Call | str:
        if node.enum is not None:
            values = tuple(v for v in node.enum if v is not None)
            none = " | None" if None in node.enum else ""
            if values and all(isinstance(v, str | int) for v in values):
                self.typing.add("Literal")
                choice = Call("Literal[", tuple(map(literal, values)), "]")
                return self._alias(self.literals, [_camel(name)], owner, choice) + none
            shown = ", ".join(map(literal, values)) or "nothing"
            self.notes.append(f"field {path}: must be one of {shown} (no Literal can say so)")
            node = replace(node, enum=None, nullable=node.nullable or bool(none))
        if node.kinds is None:
            self.typing.add("Any")
            return "Any"
        members = [self._member(kind, node, name, owner, path, media) for kind in node.kinds]
        members += ["None"] if node.nullable else []
        return members[0] if len(members) == 1 else " | ".join(map(flat, members))

    def _member(
        self, kind: str, node: Node, name: str, owner: str, path: str, media: MediaSpec | None
    ) -> Call | str:
        meta = dict(node.meta.get(kind, {}))
        base: Call | str
        if kind == "string" and node.url is not None:
            return self._url(node.url, meta, name, owner, media)
        if kind == "array" and node.items is not None:
            singular = name[:-1] if name.endswith("s") and len(name) > 3 else f"{name}_item"
            item = self._annotation(node.items, singular, owner, f"{path}[]", media)
            base = Call("list[", (item,), "]")
        elif kind == "object" and node.fields is not None:
            base = self._struct(node.fields, name, owner, path)
        elif kind in ("array", "object"):
            self.typing.add("Any")
            base = "list[Any]" if kind == "array" else "dict[str, Any]"
        else:
            base = _BASES[kind]
        if not meta:
            return base
        self.typing.add("Annotated")
        self.msgspec.add("Meta")
        args = tuple(f"{key}={literal(value, raw=key == 'pattern')}" for key, value in meta.items())
        return Call("Annotated[", (base, Call("Meta(", args, ")")), "]")

    def _url(
        self, kind: MediaKind, meta: dict[str, Any], name: str, owner: str, media: MediaSpec | None
    ) -> str:
        meta.pop("pattern", None)
        args: tuple[Call | Text | str, ...] = (f"pattern={literal(URL_PATTERN, raw=True)}",)
        args += tuple(f"{key}={literal(value)}" for key, value in meta.items())
        args += (Text("description", _url_description(kind, media)),)
        self.typing.add("Annotated")
        self.msgspec.add("Meta")
        value = Call("Annotated[", ("str", Call("Meta(", args, ")")), "]")
        first = f"{_KIND_NAMES.get(kind, 'File')}URL"
        return self._alias(self.aliases, [first, f"{_camel(name)}URL"], owner, value)

    def _struct(self, fields: tuple[Field, ...], name: str, owner: str, path: str) -> str:
        class_name = self._name([_camel(name)], owner)
        self.exported.append(class_name)
        self.msgspec.add("Struct")
        names = _python_names(fields)
        body, _ = self._fields(fields, names, class_name, path)
        header = ("Struct", *_OPTIONS, *_rename(fields, names))
        lines = render(Call(f"class {class_name}(", header, ")"), 0, suffix=":")
        what = f"An item of `{path[:-2]}`." if path.endswith("[]") else f"The `{path}` object."
        self.classes.append([*lines, docstring(what, 4), "", *body])
        return class_name

    def _alias(self, table: dict[str, Call], bases: list[str], owner: str, value: Call) -> str:
        """The name of an alias for `value`: one already made for it, or a free name."""
        for base in bases:
            if table.get(base) == value:
                return base
        name = self._name(bases, owner)
        table[name] = value
        return name

    def _name(self, bases: list[str], owner: str) -> str:
        """A free module-level name: a base, else one prefixed with its owner class."""
        for base in [*bases, *(f"{owner}{base}" for base in bases)]:
            if base not in self.taken:
                self.taken.add(base)
                return base
        number = 2
        while f"{owner}{bases[0]}{number}" in self.taken:
            number += 1
        self.taken.add(f"{owner}{bases[0]}{number}")
        return f"{owner}{bases[0]}{number}"


def _python_names(fields: tuple[Field, ...]) -> dict[str, str]:
    """Wire name -> a snake_case Python name, unique, never a keyword or a reserved name."""
    names: dict[str, str] = {}
    for f in fields:
        name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", f.name)
        name = re.sub(r"\W+", "_", name).strip("_").lower() or "field"
        name = f"field_{name}" if name[0].isdigit() else name
        while keyword.iskeyword(name) or name in _RESERVED or name in names.values():
            name += "_"
        names[f.name] = name
    return names


def _rename(fields: tuple[Field, ...], names: dict[str, str]) -> tuple[Call | str, ...]:
    """The class's `rename` option: none, "camel" when msgspec's rule gives every wire name,
    else a mapping of the names that differ."""
    if all(names[f.name] == f.name for f in fields):
        return ()
    try:  # msgspec's own camel rule decides
        probe = msgspec.defstruct("Probe", [(names[f.name], Any) for f in fields], rename="camel")
    except ValueError:  # two names that camel-case alike
        probe = None
    if probe and [f.encode_name for f in msgspec.structs.fields(probe)] == [f.name for f in fields]:
        return ('rename="camel"',)
    pairs = tuple(
        f"{literal(names[f.name])}: {literal(f.name)}" for f in fields if names[f.name] != f.name
    )
    return (Call("rename={", pairs, "}"),)


def _has_url(node: Node) -> bool:
    children = [f.node for f in node.fields or ()] + ([node.items] if node.items else [])
    return node.url is not None or any(_has_url(child) for child in children)


def _url_description(kind: MediaKind, media: MediaSpec | None) -> str:
    text = "a public https URL or a data: URI"
    rules = [
        _MEASURES[rule.measure].format(rule.op, f"{rule.value:g}")
        for rule in (media.rules if media else ())
        if rule.measure in _MEASURES
    ]
    if not rules:
        return text
    noun = "file" if kind is MediaKind.ANY else kind.value
    return f"{text}; RunComfy checks the {noun} itself ({', '.join(dict.fromkeys(rules))})"


def _purpose(info: ModelInfo) -> str:
    """`: a video from an image` for an `image-to-video` model, else its name, if any."""
    category = info.category or info.model_id.rsplit("/", 1)[-1]
    made = re.fullmatch(r"([a-z]+)-to-([a-z]+)", category)
    if made is None:
        return f": {info.name}" if info.name else ""

    def noun(word: str) -> str:
        return _NOUNS.get(word, f"an {word}" if word[0] in "aeiou" else f"a {word}")

    source = "another" if made[1] == made[2] else noun(made[1])
    return f": {noun(made[2])} from {source}"


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _sort_key(name: str) -> tuple[int, str]:
    """isort's order by type: CONSTANTS, then Classes, then the rest."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def _ordered(names: set[str]) -> list[str]:
    return sorted(names, key=_sort_key)
