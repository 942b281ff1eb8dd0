"""What a batch takes, yields and counts: MapOptions, Numbered, Item, Outcome, Progress."""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from ._download import DEFAULT_TEMPLATE, render_stem
from ._errors import (
    ConfigurationError,
    RequestCancelledError,
    RunComfyError,
    SubmissionUnknownError,
)
from ._inputs import ModelInput
from ._sink import DownloadedFile
from ._wire import Result, State

__all__ = ["Change", "Item", "Numbered", "Progress"]

BatchInput = ModelInput | tuple[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class MapOptions:
    """The options of one `client.map()` (see its docstring), checked when it is called."""

    max_in_flight: int = 32
    timeout: float | None = None
    cancel_on_exit: bool = True
    key: Callable[[Any], Hashable] | None = None
    on_change: Callable[[Change], None] | None = None
    journal: str | os.PathLike[str] | None = None
    batch: str | None = None  # a shared postgresql:// journal's batch name
    resubmit_unknown: bool = False
    retry_failed: bool = False
    download_to: str | os.PathLike[str] | None = None
    name_template: str = DEFAULT_TEMPLATE
    validate: bool | None = None
    preflight: bool | None = None

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        try:
            render_stem(self.name_template, key="k", n=0, request_id="r")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ConfigurationError(f"name_template {self.name_template!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Numbered:
    """A batch input with the numbers its user knows it by: `index` (the item's index, and
    the `{index}` of its file names) and `line` (e.g. its line in the input file, comments
    and blank lines counted). `map()` unwraps it: the Item's `input` is `input`."""

    input: BatchInput
    index: int
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """The outcome of one input of a batch: `result` on success, else `error`."""

    index: int
    key: Hashable
    input: Any
    request_id: str | None
    result: Result | None = None
    error: RunComfyError | None = None
    resumed: bool = False  # the outcome comes from the journal of an earlier run
    files: tuple[DownloadedFile, ...] = ()  # the outputs downloaded (with download_to)
    line: int | None = None  # the input's line, when it came as rc.Numbered(..., line=)

    @property
    def ok(self) -> bool:
        """True when the request succeeded."""
        return self.error is None


class Outcome(enum.StrEnum):
    """How an input of a batch ended, the one classification of its Item (the engine's
    counts, the command line's summary and manifest words)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the request failed, or the input was refused, or it timed out
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"  # its submit may have created a job: never resent unasked

    @classmethod
    def of(cls, error: RunComfyError | None) -> Outcome:
        """The outcome of an item with `error` (None: a success)."""
        if error is None:
            return cls.SUCCEEDED
        if isinstance(error, SubmissionUnknownError):
            return cls.UNKNOWN
        if isinstance(error, RequestCancelledError):
            return cls.CANCELLED
        return cls.FAILED


@dataclass(frozen=True, slots=True)
class Change:
    """A state change of one input of a batch; `state` is None until RunComfy is polled."""

    index: int
    key: Hashable
    request_id: str | None
    state: State | None


@dataclass(slots=True)
class Progress:
    """Live counts of a batch by where each input read so far stands (plain ints, cheap)."""

    pending: int = 0  # read, not sent (being checked, or its submit on the wire)
    submitted: int = 0  # accepted by RunComfy, state not yet seen
    queued: int = 0  # queued at RunComfy
    running: int = 0
    succeeded: int = 0
    failed: int = 0  # failed runs, rejected inputs, unknown submissions, timeouts
    cancelled: int = 0  # cancelled, by RunComfy or by the batch ending (queued: free)
    unfinished: int = 0  # left running (billed) when the batch ended early: batch.unfinished

    @property
    def read(self) -> int:
        """Inputs taken from the iterable so far."""
        live = self.pending + self.submitted + self.queued + self.running
        return live + self.done + self.unfinished

    @property
    def sent(self) -> int:
        """Inputs RunComfy accepted and that are not finished: submitted, queued or running."""
        return self.submitted + self.queued + self.running

    @property
    def done(self) -> int:
        """Inputs with a final item."""
        return self.succeeded + self.failed + self.cancelled

    def move(self, old: str | None, new: str | None) -> None:
        if old is not None:
            setattr(self, old, getattr(self, old) - 1)
        if new is not None:
            setattr(self, new, getattr(self, new) + 1)


BUCKET = {State.IN_QUEUE: "queued", State.IN_PROGRESS: "running"}


class Job:
    """One input's bookkeeping inside a batch."""

    __slots__ = (
        "bucket",
        "index",
        "input",
        "key",
        "line",
        "model_id",
        "request_id",
        "sent",
        "settled",
        "slug",
        "told",
    )

    def __init__(self, index: int, key: Hashable, value: Any, line: int | None = None) -> None:
        self.index, self.key, self.input, self.line = index, key, value, line
        self.request_id: str | None = None
        self.model_id: str | None = None
        self.slug = "output"  # of the prompt: the {slug} of its file names
        self.bucket: str | None = "pending"
        self.told: tuple[str | None, State | None] | None = None  # the last Change sent
        self.sent = False  # its submit may have left: a failure from here is not "rejected"
        self.settled = False  # its Item was made: exactly once per input
