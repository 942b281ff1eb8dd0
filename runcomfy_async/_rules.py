"""Media rules a schema puts on a file input (RunComfy's `validations`): schema and pre-flight."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["MediaKind", "MediaRule", "MediaSpec"]


class MediaKind(enum.StrEnum):
    """What a file input holds, from its schema `format` (`image_uri`, `video_uri`, ...)."""

    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class MediaRule:
    """One RunComfy `validations` entry, e.g. `width_pixels` `<` 8000.

    `measure` is one of `width_pixels`, `height_pixels`, `width/height`, `file_size_mb`
    (megabytes of 1024 * 1024 bytes); others are kept but not checked. `op` is the
    comparison the value must pass (`<`, `<=`, `>`, `>=`). `message` is RunComfy's own
    `validation_error` text, shown to the user when the rule fails.
    """

    measure: str
    op: str
    value: float
    message: str

    def passes(self, measured: float) -> bool:
        """Whether `measured` keeps the rule (an unknown `op` always passes)."""
        if self.op == "<":
            return measured < self.value
        if self.op == "<=":
            return measured <= self.value
        if self.op == ">":
            return measured > self.value
        if self.op == ">=":
            return measured >= self.value
        return True


@dataclass(frozen=True, slots=True)
class MediaSpec:
    """The file checks one input field carries: its kind, whether it holds a list of URLs
    (`image_uris`), and the rules the file must keep."""

    field: str
    kind: MediaKind
    many: bool = False
    rules: tuple[MediaRule, ...] = ()
