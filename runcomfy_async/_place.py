"""Atomic placement of a file: an exclusive temporary file, fsync, hash, link-then-unlink."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

from ._guard import Refused

__all__ = ["TempFile", "open_temp", "place", "replace_whole"]

_OPEN_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_NO_HARD_LINKS = frozenset(
    {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}
)


def open_temp(dest: Path, stem: str, filename: str) -> tuple[Path, Path, TempFile]:
    """Create `dest` if need be; the target path (checked to be inside it) and a new,
    exclusively created temporary file next to it."""
    dest.mkdir(parents=True, exist_ok=True)
    real = Path(os.path.realpath(dest))  # `dest` may be a symlink: the user chose it
    target = real / filename
    if target.parent != real or filename in (".", ".."):
        raise Refused(f"{filename!r} would land outside {dest}")
    temp = real / f".{stem}.{secrets.token_hex(6)}.part"
    return target, temp, TempFile(os.fdopen(os.open(temp, _OPEN_FLAGS, 0o666), "wb"))


class TempFile:
    """A temporary file being written: hashed and written in worker threads, then fsynced."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.hash.update(data)
        self.file.write(data)

    def finish(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()


def place(temp: Path, target: Path, digest: str, size: int, overwrite: bool) -> None:
    """Move `temp` to `target` without following a symlink or silently replacing a file."""
    if overwrite:
        _check_existing(target, None, 0)
        os.replace(temp, target)
    else:
        try:
            os.link(temp, target)  # atomic: fails if anything is already at target
        except FileExistsError:
            _check_existing(target, digest, size)  # identical: keep it
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            if _check_existing(target, digest, size) is None:  # no hard links here
                os.replace(temp, target)
    temp.unlink(missing_ok=True)
    _fsync_dir(target.parent)


def _check_existing(target: Path, digest: str | None, size: int) -> os.stat_result | None:
    """lstat `target`: None if absent; refuse a symlink, a non-file, or (given `digest`) a
    file with other contents."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise Refused(f"a symbolic link is at {target.name}; it is not followed")
    if not stat.S_ISREG(st.st_mode):
        raise Refused(f"{target.name} exists and is not a regular file")
    if digest is not None and (st.st_size != size or _sha256_of(target) != digest):
        raise Refused(f"a different {target.name} exists; pass overwrite=True to replace it")
    return st


def _sha256_of(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: directories cannot be opened
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_whole(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Put `data` at `path` whole or not at all: a temporary file of this writer's own
    (several processes may write the same file at once), then a rename."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
