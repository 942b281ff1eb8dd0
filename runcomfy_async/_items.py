"""What a batch takes, yields and counts: Numbered, Item, Change, Progress."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import RunComfyError
from ._inputs import ModelInput
from ._sink import DownloadedFile
from ._wire import Result, State

__all__ = ["Change", "Item", "Numbered", "Progress"]

BatchInput = ModelInput | tuple[str, Mapping[str, Any]]


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
