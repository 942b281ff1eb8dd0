"""One run at a time on a journal: an exclusive lock the OS releases when its holder dies."""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from ._errors import ConfigurationError, JournalBusyError

__all__ = ["FileLock"]

# Why a sidecar file with flock() (LockFileEx on Windows) and not SQLite's own locks:
# - the OS drops it the moment the holder's process ends, kill -9 included, so a crashed run
#   never leaves a stale lock behind (no pid file to guess about);
# - it is taken before SQLite opens the file, so two runs never both create the schema or
#   insert the same key (the IntegrityError of overlapping runs);
# - SQLite's exclusive locking mode would lock out read_journal() and the CLI's estimate
#   too, and could not say who holds it; the sidecar holds the holder's pid, host and start.
# A lock on a network file system may not be honoured: keep journals on a local disk.

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt


class FileLock:
    """An exclusive, non-blocking lock on `path` (created if need be), held until close()."""

    def __init__(self, path: str, *, what: str) -> None:
        self.path = path
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise ConfigurationError(f"cannot lock {what}: {exc.strerror or exc}") from exc
        try:
            _lock(fd)
        except OSError as exc:
            holder = _read(fd)
            os.close(fd)
            raise JournalBusyError(_busy(what, holder), holder=holder) from exc
        self._fd: int | None = fd
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
        except OSError:
            pass  # the lock holds without its note; a refused run then says less

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)  # releases the lock; the file stays (removing it would race)


def _lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:  # pragma: no cover - Windows
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


def _read(fd: int) -> dict[str, Any]:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError, AttributeError):  # no pread (Windows): say less
        return {}
    return holder if isinstance(holder, dict) else {}


def _busy(what: str, holder: dict[str, Any]) -> str:
    who = "another run"
    if isinstance(holder.get("pid"), int):
        who = f"process {holder['pid']} on {holder.get('host') or 'an unknown host'}"
    since = holder.get("since")
    if isinstance(since, int | float):
        who += time.strftime(" since %Y-%m-%d %H:%M:%S UTC", time.gmtime(since))
    return (
        f"{what} is in use by {who}: wait for that run to end (or stop it), then run again; "
        "two runs on one journal could pay twice for an input, so this one sent nothing"
    )
