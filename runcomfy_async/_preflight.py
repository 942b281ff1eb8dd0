"""Pre-flight: measure each file input from its first bytes and test the model's media rules
before a paid submit."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Self

import aiohttp
import anyio
from aiohttp.abc import AbstractResolver
from yarl import URL

from ._download import Downloader
from ._errors import ConfigurationError, PreflightError
from ._guard import Refused, describe, follow, redact
from ._imagesize import KINDS, Measurement, NeedMore, image_size, measure_bytes, measure_data_uri
from ._rules import MediaKind, MediaRule, MediaSpec

__all__ = ["Preflight"]

logger = logging.getLogger("runcomfy_async")

FIRST_READ = 4096  # bytes asked for first: enough for every format's type and size but a JPEG's
SLACK = 1024  # bytes asked past a JPEG's NeedMore: what lies before its SOF is mostly small
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.I)


class _Flight:
    """One URL's measurement, shared by every check that asks for it (single flight)."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: Measurement | None = None  # None when the measuring task was cancelled


class Preflight:
    """Checks file inputs against a model's media rules (`MediaSpec`) before a submit.

    Reads at most `max_header_bytes` of each URL, with no Authorization header or cookies, over
    `downloader`'s session if given (borrowed, left open) or one of its own; refuses what a
    download would refuse (http but to loopback when `allow_loopback`, private addresses,
    user info); `resolver` looks names up for a session of its own. `timeout` bounds the
    measuring of one URL, redirects included (seconds). Each URL is measured once per
    instance, however many checks name it; make one per batch.
    `bytes_read` counts body bytes read (all URLs); `bytes_read_per_url` per URL.
    """

    def __init__(
        self,
        *,
        allow_loopback: bool = False,
        timeout: float = 10.0,
        max_header_bytes: int = 65536,
        max_redirects: int = 3,
        connections: int = 8,
        downloader: Downloader | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        if max_header_bytes < FIRST_READ or max_redirects < 0 or not timeout > 0:
            raise ConfigurationError(
                f"max_header_bytes must be >= {FIRST_READ}, max_redirects >= 0, timeout > 0"
            )
        if downloader is not None and downloader.allow_loopback != allow_loopback:
            raise ConfigurationError("allow_loopback differs from the downloader's")
        self.allow_loopback = allow_loopback
        self.timeout = timeout
        self.max_header_bytes = max_header_bytes
        self.max_redirects = max_redirects
        self.bytes_read = 0
        self.bytes_read_per_url: dict[str, int] = {}
        self._borrowed = downloader
        self._owned: Downloader | None = None
        self._connections = connections
        self._resolver = resolver
        self._opening = anyio.Lock()
        self._cache: dict[str, _Flight] = {}
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session of its own, if it opened one (a borrowed downloader stays open)."""
        self._closed = True
        owned, self._owned = self._owned, None
        if owned is not None:
            await owned.__aexit__(None, None, None)

    async def check(
        self, model_id: str, inputs: Mapping[str, Any], specs: Sequence[MediaSpec]
    ) -> None:
        """Raise PreflightError naming every file input of `inputs` that breaks its spec's
        rules, is not of the spec's kind, or cannot be fetched; inputs absent or not strings
        are left to the schema check. Rules that cannot be measured are skipped (DEBUG log)."""
        if self._closed:
            raise RuntimeError("this Preflight is closed")
        jobs = [(spec, label, value) for spec in specs for label, value in _values(spec, inputs)]
        verdicts: list[list[str]] = [[] for _ in jobs]

        async def run(n: int, spec: MediaSpec, label: str, value: str) -> None:
            if value[:5].lower() == "data:":
                shown = f"{value[: value.find(',') + 1][:60]}… {len(value)} characters"
                verdicts[n] = judge(spec, label, shown, measure_data_uri(value))
            else:
                verdicts[n] = judge(spec, label, redact(value), await self._measure(value))

        async with anyio.create_task_group() as tg:
            for n, job in enumerate(jobs):
                tg.start_soon(run, n, *job)
        failing = [
            (spec.field, lines) for (spec, _, _), lines in zip(jobs, verdicts, strict=True) if lines
        ]
        if failing:
            problems = [line for _, lines in failing for line in lines]
            raise PreflightError(problems, model_id=model_id, field=failing[0][0])

    # ------------------------------------------------------------ fetching

    async def _measure(self, url: str) -> Measurement:
        """The cached Measurement of `url`; the first caller measures, the others wait for it."""
        while True:
            flight = self._cache.get(url)
            if flight is None:
                flight = self._cache[url] = _Flight()
                try:
                    flight.result = await self._fetch(url)
                finally:
                    if flight.result is None:  # cancelled: a waiter takes over
                        del self._cache[url]
                    flight.done.set()
                return flight.result
            await flight.done.wait()
            if flight.result is not None:
                return flight.result

    async def _fetch(self, url: str) -> Measurement:
        try:
            session = await self._session()
            with anyio.fail_after(self.timeout):
                return await self._probe(session, url)
        except Refused as exc:
            return Measurement(failure=exc.reason)
        except TimeoutError:  # before ClientError: ServerTimeoutError is both
            return Measurement(failure=f"timed out after {self.timeout:g} s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Measurement(failure=f"could not be fetched: {describe(exc)}")

    async def _session(self) -> aiohttp.ClientSession:
        if self._borrowed is not None:
            return self._borrowed.check_open()
        async with self._opening:
            if self._closed:  # aclose() ran while this check was starting
                raise RuntimeError("this Preflight is closed")
            if self._owned is None:
                downloader = Downloader(
                    allow_loopback=self.allow_loopback,
                    timeout=self.timeout,
                    connections=self._connections,
                    max_redirects=self.max_redirects,
                    resolver=self._resolver,
                )
                await downloader.__aenter__()
                self._owned = downloader
            return self._owned.check_open()

    async def _probe(self, session: aiohttp.ClientSession, url: str) -> Measurement:
        """Read the first bytes of `url`: ranged GETs, more only while a JPEG needs more."""
        current, head, want = URL(url), b"", FIRST_READ
        size: int | None = None
        content_type: str | None = None
        response: aiohttp.ClientResponse | None = None
        try:
            while True:
                if response is None:  # ask for bytes len(head) .. want-1
                    opened = await self._open(session, current, len(head), want)
                    if opened is None:  # 416: the file ends where `head` does
                        size = len(head)
                        break
                    current, response = opened
                    content_type = content_type or response.headers.get("Content-Type")
                    identity = response.headers.get("Content-Encoding", "identity") == "identity"
                    if response.status == 200:  # the whole file, from its first byte
                        head, size = b"", response.content_length if identity else None
                    else:
                        found = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
                        if found is None or int(found[1]) != len(head):
                            break  # a range we did not ask for: measure what we have
                        if found[3] != "*" and identity:
                            size = int(found[3])
                asked = want - len(head)
                chunk = await self._read(response, asked, url)
                head += chunk
                if response.status != 200 or len(chunk) < asked:
                    response.release()
                    response = None
                if len(chunk) < asked:  # the body ended: the file is what we read
                    size = len(head) if size is None else size
                    break
                found_size = image_size(head)
                if not isinstance(found_size, NeedMore):
                    break
                if found_size.total > self.max_header_bytes:
                    logger.debug("pre-flight: %s: image size lies past the bytes read", redact(url))
                    break
                want = min(self.max_header_bytes, found_size.total + SLACK)
        finally:
            if response is not None:
                response.release()  # closes the connection if the body was not all read
        if size is None:
            size = await self._head_size(session, current)
        return measure_bytes(head, size=size, content_type=_mime(content_type))

    async def _open(
        self, session: aiohttp.ClientSession, url: URL, start: int, stop: int
    ) -> tuple[URL, aiohttp.ClientResponse] | None:
        """A GET of bytes start..stop-1 of `url`; None if the file has no byte at `start`."""
        headers = {"Range": f"bytes={start}-{stop - 1}", "Accept-Encoding": "identity"}
        current, response = await follow(
            session,
            "GET",
            url,
            headers=headers,
            allow_loopback=self.allow_loopback,
            max_redirects=self.max_redirects,
        )
        if response.status in (200, 206):
            return current, response
        response.release()
        if response.status == 416:
            return None
        raise Refused(f"HTTP {response.status}")

    async def _read(self, response: aiohttp.ClientResponse, count: int, url: str) -> bytes:
        data = bytearray()
        try:
            while len(data) < count:
                chunk = await response.content.read(count - len(data))
                if not chunk:
                    break
                data += chunk
        finally:
            self.bytes_read += len(data)
            self.bytes_read_per_url[url] = self.bytes_read_per_url.get(url, 0) + len(data)
        return bytes(data)

    async def _head_size(self, session: aiohttp.ClientSession, url: URL) -> int | None:
        """Content-Length of a HEAD of `url`, or None (a failed HEAD only loses the size)."""
        try:
            _, response = await follow(
                session,
                "HEAD",
                url,
                headers={"Accept-Encoding": "identity"},
                allow_loopback=self.allow_loopback,
                max_redirects=self.max_redirects,
            )
        except (Refused, aiohttp.ClientError, OSError, ValueError):
            return None
        response.release()
        identity = response.headers.get("Content-Encoding", "identity") == "identity"
        return response.content_length if response.status == 200 and identity else None


def _values(spec: MediaSpec, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    value = inputs.get(spec.field)
    if isinstance(value, str):
        return [(spec.field, value)]
    if spec.many and isinstance(value, list | tuple):
        return [(f"{spec.field}[{n}]", v) for n, v in enumerate(value) if isinstance(v, str)]
    return []


def _mime(content_type: str | None) -> str | None:
    """The media type of a Content-Type header, without parameters, or None."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    return media_type or None


# ---------------------------------------------------------------- judging


def judge(spec: MediaSpec, label: str, shown: str, m: Measurement) -> list[str]:
    """The problems with input `label` (one line each), measured as `m`; [] if none."""
    if m.failure is not None:
        return [f"{label}: {m.failure} ({shown})"]
    problems: list[str] = []
    kind = KINDS.get(m.format or "")
    if spec.kind is not MediaKind.ANY and kind != spec.kind.value:
        said = m.content_type or "no Content-Type"
        if kind is not None:
            problems.append(f"{label}: expected {_a(spec.kind)}, got {m.format} ({kind}) ({shown})")
        elif spec.kind is MediaKind.IMAGE and not said.startswith("image/"):
            problems.append(f"{label}: expected an image, got an unknown format ({said}) ({shown})")
        else:
            logger.debug(
                "pre-flight: %s: format of %s not recognised; kind unchecked", label, shown
            )
    for rule in spec.rules:
        found = m.value(rule.measure)
        if found is None:
            logger.debug(
                "pre-flight: %s: %s of %s unknown; rule skipped", label, rule.measure, shown
            )
        elif not rule.passes(found[0]):
            problems.append(f"{label}: {found[1]}; {_rule(rule)}: {rule.message}")
    return problems


def _rule(rule: MediaRule) -> str:
    return f"rule {rule.measure} {rule.op} {rule.value:g}"


def _a(kind: MediaKind) -> str:
    return f"an {kind.value}" if kind.value[0] in "aeiou" else f"a {kind.value}"
