"""The batch journal: a write-ahead SQLite record of every input's fate, so a rerun resumes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from ._errors import ConfigurationError, JournalMismatchError
from ._lock import FileLock
from ._rows import Entry as Entry
from ._rows import JournalRow as JournalRow
from ._rows import Keys as Keys
from ._rows import Row as Row
from ._rows import canonical as canonical
from ._rows import dump as dump
from ._rows import dump_samples as dump_samples
from ._rows import load as load
from ._rows import plan as plan
from ._rows import samples_of as samples_of
from ._rows import stable_key as stable_key
from ._rows import will_submit as will_submit

__all__ = ["JournalRow", "read_journal"]

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
    return [journal_row(record) for record in found]


def journal_row(record: tuple[Any, ...]) -> JournalRow:
    key, idx, line, model_id, inputs, state, rid, _, error, cost, files, attempts = record
    return JournalRow(
        key=key,
        index=idx,
        line=line,
        model_id=model_id,
        inputs=load(inputs),
        state=Entry(state),
        request_id=rid,
        error=load(error) if error else None,
        cost=cost,
        files=load(files) if files else [],
        attempts=load(attempts) if attempts else [],
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
                load(outputs) if outputs else None,
                load(error) if error else None,
                cost,
                load(files) if files else None,
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
                earlier = load(tried) if tried else []
                earlier.append(
                    {"request_id": request_id, "state": state, "error": row.error, "cost": cost}
                )
                self._db.execute(
                    "UPDATE items SET attempts=?, request_id=NULL, outputs=NULL, error=NULL, "
                    "cost=NULL, files=NULL, finished_at=NULL WHERE key=?",
                    (dump(earlier), key),
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
        self._set(key, Entry.UNKNOWN, error=dump(error))

    async def rejected(self, key: str, error: str) -> None:
        self._set(key, Entry.REJECTED, error=dump(error))

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
            outputs=dump(outputs) if outputs is not None else None,
            error=dump(error) if error is not None else None,
            cost=cost,
            finished_at=time.time(),
        )

    async def files(self, key: str, files: list[dict[str, Any]]) -> None:
        """Record downloaded files (path, size, sha256) of a finished input."""
        self._db.execute("UPDATE items SET files=? WHERE key=?", (dump(files), key))

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
            yield journal_row(record)
