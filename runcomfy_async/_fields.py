"""Lenient field parsers: a finite number, an integer or an aware timestamp from any JSON value."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

__all__ = ["parse_float", "parse_int", "parse_timestamp"]


def parse_float(value: Any) -> float | None:
    """A finite number from a number or a numeric string, else None."""
    if isinstance(value, bool):
        return None
    if not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # e.g. a 400-digit JSON integer
        return None
    return number if math.isfinite(number) else None


def parse_int(value: Any) -> int | None:
    """An int from an int, an integral float or a digit string, else None."""
    number = parse_float(value)
    if number is None or not number.is_integer():
        return None
    return int(number)


def parse_timestamp(value: Any) -> datetime | None:
    """An aware datetime from ISO 8601 (with or without zone, 'Z' accepted) or epoch seconds."""
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    number = parse_float(value)
    if number is not None:
        try:
            return datetime.fromtimestamp(number, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None
