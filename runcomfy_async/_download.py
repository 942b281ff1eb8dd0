"""Downloads of request outputs: safe URLs only, generated names, checked and renamed into place."""

from __future__ import annotations

import os
import re
import string
import unicodedata
from collections.abc import AsyncIterator, Mapping
from pathlib import PurePosixPath
from types import TracebackType
from typing import Any, Self

import aiohttp
import anyio
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from anyio.abc import TaskGroup
from yarl import URL

from ._errors import (
    ConfigurationError,
    DownloadError,
    RequestCancelledError,
    RequestFailedError,
)
from ._guard import GuardedResolver, Refused, describe, follow, redact
from ._sink import DownloadedFile, ObjectStore, Sink, open_sink
from ._version import __version__
from ._wire import Result, State

__all__: list[str] = []  # Downloader is reached through Client.download()

CHUNK = 256 * 1024  # bytes read from the response at a time
MAX_STEM = 120  # characters of a generated file name before its extension
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


# ---------------------------------------------------------------- the downloader


class Downloader:
    """Fetches output files with a session of its own that never carries an Authorization header.

    `max_bytes` caps one file (bytes); `timeout` bounds one whole fetch, redirects included
    (seconds); `connections` bounds open connections and concurrent downloads;
    `allow_loopback` permits http and loopback addresses (the local simulator); `resolver`
    looks names up under the address guard (default: aiohttp's; closed with the downloader).
    """

    def __init__(
        self,
        *,
        allow_loopback: bool = False,
        max_bytes: int = 2 * 1024**3,
        timeout: float = 300.0,
        connections: int = 8,
        max_redirects: int = 5,
        resolver: AbstractResolver | None = None,
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
        self._names = resolver
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("the downloader is already open")
        names = self._names if self._names is not None else DefaultResolver()
        resolver = GuardedResolver(names, allow_loopback=self.allow_loopback)
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
        dest_dir: str | os.PathLike[str] | Sink,
        name: str,
        *,
        overwrite: bool = False,
    ) -> DownloadedFile:
        """Download `url` to `dest_dir/<name>.<ext>` (ext from the Content-Type); `dest_dir`
        is a folder, or a Sink.

        An identical file already there is kept and returned; a different one raises
        DownloadError unless `overwrite`. Every failure raises DownloadError.
        """
        session = self.check_open()
        safe = redact(url)
        try:
            with anyio.fail_after(self.timeout):
                return await self._fetch(session, url, open_sink(dest_dir), name, overwrite)
        except Refused as exc:
            raise DownloadError(safe, exc.reason) from exc.__cause__
        except TimeoutError as exc:  # before ClientError: ServerTimeoutError is both
            raise DownloadError(safe, f"timed out after {self.timeout} s") from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise DownloadError(safe, describe(exc)) from exc

    async def _fetch(
        self, session: aiohttp.ClientSession, url: str, sink: Sink, name: str, overwrite: bool
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
            content_type = response.content_type if "Content-Type" in response.headers else None
            filename = f"{stem}.{extension(content_type, current.path, first.path)}"
            length = response.content_length
            if length is not None and length > self.max_bytes:
                raise Refused(f"Content-Length {length} exceeds max_bytes {self.max_bytes}")
            chunks = self._body(response, length)
            stored = await sink.put(filename, chunks, content_type, overwrite=overwrite)
            in_store = stored.location if isinstance(sink, ObjectStore) else None
            return DownloadedFile(
                url,
                sink.path(stored.location),
                stored.size,
                stored.sha256,
                content_type,
                in_store,
            )

    async def _body(
        self, response: aiohttp.ClientResponse, length: int | None
    ) -> AsyncIterator[bytes]:
        """The body's chunks, refused past max_bytes, or longer or shorter than its length."""
        # Compare with Content-Length only when aiohttp did not decompress the body.
        exact = response.headers.get("Content-Encoding", "identity").lower() == "identity"
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


# ---------------------------------------------------------------- a whole result


async def download_result(
    downloader: Downloader,
    result: Result,
    dest_dir: str | os.PathLike[str] | Sink,
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
    sink = open_sink(dest_dir)
    files: list[DownloadedFile | None] = [None] * len(urls)
    failures: list[DownloadError] = []
    limiter = anyio.CapacityLimiter(downloader.connections)

    async def one(n: int, tg: TaskGroup) -> None:
        async with limiter:
            try:
                files[n] = await downloader.fetch(urls[n], sink, stems[n])
            except DownloadError as exc:
                failures.append(exc)
                tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for n in range(len(urls)):
            tg.start_soon(one, n, tg)
    if failures:
        raise failures[0]
    return [file for file in files if file is not None]
