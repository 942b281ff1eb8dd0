"""The batch journal: a write-ahead SQLite record of every input's fate, so a rerun resumes."""

from __future__ import annotations

import contextlib
import enum
import hashlib
import math
import os
import sqlite3
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from ._errors import ConfigurationError
from ._lock import FileLock, JournalBusyError

__all__ = ["JournalBusyError", "JournalMismatchError", "JournalRow", "read_journal"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY,
    idx INTEGER NOT NULL,
    model_id TEXT NOT NULL,
    inputs TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    run TEXT NOT NULL,
    request_id TEXT,
    outputs TEXT,
    error TEXT,
    cost REAL,
    files TEXT,
    created_at REAL NOT NULL,
    sent_at REAL,
    finished_at REAL,
    line INTEGER,
    attempts TEXT
);
CREATE TABLE IF NOT EXISTS run_times (
    model_id TEXT PRIMARY KEY,
    samples TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""
_VERSION = "2"
# `run_times` came later within version 2: a table of its own, which readers of version 2
# that do not know it never look at.
# Version 1 had no `line` (the input's line) nor `attempts` (earlier requests of an input
# that were billed and then retried): both are added in place, nothing else changed.
_MIGRATE_1 = (
    "ALTER TABLE items ADD COLUMN line INTEGER",
    "ALTER TABLE items ADD COLUMN attempts TEXT",
)
_COLUMNS = (
    "key, idx, line, model_id, inputs, state, request_id, outputs, error, cost, files, attempts"
)


class JournalMismatchError(ConfigurationError):
    """The journal belongs to another batch: a key it holds has different inputs now."""


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


def _dump(value: Any) -> str:
    """JSON text of a decoded answer, by msgspec: whatever the SDK could decode (e.g. an
    output nested ~950 levels deep, past json.dumps' recursion) it can record."""
    return msgspec.json.encode(value).decode()


def _load(text: str) -> Any:
    return msgspec.json.decode(text)


RUN_TIMES_KEPT = 64  # run-time samples a journal keeps per model (the newest)


def dump_samples(samples: Sequence[float]) -> str:
    """Run-time samples as the journals store them: a JSON list of the newest, in ms."""
    kept = [round(float(s), 3) for s in samples if s >= 0 and math.isfinite(s)]
    return _dump(kept[-RUN_TIMES_KEPT:])


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


def read_journal(path: str | os.PathLike[str]) -> list[JournalRow]:
    """Every input a journal records, in input order (`index`), read-only, with no Client.

    A journal that does not exist yet holds nothing (an empty list); one that cannot be read
    raises ConfigurationError. It may be read while a run writes it.
    """
    where = os.fspath(path)
    if not os.path.exists(where):
        return []
    uri = "file:" + urllib.parse.quote(os.path.abspath(where)) + "?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True)
        try:
            version = _version(db)
            if version not in ("1", _VERSION):
                raise ConfigurationError(_format_error(where, version))
            columns = _COLUMNS
            if version == "1":  # read as it is: no line, no attempts
                columns = columns.replace(" line,", " NULL,").replace(", attempts", ", NULL")
            found = db.execute(f"SELECT {columns} FROM items ORDER BY idx, key").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise ConfigurationError(f"{where} is not a usable batch journal: {exc}") from exc
    return [_journal_row(record) for record in found]


def _journal_row(record: tuple[Any, ...]) -> JournalRow:
    key, idx, line, model_id, inputs, state, rid, _, error, cost, files, attempts = record
    return JournalRow(
        key=key,
        index=idx,
        line=line,
        model_id=model_id,
        inputs=_load(inputs),
        state=Entry(state),
        request_id=rid,
        error=_load(error) if error else None,
        cost=cost,
        files=_load(files) if files else [],
        attempts=_load(attempts) if attempts else [],
    )


def _version(db: sqlite3.Connection) -> str | None:
    try:
        found = db.execute("SELECT value FROM meta WHERE name='version'").fetchone()
    except sqlite3.OperationalError as exc:  # no meta table: an empty or foreign database
        raise sqlite3.DatabaseError(f"no journal tables ({exc})") from exc
    return None if found is None else str(found[0])


def _format_error(path: str, version: str | None) -> str:
    return f"{path} is a batch journal of format {version}, this SDK reads 1 and {_VERSION}"


class Journal:
    """Write-ahead record of a batch in one SQLite file (WAL; no server), held by one run:
    the SQLite BatchJournal (see _journals).

    Every change is its own committed transaction: the intent is on disk before a submit is
    sent, and the request_id as soon as it arrives. Writes are small and WAL-appended, so
    they are made inline rather than through a thread. The run holds an exclusive lock on
    `<path>.lock` while the journal is open: a second run is refused (JournalBusyError).
    """

    durable = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.run = uuid.uuid4().hex
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the journal's folder {folder}: {exc.strerror or exc}"
            ) from exc
        self._lock = FileLock(self.path + ".lock", what=f"the batch journal {self.path}")
        try:
            self._db = self._open()
        except BaseException:
            self._lock.close()
            raise

    def _open(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ConfigurationError(f"{self.path} is not a usable batch journal: {exc}") from exc
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            version = db.execute("SELECT value FROM meta WHERE name='version'").fetchone()
            if version is None:
                db.execute("INSERT INTO meta VALUES ('version', ?)", (_VERSION,))
            elif version[0] == "1":
                for statement in _MIGRATE_1:
                    db.execute(statement)
                db.execute("UPDATE meta SET value=? WHERE name='version'", (_VERSION,))
            elif version[0] != _VERSION:
                db.execute("ROLLBACK")
                db.close()
                raise ConfigurationError(_format_error(self.path, version[0]))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            db.close()
            raise ConfigurationError(f"{self.path} is not a usable batch journal: {exc}") from exc
        return db

    async def close(self) -> None:
        self._db.close()
        self._lock.close()

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    async def claim(
        self,
        key: str,
        index: int,
        line: int | None,
        model_id: str,
        body: bytes,
        *,
        retry_failed: bool = False,
        resubmit_unknown: bool = False,
    ) -> Row:
        """Record that this run read `key`; return what earlier runs left of it.

        When the input is to be submitted now (will_submit()), it is marked `sending` in the
        same transaction (`Row.send`): claiming and committing the intent are one step.
        """
        inputs = canonical(body).decode()
        digest = hashlib.sha256(f"{model_id}\0{inputs}".encode()).hexdigest()
        with self._atomic():
            found = self._db.execute(
                "SELECT input_hash, state, run, request_id, outputs, error, cost, model_id, "
                "files, attempts FROM items WHERE key=?",
                (key,),
            ).fetchone()
            now = time.time()
            if found is None:
                self._db.execute(
                    "INSERT INTO items (key, idx, line, model_id, inputs, input_hash, state, "
                    "run, created_at, sent_at) VALUES (?, ?, ?, ?, ?, ?, 'sending', ?, ?, ?)",
                    (key, index, line, model_id, inputs, digest, self.run, now, now),
                )
                return Row(key, Entry.NEW, None, None, None, None, None, False, send=True)
            input_hash, state, run, request_id, outputs, error, cost, old_model, files, tried = (
                found
            )
            if input_hash != digest:
                raise JournalMismatchError(
                    f"journal {self.path} belongs to another batch: key {key!r} was "
                    f"{old_model} with other inputs; use a new journal file, or the same inputs"
                )
            row = Row(
                key,
                Entry(state),
                request_id,
                _load(outputs) if outputs else None,
                _load(error) if error else None,
                cost,
                _load(files) if files else None,
                duplicate=run == self.run,
            )
            if row.duplicate:
                return row
            send = will_submit(
                row.state, retry_failed=retry_failed, resubmit_unknown=resubmit_unknown
            )
            self._db.execute(
                "UPDATE items SET run=?, idx=?, line=? WHERE key=?", (self.run, index, line, key)
            )
            if not send:
                return row
            if row.state is Entry.FAILED:  # retried: the billed request goes to `attempts`
                earlier = _load(tried) if tried else []
                earlier.append(
                    {"request_id": request_id, "state": state, "error": row.error, "cost": cost}
                )
                self._db.execute(
                    "UPDATE items SET attempts=?, request_id=NULL, outputs=NULL, error=NULL, "
                    "cost=NULL, files=NULL, finished_at=NULL WHERE key=?",
                    (_dump(earlier), key),
                )
            self._set(key, Entry.SENDING, sent_at=now)
            return Row(key, row.state, None, None, None, None, None, False, send=True)

    def _set(self, key: str, state: Entry, **fields: Any) -> None:
        columns = "".join(f", {name}=?" for name in fields)
        self._db.execute(
            f"UPDATE items SET state=?{columns} WHERE key=?", (state.value, *fields.values(), key)
        )

    async def tracked(self, key: str, request_id: str) -> None:
        self._set(key, Entry.TRACKED, request_id=request_id)

    async def unknown(self, key: str, error: str) -> None:
        self._set(key, Entry.UNKNOWN, error=_dump(error))

    async def rejected(self, key: str, error: str) -> None:
        self._set(key, Entry.REJECTED, error=_dump(error))

    async def finished(
        self,
        key: str,
        state: Entry,
        *,
        outputs: dict[str, Any] | None,
        error: Any,
        cost: float | None,
    ) -> None:
        self._set(
            key,
            state,
            outputs=_dump(outputs) if outputs is not None else None,
            error=_dump(error) if error is not None else None,
            cost=cost,
            finished_at=time.time(),
        )

    async def files(self, key: str, files: list[dict[str, Any]]) -> None:
        """Record downloaded files (path, size, sha256) of a finished input."""
        self._db.execute("UPDATE items SET files=? WHERE key=?", (_dump(files), key))

    async def run_times(self) -> dict[str, list[float]]:
        """Run-time samples per model id (seconds, oldest first) the batch's runs saved."""
        found = self._db.execute("SELECT model_id, samples FROM run_times").fetchall()
        return {model_id: samples_of(text) for model_id, text in found}

    async def save_run_times(self, learnt: Mapping[str, Sequence[float]]) -> None:
        """Replace the samples of each model named; the others stay."""
        now = time.time()
        with self._atomic():
            for model_id, samples in learnt.items():
                self._db.execute(
                    "INSERT OR REPLACE INTO run_times VALUES (?, ?, ?)",
                    (model_id, dump_samples(samples), now),
                )

    async def counts(self) -> dict[str, int]:
        """How many inputs stand in each state."""
        rows = self._db.execute("SELECT state, COUNT(*) FROM items GROUP BY state").fetchall()
        return {state: count for state, count in rows}

    async def rows(self) -> AsyncIterator[JournalRow]:
        """Every input the journal holds, in input order."""
        found = self._db.execute(f"SELECT {_COLUMNS} FROM items ORDER BY idx, key").fetchall()
        for record in found:
            yield _journal_row(record)
