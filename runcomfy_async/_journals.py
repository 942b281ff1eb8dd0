"""The journal seam of a batch: the BatchJournal protocol, the null journal, open_journal()."""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import ConfigurationError
from ._journal import Journal
from ._rows import Entry, JournalRow, Row

if TYPE_CHECKING:
    from ._pgjournal import PgJournal

__all__ = ["BatchJournal", "NullJournal", "open_journal"]

#: Journal specs naming a PostgreSQL database rather than a SQLite file.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class BatchJournal(Protocol):
    """Where a batch writes each input's fate ahead of acting on it, so a rerun resumes.

    One run holds a journal at a time. Every method is a committed write (or read): the
    intent is recorded before a submit is sent (`claim` with `Row.send`), the request_id as
    soon as it arrives (`tracked`). Async because a journal may live on a server
    (PostgreSQL); the SQLite one writes inline. `durable` is False only for the NullJournal:
    then items keep their index as key and nothing survives the run.
    """

    durable: bool

    async def claim(
        self,
        key: str,
        index: int,
        line: int | None,
        model_id: str,
        body: bytes,
        *,
        retry_failed: bool,
        resubmit_unknown: bool,
    ) -> Row:
        """Record that this run read `key`; what earlier runs left of it. When it is to be
        submitted now, it is marked `sending` in the same transaction (`Row.send`)."""
        ...

    async def tracked(self, key: str, request_id: str) -> None:
        """RunComfy accepted the input's submit as `request_id`."""
        ...

    async def unknown(self, key: str, error: str) -> None:
        """The submit may have left and its outcome is unknown: never resent unasked."""
        ...

    async def rejected(self, key: str, error: str) -> None:
        """Refused before any job existed (or cancelled while queued): a rerun sends it."""
        ...

    async def finished(
        self,
        key: str,
        state: Entry,
        *,
        outputs: dict[str, Any] | None,
        error: Any,
        cost: float | None,
    ) -> None:
        """The request ended: succeeded, failed or cancelled, with what RunComfy said."""
        ...

    async def files(self, key: str, files: list[dict[str, Any]]) -> None:
        """The outputs saved for a finished input (location, size, sha256, url)."""
        ...

    async def run_times(self) -> dict[str, list[float]]:
        """Run-time samples per model id (seconds, oldest first, at most 64 each) that runs
        of this batch saved with `save_run_times`, so a resumed or shared batch polls as a
        warmed-up client would; {} when none. For PostgreSQL, every worker's of the batch."""
        ...

    async def save_run_times(self, learnt: Mapping[str, Sequence[float]]) -> None:
        """Replace the samples (seconds, oldest first; the newest 64 kept) of each model
        named in `learnt`; other models' stay. A committed write, like the others."""
        ...

    async def counts(self) -> dict[str, int]:
        """How many inputs stand in each state."""
        ...

    def rows(self) -> AsyncIterator[JournalRow]:
        """Every input the journal holds, in input order (for a manifest or a status)."""
        ...

    async def close(self) -> None:
        """Let go of the journal (its lock, its connection)."""
        ...


class NullJournal:
    """The journal of a batch without one: it records nothing, and every input is sent."""

    durable = False

    async def claim(
        self,
        key: str,
        index: int,
        line: int | None,
        model_id: str,
        body: bytes,
        *,
        retry_failed: bool,
        resubmit_unknown: bool,
    ) -> Row:
        return Row(key, Entry.NEW, None, None, None, None, None, False, send=True)

    async def tracked(self, key: str, request_id: str) -> None:
        pass

    async def unknown(self, key: str, error: str) -> None:
        pass

    async def rejected(self, key: str, error: str) -> None:
        pass

    async def finished(
        self,
        key: str,
        state: Entry,
        *,
        outputs: dict[str, Any] | None,
        error: Any,
        cost: float | None,
    ) -> None:
        pass

    async def files(self, key: str, files: list[dict[str, Any]]) -> None:
        pass

    async def run_times(self) -> dict[str, list[float]]:
        return {}

    async def save_run_times(self, learnt: Mapping[str, Sequence[float]]) -> None:
        pass

    async def counts(self) -> dict[str, int]:
        return {}

    async def rows(self) -> AsyncIterator[JournalRow]:
        return
        yield  # an async generator that yields nothing

    async def close(self) -> None:
        pass


def is_postgres(spec: str | os.PathLike[str]) -> bool:
    """Whether a journal spec names a PostgreSQL database (a URL), not a SQLite file."""
    return isinstance(spec, str) and spec.startswith(POSTGRES_SCHEMES)


async def open_journal(
    spec: str | os.PathLike[str] | None,
    *,
    batch: str | None = None,
    max_in_flight: int | None = None,
    saves_files: bool = False,
) -> BatchJournal:
    """The journal a batch writes to: none (NullJournal), a SQLite file (a path), or a
    PostgreSQL database (a `postgresql://` or `postgres://` URL, with the `[postgres]` extra:
    `runcomfy_async._pgjournal.open_journal(spec, batch)` is awaited for it; `batch` names
    the batch there, and is refused for a SQLite file, which holds one batch).
    The shared batch is joined with `max_in_flight` as the cap across all its workers;
    `saves_files`: this run downloads its outputs.

    Raises ConfigurationError for a journal that cannot be used, JournalBusyError when
    another run holds it.
    """
    if spec is None:
        return NullJournal()
    if is_postgres(spec):
        try:
            module = importlib.import_module("runcomfy_async._pgjournal")
        except ImportError as exc:
            raise ConfigurationError(
                "a PostgreSQL journal needs the [postgres] extra: "
                "pip install 'runcomfy-async[postgres]'"
            ) from exc
        journal: BatchJournal = await module.open_journal(
            spec, batch, max_in_flight=max_in_flight, saves_files=saves_files
        )
        return journal
    if batch is not None:
        raise ConfigurationError(
            "batch= names a batch of a shared postgresql:// journal; a SQLite journal "
            "file holds one batch: leave batch out, or use a postgresql:// journal"
        )
    return Journal(spec)


if TYPE_CHECKING:  # mypy checks that every journal is a BatchJournal

    def _conforms(sqlite: Journal, pg: PgJournal, null: NullJournal) -> list[BatchJournal]:
        return [sqlite, pg, null]
