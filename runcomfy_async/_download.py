"""Downloads of request outputs: safe URLs only, generated names, checked and renamed into place."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import os
import re
import secrets
import socket
import stat
import string
import unicodedata
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, BinaryIO, Self

import aiohttp
import anyio
import anyio.to_thread
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from anyio.abc import TaskGroup
from yarl import URL

from ._config import is_loopback
from ._errors import (
    ConfigurationError,
    DownloadError,
    RequestCancelledError,
    RequestFailedError,
)
from ._store import ObjectExistsError, StoreSink, is_store_url
from ._store import reason as store_reason
from ._wire import Result, State

__all__ = ["DownloadedFile"]  # Downloader is reached through Client.download()

CHUNK = 256 * 1024  # bytes written to disk per worker-thread call
MAX_STEM = 120  # characters of a generated file name before its extension
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_EXT_BY_TYPE = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/ogg": "ogg",
    "application/json": "json",
    "model/gltf-binary": "glb",
}
_KNOWN_EXTS = frozenset(_EXT_BY_TYPE.values())
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_STEM_FIELDS = frozenset({"index", "line", "slug", "key", "n", "request_id"})  # {ext} last
DEFAULT_TEMPLATE = "{index:04d}-{slug}-{n}.{ext}"  # a batch's: 0007-a-red-fox-in-snow-0.png
MAX_SLUG = 40  # characters of the prompt in a file name
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
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


# ---------------------------------------------------------------- names


def sanitize(text: str) -> str:
    """Keep [A-Za-z0-9._-], replace anything else with "_", strip leading dots."""
    return _UNSAFE_CHARS.sub("_", text).lstrip(".")


def slug(inputs: Mapping[str, Any]) -> str:
    """A file-name-safe slug of the inputs' text (`prompt`, else the first string input):
    lower-case ASCII words joined by "-", at most 40 characters, never empty ("output")."""
    text = inputs.get("prompt")
    if not isinstance(text, str):
        text = next((value for value in inputs.values() if isinstance(value, str)), "")
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = _NOT_SLUG.sub("-", ascii_text.lower()).strip("-")
    if len(words) > MAX_SLUG:
        cut = words[: MAX_SLUG + 1]
        words = cut[: cut.rfind("-")] if "-" in cut[MAX_SLUG // 2 :] else cut[:MAX_SLUG]
    return words.strip("-") or "output"


def render_stem(
    template: str,
    *,
    key: str,
    n: int,
    request_id: str,
    index: int = 0,
    line: int | None = None,
    slug: str = "output",
) -> str:
    """The file name before `.{ext}`: every field and the whole stem sanitised, ≤ 120 chars.

    `template` must end with ".{ext}" and use only {index}, {line} (index + 1 when the input
    has no line), {slug}, {key}, {n}, {request_id} before it; format specs such as
    `{index:04d}` are allowed.
    """
    if not template.endswith(".{ext}"):
        raise ValueError(f"template must end with '.{{ext}}', got {template!r}")
    head = template[: -len(".{ext}")]
    for _, field, _, _ in string.Formatter().parse(head):
        if field is not None and field not in _STEM_FIELDS:
            raise ValueError(
                f"template field {{{field}}} is not one of index, line, slug, key, n, request_id"
            )
    stem = head.format(
        index=index,
        line=index + 1 if line is None else line,
        slug=sanitize(slug),
        key=sanitize(key),
        n=n,
        request_id=sanitize(request_id),
    )
    return sanitize(stem)[:MAX_STEM]


def extension(content_type: str | None, *paths: str) -> str:
    """The file extension from the Content-Type, else an allowed URL path suffix, else "bin"."""
    if content_type is not None:
        known = _EXT_BY_TYPE.get(content_type.split(";")[0].strip().lower())
        if known is not None:
            return known
    for path in paths:
        suffix = PurePosixPath(path).suffix.lower().lstrip(".")
        if suffix in _KNOWN_EXTS:
            return suffix
    return "bin"


# ---------------------------------------------------------------- URL and address policy

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def address_refusal(address: Address, *, allow_loopback: bool) -> str | None:
    """Why a connection to `address` is refused, or None if it is a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:  # before the rest: ::1 also counts as reserved
        return None if allow_loopback else f"{address} is a loopback address"
    checks = (
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("link-local", address.is_link_local),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not globally routable", not address.is_global),
    )
    return next((f"{address} is a {kind} address" for kind, hit in checks if hit), None)


def url_refusal(url: URL, *, allow_loopback: bool) -> str | None:
    """Why `url` may not be fetched, or None: https (http only to an allowed loopback host),
    no user info, and a literal IP address must be public (or loopback when allowed)."""
    scheme = url.scheme.lower()
    if scheme == "data":
        return "data: URLs are refused (the content is in the URL; decode it yourself)"
    if scheme not in ("https", "http"):
        return f"{scheme or 'a relative'}: URLs are refused: only https is downloaded"
    host = url.host
    if not host:
        return "the URL has no host"
    if "@" in (url.raw_authority or ""):
        return "URLs with a user name or password are refused"
    loopback_name = is_loopback(host)
    if scheme == "http" and not (allow_loopback and loopback_name):
        return "plain http is refused: only https (http only to loopback when allowed)"
    if loopback_name and not allow_loopback:
        return f"{host} is a loopback host"
    if ":" in host or host.replace(".", "").isdigit():  # a literal IP: the resolver is skipped
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return f"{host} is not a canonical IP address"
        return address_refusal(address, allow_loopback=allow_loopback)
    return None


class BlockedAddressError(OSError):
    """A host name resolved only to addresses downloads may not reach."""


class GuardedResolver(AbstractResolver):
    """Resolves with `inner`, then drops refused addresses at connect time (DNS rebinding)."""

    def __init__(self, inner: AbstractResolver, *, allow_loopback: bool) -> None:
        self._inner = inner
        self._allow_loopback = allow_loopback

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The addresses of `host` that may be reached; BlockedAddressError if none."""
        kept: list[ResolveResult] = []
        refused: list[str] = []
        for info in await self._inner.resolve(host, port, family):
            reason = self._refusal(host, info["host"])
            if reason is None:
                kept.append(info)
            else:
                refused.append(reason)
        if not kept:
            detail = "; ".join(refused) or "no addresses"
            raise BlockedAddressError(f"{host} resolves only to refused addresses ({detail})")
        return kept

    def _refusal(self, host: str, resolved: str) -> str | None:
        try:
            address = ipaddress.ip_address(resolved)
        except ValueError:
            return f"{resolved} is not an IP address"
        if is_loopback(host) and not address.is_loopback:
            return f"{address} is not loopback, though {host} names loopback"
        return address_refusal(address, allow_loopback=self._allow_loopback)

    async def close(self) -> None:
        await self._inner.close()


def _inner_resolver() -> AbstractResolver:
    return DefaultResolver()


def redact(url: str) -> str:
    """`url` without query string, fragment or user info, for messages."""
    try:
        parsed = URL(url)
        if parsed.absolute:
            return str(parsed.with_query(None).with_fragment(None).with_user(None))
    except (ValueError, TypeError):
        pass
    return re.sub(r"[?#].*", "", url, flags=re.S)


class Refused(Exception):
    """Internal: a download refused for `reason`; fetch turns it into DownloadError."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
        exc.os_error, BlockedAddressError
    ):
        return str(exc.os_error)
    text = re.sub(r"\?[^\s'\"\]>]*", "", str(exc))  # no query strings (signatures)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------- the downloader


class Downloader:
    """Fetches output files with a session of its own that never carries an Authorization header.

    `max_bytes` caps one file (bytes); `timeout` bounds one whole fetch, redirects included
    (seconds); `connections` bounds open connections and concurrent downloads;
    `allow_loopback` permits http and loopback addresses (the local simulator).
    """

    def __init__(
        self,
        *,
        allow_loopback: bool = False,
        max_bytes: int = 2 * 1024**3,
        timeout: float = 300.0,
        connections: int = 8,
        max_redirects: int = 5,
    ) -> None:
        if max_bytes < 1 or connections < 1 or max_redirects < 0 or not timeout > 0:
            raise ConfigurationError(
                "max_bytes and connections must be >= 1, max_redirects >= 0, timeout > 0"
            )
        self.allow_loopback = allow_loopback
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.connections = connections
        self.max_redirects = max_redirects
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None
        self._sinks: dict[str, StoreSink] = {}  # object-store prefix -> its sink

    async def __aenter__(self) -> Self:
        from . import __version__

        if self._session is not None:
            raise RuntimeError("the downloader is already open")
        resolver = GuardedResolver(_inner_resolver(), allow_loopback=self.allow_loopback)
        self._resolver = resolver
        connector = aiohttp.TCPConnector(
            limit=self.connections, limit_per_host=self.connections, resolver=resolver
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # no proxies or .netrc credentials from the environment
            headers={"User-Agent": f"runcomfy-async/{__version__} (downloads)"},
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()  # the connector does not close a resolver it was given
        resolver, self._resolver = self._resolver, None
        if resolver is not None:
            await resolver.close()

    def check_open(self) -> aiohttp.ClientSession:
        """The session, or a RuntimeError telling how to open the downloader."""
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("the downloader is not open: use `async with Downloader() as d:`")
        return session

    async def fetch(
        self,
        url: str,
        dest_dir: str | os.PathLike[str],
        name: str,
        *,
        overwrite: bool = False,
    ) -> DownloadedFile:
        """Download `url` to `dest_dir/<name>.<ext>` (ext from the Content-Type).

        An identical file already there is kept and returned; a different one raises
        DownloadError unless `overwrite`. Every failure raises DownloadError.
        """
        session = self.check_open()
        safe = redact(url)
        dest = str(dest_dir) if is_store_url(str(dest_dir)) else Path(dest_dir)
        try:
            with anyio.fail_after(self.timeout):
                return await self._fetch(session, url, dest, name, overwrite)
        except Refused as exc:
            raise DownloadError(safe, exc.reason) from exc.__cause__
        except TimeoutError as exc:  # before ClientError: ServerTimeoutError is both
            raise DownloadError(safe, f"timed out after {self.timeout} s") from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise DownloadError(safe, describe(exc)) from exc

    async def _fetch(
        self,
        session: aiohttp.ClientSession,
        url: str,
        dest: Path | str,
        name: str,
        overwrite: bool,
    ) -> DownloadedFile:
        stem = sanitize(name)[:MAX_STEM]
        if not stem:
            raise Refused(f"the file name {name!r} is empty once sanitised")
        try:
            first = current = URL(url)
        except (ValueError, TypeError) as exc:
            raise Refused("not a valid URL") from exc
        current, response = await follow(
            session,
            "GET",
            first,
            allow_loopback=self.allow_loopback,
            max_redirects=self.max_redirects,
        )
        async with response:
            if response.status != 200:
                raise Refused(f"HTTP {response.status}")
            if isinstance(dest, str):  # an object-store prefix (the [storage] extra)
                return await self._put(response, dest, stem, overwrite, (current, first), url)
            saved = await self._save(response, dest, stem, overwrite, (current, first))
            return DownloadedFile(url, dest / saved[0], *saved[1:])

    async def _put(
        self,
        response: aiohttp.ClientResponse,
        prefix: str,
        stem: str,
        overwrite: bool,
        urls: tuple[URL, URL],
        url: str,
    ) -> DownloadedFile:
        """Stream the body into the store at `prefix` (StoreSink): checked as _save checks."""
        content_type = response.content_type if "Content-Type" in response.headers else None
        filename = f"{stem}.{extension(content_type, *(u.path for u in urls))}"
        length = response.content_length
        if length is not None and length > self.max_bytes:
            raise Refused(f"Content-Length {length} exceeds max_bytes {self.max_bytes}")
        exact = response.headers.get("Content-Encoding", "identity").lower() == "identity"

        async def body() -> AsyncIterator[bytes]:
            total = 0
            async for chunk in response.content.iter_chunked(CHUNK):
                total += len(chunk)
                if total > self.max_bytes:
                    raise Refused(f"body exceeds max_bytes {self.max_bytes}")
                if exact and length is not None and total > length:
                    raise Refused(f"body is longer than its Content-Length {length}")
                yield chunk
            if exact and length is not None and total != length:
                raise Refused(f"body cut short: {total} of {length} bytes")

        sink = self._sinks.get(prefix)
        if sink is None:
            sink = self._sinks[prefix] = StoreSink(prefix)
        try:
            location, size, digest = await sink.put(
                filename, body(), content_type, overwrite=overwrite
            )
        except ObjectExistsError as exc:
            raise Refused(str(exc)) from None
        except (Refused, ConfigurationError):
            raise
        except Exception as exc:  # the store's own errors: one line, no query strings
            raise Refused(f"the store said {store_reason(exc)}") from None
        return DownloadedFile(
            url, Path(location[len(sink.location) :]), size, digest, content_type, location
        )

    async def _save(
        self,
        response: aiohttp.ClientResponse,
        dest: Path,
        stem: str,
        overwrite: bool,
        urls: tuple[URL, URL],
    ) -> tuple[str, int, str, str | None]:
        content_type = response.content_type if "Content-Type" in response.headers else None
        filename = f"{stem}.{extension(content_type, *(u.path for u in urls))}"
        length = response.content_length
        if length is not None and length > self.max_bytes:
            raise Refused(f"Content-Length {length} exceeds max_bytes {self.max_bytes}")
        # Compare with Content-Length only when aiohttp did not decompress the body.
        exact = response.headers.get("Content-Encoding", "identity").lower() == "identity"
        # Shielded: a cancel must not lose the open file, or it could never be removed.
        with anyio.CancelScope(shield=True):
            target, temp, sink = await anyio.to_thread.run_sync(_open_temp, dest, stem, filename)
        try:
            total, buffer = 0, bytearray()
            async for chunk in response.content.iter_chunked(CHUNK):
                total += len(chunk)
                if total > self.max_bytes:
                    raise Refused(f"body exceeds max_bytes {self.max_bytes}")
                if exact and length is not None and total > length:
                    raise Refused(f"body is longer than its Content-Length {length}")
                buffer += chunk
                if len(buffer) >= CHUNK:
                    await anyio.to_thread.run_sync(sink.write, bytes(buffer))
                    buffer.clear()
            if buffer:
                await anyio.to_thread.run_sync(sink.write, bytes(buffer))
            if exact and length is not None and total != length:
                raise Refused(f"body cut short: {total} of {length} bytes")
            await anyio.to_thread.run_sync(sink.finish)
            digest = sink.hash.hexdigest()
            await anyio.to_thread.run_sync(_place, temp, target, digest, total, overwrite)
        except BaseException:
            sink.close()
            temp.unlink(missing_ok=True)
            raise
        return filename, total, digest, content_type


def _open_temp(dest: Path, stem: str, filename: str) -> tuple[Path, Path, _Sink]:
    """Create `dest` if need be; the target path (checked to be inside it) and a new,
    exclusively created temporary file next to it."""
    dest.mkdir(parents=True, exist_ok=True)
    real = Path(os.path.realpath(dest))  # `dest` may be a symlink: the user chose it
    target = real / filename
    if target.parent != real or filename in (".", ".."):
        raise Refused(f"{filename!r} would land outside {dest}")
    temp = real / f".{stem}.{secrets.token_hex(6)}.part"
    return target, temp, _Sink(os.fdopen(os.open(temp, _OPEN_FLAGS, 0o666), "wb"))


class _Sink:
    """The temporary file: hashes and writes in a worker thread, then flushes and fsyncs."""

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


def _place(temp: Path, target: Path, digest: str, size: int, overwrite: bool) -> None:
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


# ---------------------------------------------------------------- a whole result


async def follow(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    *,
    allow_loopback: bool,
    max_redirects: int,
    headers: dict[str, str] | None = None,
) -> tuple[URL, aiohttp.ClientResponse]:
    """Call `url` on a keyless session, following up to `max_redirects` redirects by hand,
    each hop refused as url_refusal() says; the final URL and its (open) response."""
    current = url
    for hop in range(max_redirects + 1):
        reason = url_refusal(current, allow_loopback=allow_loopback)
        if reason is not None:
            raise Refused(reason if hop == 0 else f"redirect to {redact(str(current))}: {reason}")
        try:
            response = await session.request(
                method, current, headers=headers, allow_redirects=False
            )
        except aiohttp.ClientConnectorError as exc:
            if hop == 0:
                raise
            raise Refused(f"redirect to {redact(str(current))}: {describe(exc)}") from exc
        if response.status not in REDIRECTS:
            return current, response
        response.release()
        location = response.headers.get("Location")
        if not location:
            raise Refused(f"HTTP {response.status} redirect without a Location")
        current = response.url.join(URL(location))
    raise Refused(f"more than {max_redirects} redirects")


async def download_result(
    downloader: Downloader,
    result: Result,
    dest_dir: str | os.PathLike[str],
    *,
    key: str | int | None = None,
    template: str = "{key}-{n}.{ext}",
    index: int = 0,
    line: int | None = None,
    slug: str = "output",
    names: list[str] | None = None,
) -> list[DownloadedFile]:
    """Download every URL of `result.output.urls` into `dest_dir`, in that order.

    At most `downloader.connections` at once. Names come from `template`: {key} (default the
    request_id), {n} (index in output.urls), {request_id}, {index}, {line}, {slug}, and
    {ext} last; `names` (stems chosen by an earlier save, one per URL) win over it, so a
    file is never renamed. The first failure cancels the rest and raises DownloadError;
    files already complete stay in place.
    """
    if result.output is None:
        cls = RequestCancelledError if result.state is State.CANCELLED else RequestFailedError
        raise cls(
            f"request {result.request_id} has no output to download (state {result.state})",
            request_id=result.request_id,
            error=result.error,
        )
    downloader.check_open()
    urls = result.output.urls
    label = result.request_id if key is None else str(key)
    rid = result.request_id
    stems = [
        render_stem(template, key=label, n=n, request_id=rid, index=index, line=line, slug=slug)
        for n in range(max(len(urls), 1))  # n = 0 checks the template even without outputs
    ][: len(urls)]
    if names is not None and len(names) == len(urls):
        stems = [sanitize(name)[:MAX_STEM] or stem for name, stem in zip(names, stems, strict=True)]
    if len(set(stems)) != len(stems):
        raise ValueError(f"template {template!r} gives two outputs the same name: use {{n}}")
    files: list[DownloadedFile | None] = [None] * len(urls)
    failures: list[DownloadError] = []
    limiter = anyio.CapacityLimiter(downloader.connections)

    async def one(n: int, tg: TaskGroup) -> None:
        async with limiter:
            try:
                files[n] = await downloader.fetch(urls[n], dest_dir, stems[n])
            except DownloadError as exc:
                failures.append(exc)
                tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for n in range(len(urls)):
            tg.start_soon(one, n, tg)
    if failures:
        raise failures[0]
    return [file for file in files if file is not None]
