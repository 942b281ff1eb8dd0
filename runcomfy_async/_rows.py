"""What a batch journal records, whichever holds it: Entry states, rows, keys, the resubmit rule."""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

__all__: list[str] = []  # the journal's vocabulary; users get JournalRow from the package


class Entry(enum.StrEnum):
    """Where an input stands in the journal. A crash leaves each input in one of these."""

    NEW = "new"  # read, nothing sent
    SENDING = "sending"  # intent committed; the submit may or may not have left
    UNKNOWN = "unknown"  # the submit's outcome is unknown
    REJECTED = "rejected"  # refused before any job existed: safe to send again
    TRACKED = "tracked"  # RunComfy accepted it: request_id known
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (Entry.SUCCEEDED, Entry.FAILED, Entry.CANCELLED)


def will_submit(state: Entry | None, *, retry_failed: bool, resubmit_unknown: bool) -> bool:
    """Whether a run submits an input the journal has in `state` (None: not in it yet).

    The one rule, used by map() and by anything that plans a run (estimates, --max-cost).
    """
    if state in (None, Entry.NEW, Entry.REJECTED):
        return True
    if state is Entry.FAILED:
        return retry_failed
    if state in (Entry.SENDING, Entry.UNKNOWN):
        return resubmit_unknown
    return False  # tracked (re-attached), succeeded, cancelled


@dataclass(frozen=True, slots=True)
class Row:
    """One input's journal row, as a rerun finds it."""

    key: str
    state: Entry
    request_id: str | None
    outputs: dict[str, Any] | None
    error: Any
    cost: float | None
    files: list[dict[str, Any]] | None
    duplicate: bool  # this key was already read in this run
    send: bool = False  # marked `sending` in the same transaction: submit it now


@dataclass(frozen=True, slots=True)
class JournalRow:
    """One input as the journal records it (read_journal()).

    `state` is an Entry (a str: "succeeded", "failed", "tracked", "unknown", ...); `error`
    and `cost` (USD, as RunComfy reported it) are of its latest request; `files` are the
    outputs saved (path, size, sha256, url); `attempts` are earlier requests of this input
    that ran and were retried (`retry_failed`): request_id, state, error, cost each.
    """

    key: str
    index: int
    line: int | None
    model_id: str
    inputs: dict[str, Any]
    state: Entry
    request_id: str | None
    error: Any
    cost: float | None
    files: list[dict[str, Any]]
    attempts: list[dict[str, Any]]

    @property
    def spent(self) -> float:
        """USD RunComfy reported for this input's requests so far, retried ones included."""
        costs = [self.cost, *(attempt.get("cost") for attempt in self.attempts)]
        return sum(cost for cost in costs if isinstance(cost, int | float))

    @property
    def runs(self) -> int:
        """Requests of this input that ran (and were billed), retried ones included."""
        ran = self.state in (Entry.SUCCEEDED, Entry.FAILED)
        return len(self.attempts) + ran


def dump(value: Any) -> str:
    """JSON text of a decoded answer, by msgspec: whatever the SDK could decode (e.g. an
    output nested ~950 levels deep, past json.dumps' recursion) it can record."""
    return msgspec.json.encode(value).decode()


def load(text: str) -> Any:
    return msgspec.json.decode(text)


RUN_TIMES_KEPT = 64  # run-time samples a journal keeps per model (the newest)


def dump_samples(samples: Sequence[float]) -> str:
    """Run-time samples as the journals store them: a JSON list of the newest, in ms."""
    kept = [round(float(s), 3) for s in samples if s >= 0 and math.isfinite(s)]
    return dump(kept[-RUN_TIMES_KEPT:])


def samples_of(text: str) -> list[float]:
    """The samples `dump_samples` stored; nothing usable is an empty list."""
    try:
        found = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return []
    if not isinstance(found, list):
        return []
    return [
        float(s)
        for s in found
        if isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) and s >= 0
    ]


def canonical(body: bytes) -> bytes:
    """The inputs' JSON with sorted keys and no spaces: equal inputs, equal bytes."""
    return msgspec.json.encode(msgspec.json.decode(body), order="sorted")


def stable_key(model_id: str, body: bytes, occurrence: int = 0) -> str:
    """A key from the model id and the canonical inputs, so reordered files resume alike.

    `occurrence` k > 0 names the k-th repeat (in input order) of the same inputs: the same
    prompt twice is two inputs. Occurrence 0 is the key journals of version 1 hold.
    """
    digest = hashlib.sha256(model_id.encode() + b"\0" + canonical(body)).hexdigest()[:32]
    return digest if occurrence == 0 else f"{digest}-{occurrence}"


class Keys:
    """The default journal keys of a batch, in input order: `key()` counts repeats, so the
    k-th identical (model_id, inputs) gets occurrence k. Keeps one counter per distinct input."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def key(self, model_id: str, body: bytes) -> str:
        first = stable_key(model_id, body)
        occurrence = self._seen.get(first, 0)
        self._seen[first] = occurrence + 1
        return first if occurrence == 0 else f"{first}-{occurrence}"


def plan(
    rows: list[JournalRow],
    keys: Iterable[str],
    *,
    retry_failed: bool = False,
    resubmit_unknown: bool = False,
) -> list[str]:
    """The keys, of `keys` (a run's inputs, e.g. from Keys), that the run would submit."""
    states = {row.key: row.state for row in rows}
    return [
        key
        for key in keys
        if will_submit(
            states.get(key), retry_failed=retry_failed, resubmit_unknown=resubmit_unknown
        )
    ]
