"""What a batch yields and counts: Item, Change, Progress."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from ._download import DownloadedFile
from ._errors import RunComfyError
from ._inputs import ModelInput
from ._wire import Result, State

__all__ = ["Change", "Item", "Progress"]

BatchInput = ModelInput | tuple[str, Mapping[str, Any]]


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

    pending: int = 0  # read, not yet accepted by RunComfy
    submitted: int = 0  # accepted, state not yet seen
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0  # failed runs, rejected inputs, unknown submissions, timeouts
    cancelled: int = 0

    @property
    def read(self) -> int:
        """Inputs taken from the iterable so far."""
        return self.pending + self.submitted + self.queued + self.running + self.done

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

    __slots__ = ("bucket", "index", "input", "key", "request_id", "told")

    def __init__(self, index: int, key: Hashable, value: Any) -> None:
        self.index, self.key, self.input = index, key, value
        self.request_id: str | None = None
        self.bucket: str | None = "pending"
        self.told: tuple[str | None, State | None] | None = None  # the last Change sent
