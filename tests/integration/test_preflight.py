"""Pre-flight over real sockets on 127.0.0.1: a file host serving generated images, counting
every byte it sends, checked against the runway model's own `promptImage` rules."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from runcomfy_async import PreflightError
from runcomfy_async._download import Downloader
from runcomfy_async._errors import ConfigurationError, InvalidInputError
from runcomfy_async._preflight import Preflight
from runcomfy_async._rules import MediaKind, MediaRule, MediaSpec
from runcomfy_async.simulator._media import MP4_CLIP
from runcomfy_async.simulator._seeds import RUNWAY_INPUT_SCHEMA
from tests.integration.test_download import Names, loopback_only  # noqa: F401 - a fixture
from tests.unit.test_imagesize import gif, jpeg, png, webp_vp8, webp_vp8l, webp_vp8x

RUNWAY = "runwayml/gen3a-turbo/image-to-video"
CAP = 65536  # bytes a check may read of one file
MiB = 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def spec_from_schema(schema: dict[str, Any], name: str, kind: MediaKind) -> MediaSpec:
    """The MediaSpec of one property's RunComfy `validations` (what _schema.py will do)."""
    rules = []
    for entry in schema["properties"][name]["validations"]:
        found = re.fullmatch(r"(.+?)(<=|>=|<|>)", entry["validation_rule"])
        assert found is not None
        rules.append(
            MediaRule(
                found[1], found[2], float(entry["validation_value"]), entry["validation_error"]
            )
        )
    return MediaSpec(name, kind, rules=tuple(rules))


PROMPT_IMAGE = spec_from_schema(RUNWAY_INPUT_SCHEMA, "promptImage", MediaKind.IMAGE)
TOO_BIG = "The uploaded image width and height must not exceed 8000 pixels."
RATIO = "The aspect ratio range should be 1:2 to 2:1."


@dataclass
class Call:
    """One call the host answered: what was asked and how many body bytes it wrote."""

    method: str
    path: str
    headers: CIMultiDict[str]
    sent: int = 0


@dataclass
class File:
    """A file the host serves: honouring Range (or not), with or without lengths."""

    body: bytes
    content_type: str = "image/png"
    ranges: bool = True
    length: bool = True  # Content-Length and the total in Content-Range
    head_length: bool = True  # Content-Length on HEAD (when `length` is False)


@dataclass
class Host:
    """A file host on 127.0.0.1 that records every call and counts the body bytes it sends."""

    files: dict[str, File] = field(default_factory=dict)
    routes: dict[str, Handler] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    url: str = ""

    def gets(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path and c.method == "GET"]

    def sent(self, path: str) -> int:
        return sum(c.sent for c in self.gets(path))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        call = Call(request.method, request.path, CIMultiDict(request.headers))
        self.calls.append(call)
        if request.path in self.routes:
            return await self.routes[request.path](request)
        file = self.files.get(request.path)
        if file is None:
            return web.Response(status=404, text="no such file")
        return await _serve(request, file, call)

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[Host]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        self.url = str(server.make_url("")).rstrip("/")
        try:
            yield self
        finally:
            await server.close()
        for call in self.calls:  # a third-party host never sees credentials or cookies
            assert "Authorization" not in call.headers
            assert "Cookie" not in call.headers


async def _serve(request: web.Request, file: File, call: Call) -> web.StreamResponse:
    body, start, stop, status = file.body, 0, len(file.body), 200
    asked = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("Range", ""))
    if file.ranges and asked is not None:
        start = int(asked[1])
        stop = min(len(body), int(asked[2]) + 1 if asked[2] else len(body))
        if start >= len(body):
            return web.Response(status=416, headers={"Content-Range": f"bytes */{len(body)}"})
        status = 206
    response = web.StreamResponse(status=status)
    response.content_type = file.content_type
    response.headers["Set-Cookie"] = "session=tracking; Path=/"
    if status == 206:
        total = len(body) if file.length else "*"
        response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{total}"
    if file.length or status == 206:
        response.content_length = stop - start
    elif request.method == "HEAD" and file.head_length:
        response.content_length = len(body)
    else:
        response.enable_chunked_encoding()
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    try:
        for at in range(start, stop, 16384):
            piece = body[at : min(at + 16384, stop)]
            await response.write(piece)
            call.sent += len(piece)
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the client hung up, as it should once it has the header
    return response


@pytest.fixture
async def host() -> AsyncIterator[Host]:
    async with Host().serve() as served:
        yield served


@pytest.fixture
async def preflight() -> AsyncIterator[Preflight]:
    async with Preflight(allow_loopback=True, timeout=2.0) as checker:
        yield checker


async def check_one(checker: Preflight, url: str, spec: MediaSpec = PROMPT_IMAGE) -> None:
    await checker.check(RUNWAY, {"promptText": "a cat", spec.field: url}, [spec])


# ------------------------------------------------------------------ the runway rules


@pytest.mark.parametrize(
    "build", [png, jpeg, webp_vp8x, webp_vp8l, webp_vp8, gif], ids=lambda b: b.__name__
)
async def test_an_image_within_the_rules_passes(
    build: Callable[..., bytes], host: Host, preflight: Preflight
) -> None:
    host.files["/ok"] = File(build(1280, 768, size=3 * MiB))
    await check_one(preflight, f"{host.url}/ok")
    assert host.sent("/ok") == preflight.bytes_read == 4096


@pytest.mark.parametrize(
    ("width", "height", "said", "rule", "message"),
    [
        (9000, 5000, "image is 9000 px wide", "rule width_pixels < 8000", TOO_BIG),
        (5000, 8200, "image is 8200 px tall", "rule height_pixels < 8000", TOO_BIG),
        (3000, 1000, "image is 3000x1000 px (width/height 3)", "rule width/height < 2", RATIO),
        (
            1000,
            3000,
            "image is 1000x3000 px (width/height 0.333)",
            "rule width/height > 0.5",
            RATIO,
        ),
    ],
)
async def test_a_broken_rule_names_the_field_the_rule_and_runcomfys_words(
    width: int, height: int, said: str, rule: str, message: str, host: Host, preflight: Preflight
) -> None:
    host.files["/img.png"] = File(png(width, height, size=200_000))
    with pytest.raises(PreflightError) as caught:
        await check_one(preflight, f"{host.url}/img.png")
    assert str(caught.value) == f"promptImage: {said}; {rule}: {message}"
    assert isinstance(caught.value, InvalidInputError)
    assert (caught.value.field, caught.value.model_id) == ("promptImage", RUNWAY)


@pytest.mark.parametrize(
    "file",
    [
        File(png(1280, 768, size=20 * MiB), ranges=True),  # size from Content-Range
        File(png(1280, 768, size=20 * MiB), ranges=False),  # from Content-Length of a 200
        File(png(1280, 768, size=20 * MiB), ranges=False, length=False),  # from a HEAD
    ],
    ids=["content-range", "content-length", "head"],
)
async def test_a_file_over_16_mb_is_refused_having_read_only_its_header(
    file: File, host: Host, preflight: Preflight
) -> None:
    host.files["/big.png"] = file
    with pytest.raises(PreflightError, match="File size must be less than 16 MB") as caught:
        await check_one(preflight, f"{host.url}/big.png")
    assert "file is 20.00 MB (20971520 bytes); rule file_size_mb < 16" in str(caught.value)
    assert preflight.bytes_read == 4096
    if file.ranges:
        assert host.sent("/big.png") == 4096
    else:  # the host sends what the sockets take before the client hangs up, not 20 MB
        assert host.sent("/big.png") < 20 * MiB


async def test_a_file_whose_size_no_header_tells_is_not_blocked_on_size(
    host: Host, preflight: Preflight, caplog: pytest.LogCaptureFixture
) -> None:
    host.files["/stream.png"] = File(
        png(1280, 768, size=20 * MiB), ranges=False, length=False, head_length=False
    )
    with caplog.at_level(logging.DEBUG, logger="runcomfy_async"):
        await check_one(preflight, f"{host.url}/stream.png?token=SECRET")  # size rule skipped
    assert preflight.bytes_read == 4096
    assert "file_size_mb of http://127.0.0.1" in caplog.text
    assert "SECRET" not in caplog.text


async def test_a_small_file_without_lengths_is_measured_by_counting(
    host: Host, preflight: Preflight
) -> None:
    spec = MediaSpec("image", MediaKind.IMAGE, rules=(MediaRule("file_size_mb", "<", 0.001, "x"),))
    host.files["/small.gif"] = File(gif(10, 10, size=3000), "image/gif", False, False, False)
    with pytest.raises(PreflightError, match=r"file is 0.00 MB \(3000 bytes\)"):
        await check_one(preflight, f"{host.url}/small.gif", spec)


# ------------------------------------------------------------------ bytes read


@pytest.mark.parametrize(
    ("name", "data", "requests"),
    [
        ("png", png(9000, 5000, size=20 * MiB), 1),
        ("gif", gif(9000, 5000, size=20 * MiB), 1),
        ("webp", webp_vp8x(9000, 5000, size=20 * MiB), 1),
        ("jpeg", jpeg(9000, 5000, size=20 * MiB), 1),
        ("jpeg-40k-exif", jpeg(9000, 5000, exif=40_000, size=20 * MiB), 2),
        ("jpeg-63k-exif", jpeg(9000, 5000, exif=63_000, size=20 * MiB), 2),
    ],
)
async def test_a_20_mb_image_is_measured_from_under_64_kib(
    name: str, data: bytes, requests: int, host: Host, preflight: Preflight
) -> None:
    host.files["/big"] = File(data)
    with pytest.raises(PreflightError) as caught:
        await check_one(preflight, f"{host.url}/big")
    assert caught.value.problems == (
        f"promptImage: image is 9000 px wide; rule width_pixels < 8000: {TOO_BIG}",
        "promptImage: file is 20.00 MB (20971520 bytes); rule file_size_mb < 16: "
        "File size must be less than 16 MB.",
    )
    assert len(host.gets("/big")) == requests
    assert host.sent("/big") == preflight.bytes_read_per_url[f"{host.url}/big"] <= CAP


async def test_a_jpeg_whose_frame_lies_past_64_kib_is_not_blocked_on_its_size_in_pixels(
    host: Host, preflight: Preflight
) -> None:
    host.files["/deep.jpg"] = File(jpeg(9000, 5000, exif=150_000), "image/jpeg")
    await check_one(preflight, f"{host.url}/deep.jpg")  # the pixel rules are skipped
    assert host.sent("/deep.jpg") == preflight.bytes_read <= CAP


async def test_a_jpeg_from_a_host_ignoring_range_is_read_on_one_stream(
    host: Host, preflight: Preflight
) -> None:
    host.files["/exif.jpg"] = File(jpeg(9000, 5000, exif=40_000, size=MiB), ranges=False)
    with pytest.raises(PreflightError, match="9000 px wide"):
        await check_one(preflight, f"{host.url}/exif.jpg")
    assert len(host.gets("/exif.jpg")) == 1
    assert preflight.bytes_read <= CAP


async def test_a_file_ending_where_the_first_read_does_is_not_refused_for_it(
    host: Host, preflight: Preflight
) -> None:
    host.files["/cut.jpg"] = File(jpeg(1280, 768, exif=5000)[:4096], "image/jpeg")
    await check_one(preflight, f"{host.url}/cut.jpg")  # 416 for more: size known, no pixels
    assert len(host.gets("/cut.jpg")) == 2
    host.files["/empty.png"] = File(b"")
    with pytest.raises(PreflightError, match="expected an image, got an unknown format"):
        await check_one(preflight, f"{host.url}/empty.png")


# ------------------------------------------------------------------ not an image


@pytest.mark.parametrize(
    ("file", "said"),
    [
        (File(b"<!DOCTYPE html><html>Sign in</html>", "text/html"), "got html (text)"),
        (File(MP4_CLIP, "video/mp4"), "got mp4 (video)"),
        (
            File(b'{"error": "gone"}', "application/json"),
            "got an unknown format (application/json)",
        ),
    ],
    ids=["html", "mp4", "json"],
)
async def test_a_file_that_is_not_an_image_is_refused_for_an_image_field(
    file: File, said: str, host: Host, preflight: Preflight
) -> None:
    host.files["/photo.png"] = file
    with pytest.raises(PreflightError) as caught:
        await check_one(preflight, f"{host.url}/photo.png?sig=SECRET")
    assert str(caught.value).startswith(f"promptImage: expected an image, {said}")
    assert f"({host.url}/photo.png)" in str(caught.value)
    assert "SECRET" not in str(caught.value)


async def test_an_unrecognised_image_type_is_not_blocked(host: Host, preflight: Preflight) -> None:
    host.files["/pic.jxl"] = File(b"\xff\x0a" + bytes(5000), "image/jxl")
    await check_one(preflight, f"{host.url}/pic.jxl")


# ------------------------------------------------------------------ refusals


async def test_a_missing_file_is_reported_with_its_status(host: Host, preflight: Preflight) -> None:
    with pytest.raises(PreflightError, match=r"^promptImage: HTTP 404 \(http://127\.0\.0\.1"):
        await check_one(preflight, f"{host.url}/nope.png")


async def test_a_slow_host_times_out_within_the_bound(host: Host) -> None:
    async def stall(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.Response()

    host.routes["/slow.png"] = stall
    async with Preflight(allow_loopback=True, timeout=0.5) as checker:
        started = time.monotonic()
        with pytest.raises(PreflightError, match=r"^promptImage: timed out after 0\.5 s"):
            await check_one(checker, f"{host.url}/slow.png")
        assert time.monotonic() - started < 1.5


def redirect(location: str) -> Handler:
    async def answer(_: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": location})

    return answer


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://images.example.test/x.png", "plain http is refused"),
        ("https://10.0.0.1/x.png", "10.0.0.1 is a private address"),
        ("https://user:pw@images.example.test/x.png", "user name or password"),
    ],
)
async def test_a_redirect_to_a_refused_url_is_not_followed(
    location: str, reason: str, host: Host, preflight: Preflight
) -> None:
    host.routes["/moved.png"] = redirect(location)
    with pytest.raises(PreflightError, match="redirect to") as caught:
        await check_one(preflight, f"{host.url}/moved.png")
    assert reason in str(caught.value)
    assert "pw" not in str(caught.value)


async def test_redirects_are_followed_up_to_three_hops(host: Host, preflight: Preflight) -> None:
    host.files["/final.png"] = File(png(1280, 768))
    for n in range(3):
        host.routes[f"/hop{n}"] = redirect(f"/hop{n + 1}" if n < 2 else "/final.png")
    await check_one(preflight, f"{host.url}/hop0")
    host.routes["/hop3"] = redirect("/hop0")  # a loop
    with pytest.raises(PreflightError, match="more than 3 redirects"):
        await check_one(preflight, f"{host.url}/hop3")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://10.0.0.1/x.png", "10.0.0.1 is a private address"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://intranet.test/x.png", "10.1.2.3 is a private address"),  # by DNS
        ("http://127.0.0.1:9/x.png", "plain http is refused"),
        ("https://localhost/x.png", "loopback host"),
        ("ftp://files.example.test/x.png", "ftp: URLs are refused"),
    ],
)
async def test_private_and_unsafe_addresses_are_refused_without_loopback(
    url: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Preflight(resolver=Names({"intranet.test": "10.1.2.3"})) as checker:
        with pytest.raises(PreflightError, match=r"^promptImage: ") as caught:
            await check_one(checker, url)
    assert reason in str(caught.value)


# ------------------------------------------------------------------ data: URIs


def data_uri(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


async def test_data_uris_are_checked_without_any_network(preflight: Preflight) -> None:
    await check_one(preflight, data_uri(png(1280, 768)))
    with pytest.raises(PreflightError, match="image is 9000 px wide"):
        await check_one(preflight, data_uri(png(9000, 5000)))
    with pytest.raises(PreflightError, match="not valid base64") as caught:
        await check_one(preflight, "data:image/png;base64,not*base64")
    assert "(data:image/png;base64,… 32 characters)" in str(caught.value)
    with pytest.raises(PreflightError, match="expected an image, got html"):
        await check_one(preflight, "data:text/html,<html>hi</html>")
    assert preflight.bytes_read == 0


# ------------------------------------------------------------------ once per batch


async def test_a_url_named_many_times_in_a_batch_is_fetched_once(
    host: Host, preflight: Preflight
) -> None:
    host.files["/shared.jpg"] = File(jpeg(1280, 768, exif=30_000), "image/jpeg")
    url = f"{host.url}/shared.jpg"
    many = MediaSpec("images", MediaKind.IMAGE, many=True, rules=PROMPT_IMAGE.rules)
    async with asyncio.TaskGroup() as tg:
        for _ in range(20):
            tg.create_task(preflight.check(RUNWAY, {"images": [url, url]}, [many]))
    await check_one(preflight, url)
    assert len(host.gets("/shared.jpg")) == 2  # one check: the 4 KiB, then the rest of EXIF
    assert preflight.bytes_read == host.sent("/shared.jpg")


async def test_a_waiting_check_takes_over_when_the_measuring_one_is_cancelled(
    host: Host, preflight: Preflight
) -> None:
    arrived = asyncio.Event()

    async def stall_once(request: web.Request) -> web.StreamResponse:
        if not arrived.is_set():
            arrived.set()
            await asyncio.sleep(30)
        return await _serve(request, File(png(1280, 768)), host.calls[-1])

    host.routes["/once.png"] = stall_once
    url = f"{host.url}/once.png"
    first = asyncio.create_task(check_one(preflight, url))
    await arrived.wait()
    second = asyncio.create_task(check_one(preflight, url))
    await asyncio.sleep(0.05)
    first.cancel()
    await second  # measured anew, not left waiting on the cancelled check
    with pytest.raises(asyncio.CancelledError):
        await first
    assert len(host.gets("/once.png")) == 2


async def test_every_failing_input_is_named(host: Host, preflight: Preflight) -> None:
    host.files["/wide.png"] = File(png(9000, 1000))
    many = MediaSpec("images", MediaKind.IMAGE, many=True, rules=PROMPT_IMAGE.rules)
    inputs = {
        "images": [f"{host.url}/missing.png", data_uri(png(100, 100)), f"{host.url}/wide.png"]
    }
    with pytest.raises(PreflightError) as caught:
        await preflight.check(RUNWAY, inputs, [many, PROMPT_IMAGE])  # promptImage absent: skipped
    assert [line.split(":")[0] for line in caught.value.problems] == [
        "images[0]",
        "images[2]",
        "images[2]",
    ]
    assert str(caught.value).startswith("pre-flight found 3 problems with file inputs:\n  - ")


# ------------------------------------------------------------------ sessions


async def test_a_borrowed_downloader_session_is_used_and_left_open(host: Host) -> None:
    host.files["/ok.png"] = File(png(1280, 768))
    async with Downloader(allow_loopback=True) as downloader:
        async with Preflight(allow_loopback=True, downloader=downloader) as checker:
            await check_one(checker, f"{host.url}/ok.png")
        assert not downloader.check_open().closed
    with pytest.raises(ConfigurationError, match="allow_loopback"):
        Preflight(downloader=downloader)


async def test_a_closed_preflight_refuses_to_check() -> None:
    checker = Preflight()
    await checker.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await check_one(checker, "https://images.example.test/x.png")
