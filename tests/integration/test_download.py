"""Downloads over real sockets on 127.0.0.1: the simulator's outputs and hostile file hosts."""

from __future__ import annotations

import asyncio
import errno
import gc
import hashlib
import ipaddress
import os
import socket
import time
import warnings
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict
from yarl import URL

import runcomfy_async as rc
from runcomfy_async import _guard, _place, _sink, models
from runcomfy_async._download import Downloader, download_result
from runcomfy_async._errors import DownloadError
from runcomfy_async._guard import Refused
from runcomfy_async._sink import DownloadedFile, Sink, Stored
from runcomfy_async.simulator import FaultRule, ModelProfile, Simulator, SimulatorConfig
from tests.conftest import CANARY

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
WAN = models.Wan22TextToImage.model_id
RUNWAY = models.RunwayGen3TurboImageToVideo.model_id
FAST = {
    WAN: ModelProfile(run_time=(0.02, 0.05)),
    RUNWAY: ModelProfile(run_time=(0.02, 0.05)),
    "acme/four-images": ModelProfile(run_time=(0.02, 0.05), outputs=4),
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Host:
    """A file host on 127.0.0.1 that records the headers of every call it gets."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls: list[tuple[str, CIMultiDict[str]]] = []
        self.url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.calls.append((request.path_qs, CIMultiDict(request.headers)))
        return await self.handler(request)

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[Host]:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            yield self
        finally:
            await runner.cleanup()


def png(_: web.Request) -> Awaitable[web.StreamResponse]:
    async def answer() -> web.StreamResponse:
        return web.Response(body=PNG, content_type="image/png")

    return answer()


def result_of(*urls: str, request_id: str = "req-1") -> rc.Result:
    output = rc.Output({"images": list(urls)})
    return rc.Result(request_id=request_id, state=rc.State.SUCCEEDED, output=output)


def files_in(folder: Path) -> list[str]:
    """Every entry under `folder`, hidden temporaries included, relative and sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fast_client(url: str, api_key: str = "k") -> rc.Client:
    poll = rc.PollPolicy(first_interval=0.02, min_interval=0.01, max_interval=0.05)
    return rc.Client(api_key, base_url=url, poll=poll, timeout=5.0)


class Names(AbstractResolver):
    """A DNS table for tests: listed names resolve to loopback addresses, others fail."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = {"localhost": "127.0.0.1", **table}

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.table:
            raise OSError(f"test: {host} is not in the test's DNS table")
        address = self.table[host]
        return [
            ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)
        ]

    async def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Safety net, whatever the code under test does: no name goes to real DNS and no
    connection is opened to an address outside loopback."""
    refused: list[str] = []
    real = aiohttp.TCPConnector._wrap_create_connection

    async def guard(self: aiohttp.TCPConnector, *args: Any, **kwargs: Any) -> Any:
        hosts = [info[4][0] for info in kwargs["addr_infos"]]
        if not all(ipaddress.ip_address(host).is_loopback for host in hosts):
            refused.extend(hosts)
            raise OSError("test: connections leave loopback only over my dead body")
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.TCPConnector, "_wrap_create_connection", guard)
    monkeypatch.setattr(aiohttp.resolver.DefaultResolver, "resolve", Names({}).resolve)
    yield
    assert refused == [], "a connection to a non-loopback address was attempted"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorConfig(models=FAST, queue_delay=0.0)) as simulator:
        yield simulator


# ------------------------------------------------------------------ the simulator's outputs


async def test_a_simulator_png_result_is_saved_whole_and_checked(
    sim: Simulator, tmp_path: Path
) -> None:
    async with fast_client(sim.url) as client:
        result = await client.run(models.Wan22TextToImage(prompt="a red fox"))
    async with Downloader(allow_loopback=True) as downloader:
        (saved,) = await download_result(downloader, result, tmp_path)
    data = saved.path.read_bytes()
    assert saved.path == tmp_path / f"{result.request_id}-0.png"
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert (saved.size, saved.sha256) == (len(data), sha256(data))
    assert saved.content_type == "image/png"
    assert saved.url == result.output.image  # type: ignore[union-attr]
    assert files_in(tmp_path) == [saved.path.name]  # no temporary file left
    files = [call for call in sim.ledger.call_log if call.endpoint == "files"]
    assert files
    assert not any(call.authorized for call in files)


async def test_a_simulator_mp4_result_is_saved_as_mp4(sim: Simulator, tmp_path: Path) -> None:
    inputs = models.RunwayGen3TurboImageToVideo(
        prompt_text="waves", prompt_image="https://example.com/cat.png"
    )
    async with fast_client(sim.url) as client:
        result = await client.run(inputs)
    async with Downloader(allow_loopback=True) as downloader:
        (saved,) = await download_result(downloader, result, tmp_path, key="clip")
    data = saved.path.read_bytes()
    assert saved.path.name == "clip-0.mp4"
    assert data[4:8] == b"ftyp"
    assert saved.sha256 == sha256(data)


async def test_every_output_of_a_request_is_downloaded(sim: Simulator, tmp_path: Path) -> None:
    async with fast_client(sim.url) as client:
        result = await client.run("acme/four-images", {"prompt": "four"})
    assert result.output is not None
    async with Downloader(allow_loopback=True) as downloader:
        saved = await download_result(
            downloader, result, tmp_path, template="{request_id}_out{n}.{ext}"
        )
    assert [f.url for f in saved] == result.output.urls
    assert [f.path.name for f in saved] == [f"{result.request_id}_out{n}.png" for n in range(4)]
    assert all(f.sha256 == sha256(f.path.read_bytes()) for f in saved)
    assert len({f.sha256 for f in saved}) == 4


async def test_downloads_run_concurrently_up_to_the_connection_limit(tmp_path: Path) -> None:
    in_flight = peak = 0
    three_in = asyncio.Event()

    async def slow_png(request: web.Request) -> web.StreamResponse:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == 3:
            three_in.set()
        try:
            await asyncio.wait_for(three_in.wait(), 2.0)  # proves 3 run at once
            await asyncio.sleep(0.02)
            return await png(request)
        finally:
            in_flight -= 1

    async with Host(slow_png).serve() as host:
        urls = [f"{host.url}/o/{n}.png" for n in range(7)]
        async with Downloader(allow_loopback=True, connections=3) as downloader:
            started = time.monotonic()
            saved = await download_result(downloader, result_of(*urls), tmp_path)
    assert time.monotonic() - started < 2.0
    assert peak == 3
    assert [f.path.name for f in saved] == [f"req-1-{n}.png" for n in range(7)]


# ------------------------------------------------------------------ no credential leaves


async def test_no_authorization_header_reaches_a_file_host_even_with_a_canary_key(
    tmp_path: Path,
) -> None:
    upstream = ""

    async def proxy(request: web.Request) -> web.StreamResponse:
        async with aiohttp.ClientSession() as http, http.get(upstream + request.path) as got:
            return web.Response(body=await got.read(), content_type=got.content_type)

    async with Host(proxy).serve() as decoy:
        config = SimulatorConfig(models=FAST, queue_delay=0.0, files_base_url=decoy.url)
        async with Simulator(config) as sim:
            upstream = sim.url
            async with fast_client(sim.url, api_key=CANARY) as client:
                results = [
                    await client.run(WAN, {"prompt": "canary"}),
                    await client.run("acme/four-images", {"prompt": "canary"}),
                ]
                async with Downloader(allow_loopback=True) as downloader:
                    for result in results:
                        await download_result(downloader, result, tmp_path)
            api_calls = [c for c in sim.ledger.call_log if c.endpoint != "files"]
    assert api_calls
    assert all(call.authorized for call in api_calls)  # the canary was sent to the API
    assert len(decoy.calls) == 5
    for _, headers in decoy.calls:
        assert "Authorization" not in headers
        assert "Cookie" not in headers
        assert not any(CANARY in value for value in headers.values())
    assert len(files_in(tmp_path)) == 5


async def test_redirect_hops_carry_no_authorization_or_cookies(tmp_path: Path) -> None:
    async with Host(png).serve() as target:

        async def bounce(request: web.Request) -> web.StreamResponse:
            response = web.Response(status=302, headers={"Location": f"{target.url}/x.png"})
            response.set_cookie("session", "secret-cookie")
            return response

        async with Host(bounce).serve() as start, Downloader(allow_loopback=True) as d:
            saved = await d.fetch(f"{start.url}/first", tmp_path, "out")
    assert saved.path.read_bytes() == PNG
    assert saved.url == f"{start.url}/first"
    for _, headers in start.calls + target.calls:
        assert "Authorization" not in headers
        assert "Cookie" not in headers
        assert set(headers) <= {"Host", "User-Agent", "Accept", "Accept-Encoding"}


# ------------------------------------------------------------------ redirects


@pytest.fixture
def cdn_stands_for_a_public_host(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Lets one loopback URL prefix pass the URL policy, as if it were a public https host,
    so a test can watch where its redirects may not go with allow_loopback=False."""
    real = _guard.url_refusal

    def allow(prefix: str) -> None:
        def policy(url: URL, *, allow_loopback: bool) -> str | None:
            if str(url).startswith(prefix):
                return None
            return real(url, allow_loopback=allow_loopback)

        monkeypatch.setattr(_guard, "url_refusal", policy)

    return allow


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://127.0.0.1:{port}/x.png", "plain http"),
        ("https://127.0.0.1:{port}/x.png", "loopback"),
        ("https://localhost:{port}/x.png", "loopback"),
        ("https://[::1]:{port}/x.png", "loopback"),
        ("https://rebind.test:{port}/x.png", "127.0.0.1 is a loopback address"),  # by DNS
    ],
)
async def test_a_redirect_to_loopback_is_refused_unless_allowed(
    location: str,
    reason: str,
    tmp_path: Path,
    cdn_stands_for_a_public_host: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with Host(png).serve() as target:
        port = URL(target.url).port
        where = location.format(port=port)

        async def bounce(_: web.Request) -> web.StreamResponse:
            return web.Response(status=302, headers={"Location": where})

        names = Names({"rebind.test": "127.0.0.1"})
        async with Host(bounce).serve() as cdn, Downloader(resolver=names) as downloader:
            cdn_stands_for_a_public_host(cdn.url)
            with pytest.raises(DownloadError, match="redirect to") as caught:
                await downloader.fetch(f"{cdn.url}/x.png", tmp_path, "out")
    assert reason in caught.value.reason
    assert len(cdn.calls) == 1
    assert target.calls == []  # refused before a byte went there
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("file:///etc/passwd", "file: URLs are refused"),
        ("data:text/plain,hello", "data: URLs are refused"),
        ("https://10.1.2.3/x.png", "10.1.2.3 is a private address"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("ftp://127.0.0.1/x.png", "ftp: URLs are refused"),
        ("https://user:pw@cdn.example/x.png", "user name or password"),
    ],
)
async def test_a_redirect_to_a_forbidden_place_is_refused(
    location: str, reason: str, tmp_path: Path
) -> None:
    async def bounce(_: web.Request) -> web.StreamResponse:
        return web.Response(status=307, headers={"Location": location})

    async with Host(bounce).serve() as host, Downloader(allow_loopback=True) as downloader:
        with pytest.raises(DownloadError) as caught:
            await downloader.fetch(f"{host.url}/x.png?sig=secret", tmp_path, "out")
    assert reason in caught.value.reason
    assert caught.value.url == f"{host.url}/x.png"
    assert "secret" not in str(caught.value)
    assert "pw" not in str(caught.value)
    assert files_in(tmp_path) == []


async def test_a_redirect_loop_is_capped(tmp_path: Path) -> None:
    async def loop(request: web.Request) -> web.StreamResponse:
        return web.Response(status=301, headers={"Location": "/again"})

    downloader = Downloader(allow_loopback=True, max_redirects=3)
    async with Host(loop).serve() as host, downloader:
        with pytest.raises(DownloadError, match="more than 3 redirects"):
            await downloader.fetch(f"{host.url}/start", tmp_path, "out")
    assert [path for path, _ in host.calls] == ["/start", "/again", "/again", "/again"]


# ------------------------------------------------------------------ names and places


@pytest.mark.parametrize("content_type", ["image/png", "application/x-sh"])
async def test_names_never_come_from_the_url_or_content_disposition(
    content_type: str, tmp_path: Path
) -> None:
    async def evil(_: web.Request) -> web.StreamResponse:
        headers = {"Content-Disposition": 'attachment; filename="../../evil.sh"'}
        return web.Response(body=PNG, content_type=content_type, headers=headers)

    dest = tmp_path / "a" / "out"
    async with Host(evil).serve() as host, Downloader(allow_loopback=True) as downloader:
        result = result_of(f"{host.url}/../../x.png", request_id="../../req")
        (saved,) = await download_result(downloader, result, dest)
    ext = "png"  # from the Content-Type, or the URL's own allowed suffix
    assert saved.path == dest / f"_.._req-0.{ext}"
    assert saved.path.resolve().parent == dest.resolve()
    assert files_in(tmp_path) == ["a", "a/out", f"a/out/_.._req-0.{ext}"]


async def test_an_unknown_type_and_suffix_is_saved_as_bin(tmp_path: Path) -> None:
    async def script(_: web.Request) -> web.StreamResponse:
        return web.Response(body=b"#!/bin/sh\n", content_type="application/x-sh")

    async with Host(script).serve() as host, Downloader(allow_loopback=True) as downloader:
        saved = await downloader.fetch(f"{host.url}/run.sh", tmp_path, "../x")
    assert saved.path == tmp_path / "_x.bin"
    assert saved.content_type == "application/x-sh"


async def test_a_symlinked_destination_folder_is_used(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    async with Host(png).serve() as host, Downloader(allow_loopback=True) as downloader:
        saved = await downloader.fetch(f"{host.url}/x", tmp_path / "link", "out")
    assert saved.path == tmp_path / "link" / "out.png"
    assert (real / "out.png").read_bytes() == PNG


# ------------------------------------------------------------------ size, truncation, time


async def test_a_content_length_over_the_cap_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[Any] = []
    real_open = _place.open_temp

    def spy(*args: Any) -> Any:
        opened.append(args)
        return real_open(*args)

    monkeypatch.setattr(_sink, "open_temp", spy)

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = 50_000_000
        await response.prepare(request)
        await response.write(PNG)
        await asyncio.sleep(10)  # cancelled when the client hangs up
        return response

    downloader = Downloader(allow_loopback=True, max_bytes=100_000, timeout=2.0)
    async with Host(huge).serve() as host, downloader:
        started = time.monotonic()
        with pytest.raises(DownloadError, match="Content-Length 50000000 exceeds"):
            await downloader.fetch(f"{host.url}/x.png", tmp_path, "out")
    assert time.monotonic() - started < 2
    assert opened == []
    assert files_in(tmp_path) == []


async def test_a_chunked_body_over_the_cap_is_aborted_and_leaves_nothing(tmp_path: Path) -> None:
    sent = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(2_000):  # 128 MB if nobody stops it
            await response.write(b"\0" * 65_536)
            sent += 65_536
        return response

    downloader = Downloader(allow_loopback=True, max_bytes=1_000_000, timeout=2.0)
    async with Host(endless).serve() as host, downloader:
        with pytest.raises(DownloadError, match="exceeds max_bytes 1000000"):
            await downloader.fetch(f"{host.url}/x.mp4", tmp_path, "out")
    assert sent < 20_000_000
    assert files_in(tmp_path) == []


async def test_a_body_cut_short_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    async def truncated(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = len(PNG)
        await response.prepare(request)
        await response.write(PNG[:1000])
        assert request.transport is not None
        request.transport.close()
        return response

    async with Host(truncated).serve() as host, Downloader(allow_loopback=True) as downloader:
        with pytest.raises(DownloadError) as caught:
            await downloader.fetch(f"{host.url}/x.png", tmp_path, "out")
    assert isinstance(caught.value.__cause__, aiohttp.ClientPayloadError)
    assert files_in(tmp_path) == []


async def test_a_simulator_output_truncated_in_flight_leaves_no_file(tmp_path: Path) -> None:
    config = SimulatorConfig(
        models=FAST, queue_delay=0.0, faults=[FaultRule("truncate", endpoint="files", times=1)]
    )
    async with Simulator(config) as sim, fast_client(sim.url) as client:
        result = await client.run(WAN, {"prompt": "half"})
        async with Downloader(allow_loopback=True) as downloader:
            with pytest.raises(DownloadError):
                await download_result(downloader, result, tmp_path)
            assert files_in(tmp_path) == []
            (saved,) = await download_result(downloader, result, tmp_path)  # fault spent
    assert saved.path.read_bytes().startswith(b"\x89PNG")


async def test_a_stalled_download_times_out_and_leaves_nothing(tmp_path: Path) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = len(PNG)
        await response.prepare(request)
        await response.write(PNG[:100])
        await asyncio.sleep(10)
        return response

    downloader = Downloader(allow_loopback=True, timeout=0.3)
    async with Host(stall).serve() as host, downloader:
        started = time.monotonic()
        with pytest.raises(DownloadError, match=r"timed out after 0\.3 s") as caught:
            await downloader.fetch(f"{host.url}/x.png", tmp_path, "out")
    assert time.monotonic() - started < 2
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert files_in(tmp_path) == []


async def test_an_http_error_is_a_download_error(tmp_path: Path) -> None:
    async def gone(_: web.Request) -> web.StreamResponse:
        return web.Response(status=404, text="expired")

    async with Host(gone).serve() as host, Downloader(allow_loopback=True) as downloader:
        with pytest.raises(DownloadError, match="HTTP 404"):
            await downloader.fetch(f"{host.url}/x.png", tmp_path, "out")
    assert files_in(tmp_path) == []


async def test_a_refused_connection_is_a_download_error(tmp_path: Path) -> None:
    async with Host(png).serve() as host:
        url = host.url  # closed at once: nothing listens there any more
    async with Downloader(allow_loopback=True) as downloader:
        with pytest.raises(DownloadError) as caught:
            await downloader.fetch(f"{url}/x.png", tmp_path, "out")
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)


async def test_the_first_failure_of_a_result_stops_the_rest(tmp_path: Path) -> None:
    async def some_missing(request: web.Request) -> web.StreamResponse:
        if request.path == "/o/1.png":
            return web.Response(status=410)
        await asyncio.sleep(0.05)
        return await png(request)

    async with Host(some_missing).serve() as host, Downloader(allow_loopback=True) as d:
        urls = [f"{host.url}/o/{n}.png" for n in range(3)]
        with pytest.raises(DownloadError, match="HTTP 410"):
            await download_result(d, result_of(*urls), tmp_path)
    assert not any(name.endswith(".part") for name in files_in(tmp_path))


# ------------------------------------------------------------------ nothing is overwritten


async def download(url: str, dest: Path, **kwargs: Any) -> DownloadedFile:
    async with Downloader(allow_loopback=True) as downloader:
        return await downloader.fetch(url, dest, "out", **kwargs)


async def test_an_existing_different_file_is_kept_unless_overwrite(tmp_path: Path) -> None:
    mine = tmp_path / "out.png"
    mine.write_bytes(b"my own picture")
    async with Host(png).serve() as host:
        with pytest.raises(DownloadError, match=r"a different out\.png exists"):
            await download(f"{host.url}/x.png", tmp_path)
        assert mine.read_bytes() == b"my own picture"
        assert files_in(tmp_path) == ["out.png"]
        saved = await download(f"{host.url}/x.png", tmp_path, overwrite=True)
    assert saved.path.read_bytes() == PNG
    assert files_in(tmp_path) == ["out.png"]


async def test_an_identical_existing_file_is_returned_without_rewriting(tmp_path: Path) -> None:
    async with Host(png).serve() as host:
        first = await download(f"{host.url}/x.png", tmp_path)
        os.utime(first.path, ns=(1_000_000_000, 1_000_000_000))
        before = os.stat(first.path)
        again = await download(f"{host.url}/x.png", tmp_path)
    after = os.stat(first.path)
    assert again == first
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)
    assert files_in(tmp_path) == ["out.png"]


@pytest.mark.parametrize("overwrite", [False, True])
async def test_a_symlink_planted_at_the_target_is_not_followed(
    overwrite: bool, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "out.png").symlink_to(victim)
    async with Host(png).serve() as host:
        with pytest.raises(DownloadError, match="symbolic link"):
            await download(f"{host.url}/x.png", dest, overwrite=overwrite)
    assert victim.read_bytes() == b"precious"
    assert (dest / "out.png").is_symlink()
    assert files_in(dest) == ["out.png"]


async def test_without_hard_links_nothing_is_overwritten_either(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EPERM, "hard links not supported here")

    monkeypatch.setattr(os, "link", no_links)
    async with Host(png).serve() as host:
        saved = await download(f"{host.url}/x.png", tmp_path)
        assert saved.path.read_bytes() == PNG
        saved.path.write_bytes(b"changed")
        with pytest.raises(DownloadError, match="different"):
            await download(f"{host.url}/x.png", tmp_path)
    assert saved.path.read_bytes() == b"changed"
    assert files_in(tmp_path) == ["out.png"]


# ------------------------------------------------------------------ resources


async def test_a_download_leaves_no_open_resource(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with Host(png).serve() as host:
            await download(f"{host.url}/x.png", tmp_path)
            with pytest.raises(DownloadError):
                await download(f"{host.url}/x.png", tmp_path / "out.png")  # a file, not a dir
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


# ------------------------------------------------------------------ the sink seam


class MemorySink:
    """A sink in a dict, as an object store would be: streamed in, refusing other bytes."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.chunks = 0

    async def put(
        self,
        name: str,
        chunks: AsyncIterable[bytes],
        content_type: str | None,
        *,
        overwrite: bool = False,
    ) -> Stored:
        data = b""
        async for chunk in chunks:
            self.chunks += 1
            data += chunk
        location = f"mem://bucket/{name}"
        if self.objects.get(location, data) != data and not overwrite:
            raise Refused(f"a different {name} exists")
        self.objects[location] = data
        return Stored(location, len(data), sha256(data))

    async def holds(self, location: str, size: int) -> bool:
        return len(self.objects.get(location, b"")) == size

    def path(self, location: str) -> Path:
        return Path(location.removeprefix("mem://"))


async def test_outputs_go_to_the_sink_given_instead_of_a_folder(tmp_path: Path) -> None:
    sink = MemorySink()
    typed: Sink = sink  # mypy: a sink of one's own is what download_result takes
    assert typed is sink
    async with Host(png).serve() as host, Downloader(allow_loopback=True) as downloader:
        (saved,) = await download_result(downloader, result_of(f"{host.url}/a.png"), sink)
        sink.objects["mem://bucket/req-1-0.png"] = b"other bytes"
        with pytest.raises(DownloadError, match=r"a different req-1-0\.png exists"):
            await download_result(downloader, result_of(f"{host.url}/a.png"), sink)
    assert saved.path == Path("bucket/req-1-0.png")
    assert (saved.size, saved.sha256) == (len(PNG), sha256(PNG))
    assert sink.chunks >= 1
    assert files_in(tmp_path) == []  # nothing on disk
