"""`runcomfy batch`'s manifest: every input the journal holds, in input order, rewritten from
the journal at the end of each run (Ctrl-C included), with the lines this run skipped."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._files import shown
from .._journal import Entry, JournalRow
from .._place import replace_whole
from .._store import is_store_url

__all__ = ["WORDS", "skipped_row", "word", "write_manifest"]

#: The manifest's (and the summary's) word for a journal state.
WORDS: dict[Entry, str] = {
    Entry.NEW: "not sent",
    Entry.REJECTED: "not sent",
    Entry.SENDING: "unknown",
    Entry.UNKNOWN: "unknown",
    Entry.TRACKED: "running",  # accepted, not finished: it goes on (and is billed)
    Entry.SUCCEEDED: "succeeded",
    Entry.FAILED: "failed",
    Entry.CANCELLED: "cancelled",
}


def word(row: JournalRow) -> str:
    """The manifest's word for where a row stands. A request that was queued when the batch
    ended and got cancelled is journaled "rejected" with its request_id (a rerun sends it
    again, free): that is "cancelled" to the user."""
    if row.state is Entry.REJECTED and row.request_id is not None:
        return "cancelled"
    return WORDS.get(row.state, str(row.state))


def journal_row(row: JournalRow, out: Path, resumed: bool) -> dict[str, Any]:
    """A journal row as a manifest line; file paths are relative to the manifest's folder."""
    return {
        "line": row.line,
        "index": row.index,
        "key": row.key,
        "model_id": row.model_id,
        "input": shown(row.inputs),  # a local file as {"$file": path, "sha256": hex}
        "request_id": row.request_id,
        "state": word(row),
        "error": row.error,
        "cost": row.cost,
        "files": [
            {"path": _shown_path(f["path"], out), "size": f["size"], "sha256": f["sha256"]}
            for f in row.files
        ],
        "resumed": resumed,
    }


def _shown_path(path: str, out: Path) -> str:
    """A file's path relative to the manifest's folder; an object's URL as it is."""
    return path if is_store_url(path) else os.path.relpath(path, out)


def skipped_row(model_id: str, index: int, line: int, reason: str) -> dict[str, Any]:
    """A line of the input file that was not sent (bad JSON, invalid inputs)."""
    return {
        "line": line,
        "index": index,
        "key": None,
        "model_id": model_id,
        "input": None,
        "request_id": None,
        "state": "skipped",
        "error": reason,
        "cost": None,
        "files": [],
        "resumed": False,
    }


def write_manifest(
    path: Path,
    rows: Iterable[JournalRow],
    skipped: Iterable[dict[str, Any]],
    *,
    resumed: set[str],
) -> None:
    """Write the manifest (JSON lines) by a rename, so a reader never sees half of it: the
    journal's rows in input order, this run's skipped lines among them by index."""
    out = path.parent
    lines = [(row.index, 0, journal_row(row, out, row.key in resumed)) for row in rows]
    lines += [(entry["index"], 1, entry) for entry in skipped]
    lines.sort(key=lambda entry: (entry[0], entry[1]))
    text = "".join(json.dumps(entry, ensure_ascii=False, default=str) + "\n" for *_, entry in lines)
    replace_whole(path, text.encode("utf-8"))
