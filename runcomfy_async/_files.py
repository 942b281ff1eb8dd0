"""Local files as inputs: a reference in the journal, checked on disk, sent inline or uploaded."""

from __future__ import annotations

import base64
import functools
import hashlib
import mimetypes
import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread
import msgspec

from ._errors import InvalidInputError, PreflightError, RunComfyError, UploadError
from ._imagesize import MB, Measurement, NeedMore, image_size, measure_bytes, sniff
from ._preflight import judge
from ._rules import MediaSpec

__all__ = ["LocalFile", "Uploader"]

#: Largest file (bytes) sent inline as a data: URI. Base64 makes the JSON body 4/3 of the
#: file, and the body is held in memory and sent again on every retried call: 8 MiB becomes
#: ~10.7 MiB of JSON, well under RunComfy's 64 MiB body limit even with several files.
INLINE_MAX_BYTES = 8 * MB
UPLOAD_EXPIRES = 6 * 3600.0  # seconds a presigned input URL stays valid (queues take time)
HEAD_BYTES = 65536  # bytes read to measure a file (a JPEG's size may lie past the first 4 KiB)
_REF = re.compile(
    r"data:(?P<type>[^;,]*);runcomfy-file=(?P<path>[^;,]*);sha256=(?P<sha>[0-9a-f]{64}),"
)
_MIME = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    "avif": "image/avif",
    "heic": "image/heic",
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "webm": "video/webm",
    "mkv": "video/x-matroska",
    "avi": "video/x-msvideo",
    "m4a": "audio/mp4",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
}
_EXT = {mime: ext for ext, mime in _MIME.items()} | {"image/jpeg": "jpg"}


@dataclass(frozen=True, slots=True, init=False)
class LocalFile:
    """A file on this machine used as a file input (`promptImage=rc.LocalFile("beach.png")`);
    a `pathlib.Path` does the same. `content_type` overrides what the bytes are taken for."""

    path: Path
    content_type: str | None

    def __init__(self, path: str | os.PathLike[str], *, content_type: str | None = None) -> None:
        object.__setattr__(self, "path", Path(path))
        object.__setattr__(self, "content_type", content_type)


class Uploader(Protocol):
    """Where local files too large to inline go (`Client(uploads=...)`): a bucket prefix."""

    async def upload(self, name: str, path: Path, *, size: int, sha256: str, mime: str) -> bool:
        """Store `path` as object `name` unless an object of that name and `size` is there
        already (names are content hashes); True when bytes were sent."""
        ...

    async def url(self, name: str, *, expires: float) -> str:
        """A presigned https GET URL of object `name`, valid `expires` seconds."""
        ...


# ---------------------------------------------------------------- references (no I/O but a hash)


def has_files(value: object) -> bool:
    """Whether a typed input or dict holds a Path or LocalFile (top level or in a list)."""
    if isinstance(value, Mapping):
        values = list(value.values())
    else:
        values = [getattr(value, f) for f in getattr(value, "__struct_fields__", ())]
    return any(_holds_file(v) for v in values)


def _holds_file(value: object) -> bool:
    return _is_file(value) or (isinstance(value, list | tuple) and any(map(_is_file, value)))


_FILE_TYPES = (LocalFile, os.PathLike)  # built once: a union per call cost each submit ~1 us


def _is_file(value: object) -> bool:
    return isinstance(value, _FILE_TYPES) and not isinstance(value, str)


def refer(value: Any) -> Any:  # a typed input stays of its class
    """`value` (a typed input or a dict) with each Path or LocalFile replaced by a reference:
    a `data:` URI naming the path and the file's sha256, holding none of its bytes. The
    journal keeps the reference; the submit sends the file (resolve()). Unreadable files
    raise InvalidInputError."""
    if isinstance(value, Mapping):
        return {key: _refer_value(item) for key, item in value.items()}
    changes = {
        name: _refer_value(item)
        for name in getattr(value, "__struct_fields__", ())
        if _holds_file(item := getattr(value, name))
    }
    return msgspec.structs.replace(value, **changes) if changes else value


def _refer_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_refer_value(item) for item in value]
    if not _is_file(value):
        return value
    local = value if isinstance(value, LocalFile) else LocalFile(value)
    path = local.path
    try:
        st = path.stat()
        sha256 = _sha256(str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
        with path.open("rb") as file:
            head = file.read(64)
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    mime = local.content_type or _mime_of(head, path)
    quoted = urllib.parse.quote(str(path), safe="/._-~")
    return f"data:{mime};runcomfy-file={quoted};sha256={sha256},"


@functools.lru_cache(maxsize=1024)
def _sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    """The file's sha256, read once per (path, size, mtime, inode): a batch that names the
    same file in many inputs hashes it once."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _mime_of(head: bytes, path: Path) -> str:
    found = sniff(head)
    if found in _MIME:
        return _MIME[found]
    guessed = mimetypes.guess_type(path.name)[0]
    return guessed or "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed reference: the file's path (as given), sha256 and media type."""

    path: str
    sha256: str
    mime: str

    @property
    def name(self) -> str:
        """The object name an upload gets: the content hash, so one file is stored once."""
        return f"{self.sha256}.{_EXT.get(self.mime, 'bin')}"


def parse_ref(value: object) -> Ref | None:
    """The Ref a reference string holds, or None for any other value."""
    if not isinstance(value, str) or not value.startswith("data:"):
        return None
    found = _REF.fullmatch(value)
    if found is None:
        return None
    return Ref(urllib.parse.unquote(found["path"]), found["sha"], found["type"])


def shown(inputs: Any) -> Any:
    """Journal inputs as a person reads them (manifest): references as {"$file", "sha256"}."""
    if isinstance(inputs, dict):
        return {key: shown(value) for key, value in inputs.items()}
    if isinstance(inputs, list):
        return [shown(value) for value in inputs]
    ref = parse_ref(inputs)
    return inputs if ref is None else {"$file": ref.path, "sha256": ref.sha256}


def from_json(value: Any, base: Path) -> Any:
    """JSON inputs (a JSONL line) with each {"$file": PATH} replaced by a LocalFile; a
    relative PATH is taken from `base` (the JSONL file's folder)."""
    if isinstance(value, dict):
        if set(value) <= {"$file", "sha256"} and isinstance(value.get("$file"), str):
            return LocalFile(base / value["$file"])
        return {key: from_json(item, base) for key, item in value.items()}
    if isinstance(value, list):
        return [from_json(item, base) for item in value]
    return value


# ---------------------------------------------------------------- resolving, before a submit


@dataclass(frozen=True, slots=True)
class FileSettings:
    """How a client sends local files: inline up to `inline_max_bytes` (bytes), else through
    `uploader` as a presigned URL valid `expires` seconds; `uploads` names it in messages."""

    uploader: Uploader | None = None
    uploads: str | None = None
    inline_max_bytes: int = INLINE_MAX_BYTES
    expires: float = UPLOAD_EXPIRES


class FileInputs:
    """One client's local files: each (by content hash) read, measured and uploaded once,
    however many inputs or submits name it; concurrent submits share the work."""

    def __init__(self, settings: FileSettings) -> None:
        self.settings = settings
        self.uploaded: dict[str, bool] = {}  # object name -> bytes were sent by this client
        self._measured: dict[str, Measurement] = {}
        self._locks: dict[str, anyio.Lock] = {}

    async def resolve(self, model_id: str, body: bytes, specs: Sequence[MediaSpec]) -> bytes:
        """`body` with each reference replaced by what RunComfy can read: a data: URI or a
        presigned URL. The files are checked against `specs` first (PreflightError, same
        words as pre-flight); one too large with no uploader raises InvalidInputError."""
        if not has_refs(body):
            return body
        inputs: dict[str, Any] = msgspec.json.decode(body)
        found = [(label, ref, field) for field, label, ref in _refs(inputs)]
        if not found:
            return body
        by_field = {spec.field: spec for spec in specs}
        problems: list[str] = []
        first: str | None = None
        for label, ref, field in found:
            m = await self._measure(ref)
            spec = by_field.get(field)
            if spec is not None:
                lines = judge(spec, label, ref.path, m)
            else:
                lines = _unreadable(label, ref, m)
            if lines and first is None:
                first = field
            problems += lines
        if problems:
            raise PreflightError(problems, model_id=model_id, field=first)
        sent: dict[str, str] = {}
        for label, ref, field in found:
            if ref.sha256 not in sent:
                sent[ref.sha256] = await self._wire(model_id, label, field, ref)
        return msgspec.json.encode(_replace(inputs, sent))

    async def _measure(self, ref: Ref) -> Measurement:
        async with self._locks.setdefault(ref.sha256, anyio.Lock()):
            if ref.sha256 not in self._measured:
                self._measured[ref.sha256] = await anyio.to_thread.run_sync(_measure_file, ref)
            return self._measured[ref.sha256]

    async def _wire(self, model_id: str, label: str, field: str, ref: Ref) -> str:
        size = self._measured[ref.sha256].size or 0
        settings = self.settings
        if size <= settings.inline_max_bytes:
            data = await anyio.to_thread.run_sync(_read_checked, ref)
            return f"data:{ref.mime};base64,{base64.b64encode(data).decode()}"
        uploader = settings.uploader
        if uploader is None:
            raise InvalidInputError(
                f"{label}: {ref.path} is {size / MB:.1f} MiB ({size:,} bytes), over the "
                f"{settings.inline_max_bytes / MB:g} MiB ({settings.inline_max_bytes:,} bytes) "
                "cap for sending a file inline: pass uploads='s3://bucket/prefix/' to Client "
                "(--uploads on the command line) to upload it, or raise inline_max_bytes; "
                "nothing was sent",
                model_id=model_id,
                field=field,
            )
        async with self._locks[ref.sha256]:
            if ref.name not in self.uploaded:
                try:
                    self.uploaded[ref.name] = await uploader.upload(
                        ref.name, Path(ref.path), size=size, sha256=ref.sha256, mime=ref.mime
                    )
                except RunComfyError:
                    raise
                except Exception as exc:
                    raise UploadError(
                        f"{label}: {ref.path} could not be uploaded to {settings.uploads}: "
                        f"{type(exc).__name__}; nothing was sent"
                    ) from None
        return await uploader.url(ref.name, expires=settings.expires)


def _refs(inputs: Mapping[str, Any]) -> list[tuple[str, str, Ref]]:
    """(field, label, Ref) of every reference at the top level or in a top-level list."""
    found: list[tuple[str, str, Ref]] = []
    for field, value in inputs.items():
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for n, item in items:
            ref = parse_ref(item)
            if ref is not None:
                found.append((field, field if n is None else f"{field}[{n}]", ref))
    return found


def _replace(inputs: dict[str, Any], sent: Mapping[str, str]) -> dict[str, Any]:
    def one(value: Any) -> Any:
        ref = parse_ref(value)
        return value if ref is None else sent[ref.sha256]

    return {
        key: [one(v) for v in value] if isinstance(value, list) else one(value)
        for key, value in inputs.items()
    }


def _unreadable(label: str, ref: Ref, m: Measurement) -> list[str]:
    return [f"{label}: {m.failure} ({ref.path})"] if m.failure is not None else []


def _measure_file(ref: Ref) -> Measurement:
    """What the file's first bytes and its size tell (a JPEG may need more than the first
    read); a file that changed since it was named fails, so what is checked is what is sent."""
    try:
        with open(ref.path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            head = file.read(HEAD_BYTES)
            found = image_size(head)
            if isinstance(found, NeedMore) and found.total <= 16 * MB:
                head += file.read(found.total - len(head))
    except OSError as exc:
        return Measurement(failure=f"cannot be read: {exc.strerror or exc}")
    st = os.stat(ref.path)
    if _sha256(str(Path(ref.path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino) != ref.sha256:
        return Measurement(failure="changed since the batch read it (its sha256 differs)")
    return measure_bytes(head, size=size, content_type=ref.mime)


def _read_checked(ref: Ref) -> bytes:
    with open(ref.path, "rb") as file:
        data = file.read()
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise InvalidInputError(f"{ref.path} changed since it was read (its sha256 differs)")
    return data


def has_refs(body: bytes) -> bool:
    """Whether a submit body holds a local file's reference (cheap: a byte search)."""
    return b";runcomfy-file=" in body


def file_settings(
    uploads: str | Uploader | None, inline_max_bytes: int, expires: float
) -> FileSettings:
    """A client's FileSettings; a store URL needs the `[storage]` extra (ConfigurationError)."""
    from ._errors import ConfigurationError

    if inline_max_bytes < 0 or not expires > 0:
        raise ConfigurationError("inline_max_bytes must be >= 0 and upload_expires > 0")
    if uploads is None or not isinstance(uploads, str):
        label = None if uploads is None else type(uploads).__name__
        return FileSettings(uploads, label, inline_max_bytes, expires)
    from ._store import StoreUploader

    return FileSettings(StoreUploader(uploads), uploads, inline_max_bytes, expires)
