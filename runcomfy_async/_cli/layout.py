"""Python source laid out as ruff format would: bracketed calls, long strings, docstrings."""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass

__all__ = ["WIDTH", "Call", "Text", "docstring", "flat", "literal", "render", "wrapped"]

WIDTH = 100  # the project's ruff line-length


@dataclass(frozen=True, slots=True)
class Call:
    """A bracketed expression, laid out as ruff format does: flat, hugged, or one per line."""

    head: str
    args: tuple[Call | Text | str, ...]
    close: str


@dataclass(frozen=True, slots=True)
class Text:
    """A keyword argument holding prose, split into implicitly joined strings when too long."""

    key: str
    text: str


def literal(value: object, *, raw: bool = False) -> str:
    """Python source for a JSON value, in the quotes ruff format prefers."""
    if isinstance(value, str):
        if raw and value.isprintable() and '"' not in value and not value.endswith("\\"):
            return f'r"{value}"'
        text = json.dumps(value, ensure_ascii=False)
        return repr(value) if '"' in value and "'" not in value else text
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def docstring(text: str, indent: int) -> str:
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = textwrap.wrap(text, WIDTH - indent - 6, break_on_hyphens=False) or [""]
    pad = " " * indent
    return pad + '"""' + f"\n{pad}".join(lines).replace("\0", " ") + '"""'


def wrapped(lines: list[str]) -> list[str]:
    """Lines, with long comments wrapped to the line length."""
    out: list[str] = []
    for line in lines:
        if line.startswith("#") and len(line) > WIDTH:
            out += textwrap.wrap(line, WIDTH, subsequent_indent="#   ", break_long_words=False)
        else:
            out.extend(line.split("\n"))
    return out


def flat(x: Call | Text | str) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, Text):
        return f"{x.key}={literal(x.text)}"
    return x.head + ", ".join(map(flat, x.args)) + x.close


def render(x: Call | Text | str, indent: int, prefix: str = "", suffix: str = "") -> list[str]:
    """`x` in as few lines as fit the width, the way ruff format would lay it out."""
    pad = " " * indent
    whole = f"{pad}{prefix}{flat(x)}{suffix}"
    if len(whole) <= WIDTH or isinstance(x, str):
        return [whole]
    if isinstance(x, Text):  # implicitly joined strings, each part on its own line
        parts: list[str] = []
        words: list[str] = []
        for token in re.findall(r"\([^)]*\)\S*\s*|\S+\s*", x.text):  # keep a (...) whole
            words += [token] if len(pad + token) < WIDTH - 3 else re.findall(r"\S+\s*", token)
        for word in words:
            head = f"{x.key}=" if len(parts) == 1 else ""
            if parts and len(pad + head + literal(parts[-1] + word)) < WIDTH:
                parts[-1] += word
            else:
                parts.append(word)
        lines = [pad + literal(part) for part in parts]
        lines[0] = f"{pad}{x.key}={lines[0].lstrip()}"
        return [*lines[:-1], lines[-1] + suffix]
    hugged = " " * (indent + 4) + ", ".join(map(flat, x.args))
    if len(hugged) <= WIDTH:
        return [f"{pad}{prefix}{x.head}", hugged, f"{pad}{x.close}{suffix}"]
    lines = [f"{pad}{prefix}{x.head}"]
    for arg in x.args:
        lines += render(arg, indent + 4, suffix=",")
    return [*lines, f"{pad}{x.close}{suffix}"]
