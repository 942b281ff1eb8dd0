"""Where downloaded outputs go: the Sink protocol, the local folder, and their records."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread

from ._errors import ConfigurationError
from ._guard import Refused
from ._place import TempFile, open_temp, place

__all__ = ["DownloadedFile"]

CHUNK = 256 * 1024  # bytes written to disk per worker-thread call


@dataclass(frozen=True, slots=True)
class DownloadedFile:
    """A file on disk: `size` in bytes, `sha256` in hex, `content_type` as the server said.

    Saved into an object store, `location` is the object's URL (`s3://bucket/renders/x.png`)
    and `path` its name under the prefix; on disk `location` is None."""

    url: str
    path: Path
    size: int
    sha256: str
    content_type: str | None
    location: str | None = None


@dataclass(frozen=True, slots=True)
class Stored:
    """What a sink holds after put(): `location` (what journals and manifests record: a
    path, or an object's URL), `size` in bytes, `sha256` in hex."""

    location: str
    size: int
    sha256: str


class Sink(Protocol):
    """A place outputs are saved to, streamed, never overwriting a different object silently.

    put() raises guard.Refused(reason) for what it will not do (a different object already
    there without `overwrite`, a name that would leave the place); the downloader turns that
    into DownloadError. An identical object already there is kept.
    """

    async def put(
        self,
        name: str,
        chunks: AsyncIterable[bytes],
        content_type: str | None,
        *,
        overwrite: bool = False,
    ) -> Stored:
        """Store `chunks` as `name` (a sanitised file name with its extension)."""
        ...

    async def holds(self, location: str, size: int) -> bool:
        """Whether an object an earlier run recorded is still there with its size (resume)."""
        ...

    def path(self, location: str) -> Path:
        """The Path a DownloadedFile reports for `location`."""
        ...


class LocalFolder:
    """A folder on this machine: an exclusive temporary file, fsync'ed, hashed, then linked
    into place (placement in _place). The folder is created on the first put()."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    async def put(
        self,
        name: str,
        chunks: AsyncIterable[bytes],
        content_type: str | None,
        *,
        overwrite: bool = False,
    ) -> Stored:
        stem = name.rsplit(".", 1)[0]
        # Shielded: a cancel must not lose the open file, or it could never be removed.
        with anyio.CancelScope(shield=True):
            target, temp, file = await anyio.to_thread.run_sync(open_temp, self.folder, stem, name)
        try:
            total = await _write(file, chunks)
            await anyio.to_thread.run_sync(file.finish)
            digest = file.hash.hexdigest()
            await anyio.to_thread.run_sync(place, temp, target, digest, total, overwrite)
        except BaseException:
            file.close()
            temp.unlink(missing_ok=True)
            raise
        return Stored(str(self.folder / name), total, digest)

    async def holds(self, location: str, size: int) -> bool:
        return _is_file_of(Path(location), size)  # two stat calls: inline

    def path(self, location: str) -> Path:
        return Path(location)


def _is_file_of(path: Path, size: int) -> bool:
    try:
        return not path.is_symlink() and path.stat().st_size == size
    except OSError:
        return False


async def _write(file: TempFile, chunks: AsyncIterable[bytes]) -> int:
    """Write `chunks` to `file` in worker-thread calls of about CHUNK bytes; the bytes written."""
    total, buffer = 0, bytearray()
    async for chunk in chunks:
        total += len(chunk)
        buffer += chunk
        if len(buffer) >= CHUNK:
            await anyio.to_thread.run_sync(file.write, bytes(buffer))
            buffer.clear()
    if buffer:
        await anyio.to_thread.run_sync(file.write, bytes(buffer))
    return total


def open_sink(destination: str | os.PathLike[str] | Sink) -> Sink:
    """The sink of a destination: the one place a `download_to` / `dest_dir` becomes a Sink.

    A folder path gives a LocalFolder; an object-store URL (`s3://bucket/prefix/`, `gs://`,
    `az://`) an ObjectStore (the `[storage]` extra, imported lazily).
    """
    if isinstance(destination, str) and _is_store_url(destination):
        return ObjectStore(destination)
    if isinstance(destination, str | os.PathLike):
        return LocalFolder(destination)
    return destination


def _is_store_url(text: str) -> bool:
    from ._store import is_store_url

    return is_store_url(text)


class ObjectStore:
    """A bucket prefix (`_store.StoreSink` through obstore): streamed, conditional puts; its
    refusals (a different object already there) are Refused like a folder's."""

    def __init__(self, url: str) -> None:
        from ._store import StoreSink

        self._store = StoreSink(url)
        self.location = self._store.location

    async def put(
        self,
        name: str,
        chunks: AsyncIterable[bytes],
        content_type: str | None,
        *,
        overwrite: bool = False,
    ) -> Stored:
        from ._store import ObjectExistsError, reason

        try:
            location, size, digest = await self._store.put(
                name, chunks, content_type, overwrite=overwrite
            )
        except ObjectExistsError as exc:
            raise Refused(str(exc)) from None
        except (Refused, ConfigurationError):
            raise
        except Exception as exc:  # the store's own errors: one line, no query strings
            raise Refused(f"the store said {reason(exc)}") from None
        return Stored(location, size, digest)

    async def holds(self, location: str, size: int) -> bool:
        return await self._store.holds(location, size)

    def path(self, location: str) -> Path:
        return Path(location.removeprefix(self.location))


def file_records(files: list[DownloadedFile]) -> list[dict[str, Any]]:
    """Downloaded files as the journal records them."""
    return [
        {
            "url": file.url,
            "path": file.location or str(file.path),  # an object's URL when in a store
            "size": file.size,
            "sha256": file.sha256,
            "content_type": file.content_type,
        }
        for file in files
    ]


async def recorded_files(
    sink: Sink, records: list[dict[str, Any]] | None
) -> tuple[DownloadedFile, ...] | None:
    """Files an earlier run saved, if they are all still in `sink` with their size."""
    if records is None:
        return None
    files = []
    for record in records:
        if not await sink.holds(record["path"], record["size"]):
            return None
        files.append(
            DownloadedFile(
                url=record["url"],
                path=sink.path(record["path"]),
                size=record["size"],
                sha256=record["sha256"],
                content_type=record.get("content_type"),
                location=record["path"] if isinstance(sink, ObjectStore) else None,
            )
        )
    return tuple(files)
