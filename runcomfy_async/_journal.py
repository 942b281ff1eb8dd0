"""The batch journal: a write-ahead SQLite record of every input's fate, so a rerun resumes."""

from __future__ import annotations

import enum
import hashlib
import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from ._download import DownloadedFile
from ._errors import ConfigurationError

__all__ = ["JournalMismatchError"]

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
    finished_at REAL
);
"""
_VERSION = "1"


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


def canonical(body: bytes) -> bytes:
    """The inputs' JSON with sorted keys and no spaces: equal inputs, equal bytes."""
    return msgspec.json.encode(msgspec.json.decode(body), order="sorted")


def stable_key(model_id: str, body: bytes) -> str:
    """A key from the model id and the canonical inputs, so reordered files resume alike."""
    digest = hashlib.sha256(model_id.encode() + b"\0" + canonical(body)).hexdigest()
    return digest[:32]


class Journal:
    """Write-ahead record of a batch in one SQLite file (WAL; no server).

    Every change is its own committed transaction: the intent is on disk before a submit is
    sent, and the request_id as soon as it arrives. Writes are small and WAL-appended, so
    they are made inline rather than through a thread.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.run = uuid.uuid4().hex
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash
            self._db.executescript(_SCHEMA)
            found = self._db.execute("SELECT value FROM meta WHERE name='version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(f"{self.path} is not a usable batch journal: {exc}") from exc
        if found is None:
            self._db.execute("INSERT INTO meta VALUES ('version', ?)", (_VERSION,))
        elif found[0] != _VERSION:
            raise ConfigurationError(
                f"{self.path} is a batch journal of format {found[0]}, this SDK writes {_VERSION}"
            )

    def close(self) -> None:
        self._db.close()

    def claim(self, key: str, index: int, model_id: str, body: bytes) -> Row:
        """Record that this run read `key`; return what earlier runs left of it."""
        inputs = canonical(body).decode()
        digest = hashlib.sha256(f"{model_id}\0{inputs}".encode()).hexdigest()
        found = self._db.execute(
            "SELECT input_hash, state, run, request_id, outputs, error, cost, model_id, files "
            "FROM items WHERE key=?",
            (key,),
        ).fetchone()
        if found is None:
            self._db.execute(
                "INSERT INTO items (key, idx, model_id, inputs, input_hash, state, run, "
                "created_at) VALUES (?, ?, ?, ?, ?, 'new', ?, ?)",
                (key, index, model_id, inputs, digest, self.run, time.time()),
            )
            return Row(key, Entry.NEW, None, None, None, None, None, duplicate=False)
        input_hash, state, run, request_id, outputs, error, cost, old_model, files = found
        if input_hash != digest:
            raise JournalMismatchError(
                f"journal {self.path} belongs to another batch: key {key!r} was "
                f"{old_model} with other inputs; use a new journal file, or the same inputs"
            )
        duplicate = run == self.run
        if not duplicate:
            self._db.execute("UPDATE items SET run=?, idx=? WHERE key=?", (self.run, index, key))
        return Row(
            key,
            Entry(state),
            request_id,
            json.loads(outputs) if outputs else None,
            json.loads(error) if error else None,
            cost,
            json.loads(files) if files else None,
            duplicate=duplicate,
        )

    def _set(self, key: str, state: Entry, **fields: Any) -> None:
        columns = "".join(f", {name}=?" for name in fields)
        self._db.execute(
            f"UPDATE items SET state=?{columns} WHERE key=?", (state.value, *fields.values(), key)
        )

    def sending(self, key: str) -> None:
        """Commit the intent: from here a crash means 'outcome unknown'."""
        self._set(key, Entry.SENDING, sent_at=time.time())

    def tracked(self, key: str, request_id: str) -> None:
        self._set(key, Entry.TRACKED, request_id=request_id)

    def unknown(self, key: str, error: str) -> None:
        self._set(key, Entry.UNKNOWN, error=json.dumps(error))

    def rejected(self, key: str, error: str) -> None:
        self._set(key, Entry.REJECTED, error=json.dumps(error))

    def finished(
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
            outputs=json.dumps(outputs) if outputs is not None else None,
            error=json.dumps(error) if error is not None else None,
            cost=cost,
            finished_at=time.time(),
        )

    def files(self, key: str, files: list[dict[str, Any]]) -> None:
        """Record downloaded files (path, size, sha256) of a finished input."""
        self._db.execute("UPDATE items SET files=? WHERE key=?", (json.dumps(files), key))

    def counts(self) -> dict[str, int]:
        """How many inputs stand in each state."""
        rows = self._db.execute("SELECT state, COUNT(*) FROM items GROUP BY state").fetchall()
        return {state: count for state, count in rows}


def file_records(files: list[DownloadedFile]) -> list[dict[str, Any]]:
    """Downloaded files as the journal records them."""
    return [_file_record(file) for file in files]


def _file_record(file: DownloadedFile) -> dict[str, Any]:
    return {
        "url": file.url,
        "path": str(file.path),
        "size": file.size,
        "sha256": file.sha256,
        "content_type": file.content_type,
    }


def recorded_files(records: list[dict[str, Any]] | None) -> tuple[DownloadedFile, ...] | None:
    """Files an earlier run downloaded, if they are all still there with their size."""
    if records is None:
        return None
    files = []
    for record in records:
        path = Path(record["path"])
        try:
            if path.is_symlink() or path.stat().st_size != record["size"]:
                return None
        except OSError:
            return None
        files.append(
            DownloadedFile(
                url=record["url"],
                path=path,
                size=record["size"],
                sha256=record["sha256"],
                content_type=record.get("content_type"),
            )
        )
    return tuple(files)
