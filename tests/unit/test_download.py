"""Downloads, the pure parts: names, extensions, the URL and address policy, the resolver."""

from __future__ import annotations

import ipaddress
import os
import pickle
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

import runcomfy_async as rc
from runcomfy_async._download import Downloader, download_result, extension, render_stem, sanitize
from runcomfy_async._errors import DownloadError
from runcomfy_async._guard import (
    BlockedAddressError,
    GuardedResolver,
    address_refusal,
    redact,
    url_refusal,
)

# ------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abc-DEF_1.2", "abc-DEF_1.2"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("..hidden", "hidden"),
        ("a b/c\\d:e", "a_b_c_d_e"),
        ("café", "caf_"),
        ("\x00nul", "_nul"),
        ("...", ""),
    ],
)
def test_sanitize_keeps_only_safe_characters(text: str, expected: str) -> None:
    assert sanitize(text) == expected


def test_default_template_names_outputs_by_request_id_and_index() -> None:
    stem = render_stem("{key}-{n}.{ext}", key="req-1", n=2, request_id="req-1")
    assert stem == "req-1-2"


def test_every_template_field_is_sanitised() -> None:
    stem = render_stem(
        "{request_id}_{key}_{n:03d}.{ext}", key="../../x y", n=7, request_id="/abs/..id"
    )
    assert stem == "_abs_..id__.._x_y_007"
    assert "/" not in stem


def test_stem_never_starts_with_a_dot_and_is_capped_at_120_characters() -> None:
    assert render_stem(".{key}.{ext}", key="k", n=0, request_id="r") == "k"
    long = render_stem("{key}.{ext}", key="x" * 500, n=0, request_id="r")
    assert long == "x" * 120


@pytest.mark.parametrize(
    "template", ["{key}-{n}", "{key}.{ext}.{n}", "{key}-{user}.{ext}", "{key.__class__}.{ext}"]
)
def test_bad_templates_are_refused_before_anything_is_fetched(template: str) -> None:
    with pytest.raises(ValueError, match="template"):
        render_stem(template, key="k", n=0, request_id="r")


@pytest.mark.parametrize(
    ("content_type", "path", "expected"),
    [
        ("image/png", "/x.bin", "png"),
        ("image/jpeg", "/x", "jpg"),
        ("IMAGE/WEBP; charset=binary", "/x", "webp"),
        ("image/gif", "/x", "gif"),
        ("video/mp4", "/x", "mp4"),
        ("video/webm", "/x", "webm"),
        ("video/quicktime", "/x", "mov"),
        ("audio/mpeg", "/x", "mp3"),
        ("audio/wav", "/x", "wav"),
        ("audio/x-wav", "/x", "wav"),
        ("audio/ogg", "/x", "ogg"),
        ("application/json", "/x", "json"),
        ("model/gltf-binary", "/x", "glb"),
        ("application/octet-stream", "/out/video.MP4", "mp4"),
        (None, "/out/image.png", "png"),
        ("application/octet-stream", "/evil.sh", "bin"),
        ("text/html", "/x.jpeg", "bin"),  # only the allow-list's own spellings
        (None, "/noext", "bin"),
    ],
)
def test_extension_from_content_type_then_allowed_suffix_then_bin(
    content_type: str | None, path: str, expected: str
) -> None:
    assert extension(content_type, path) == expected


# ------------------------------------------------------------------ URL policy


@pytest.mark.parametrize(
    ("url", "allow_loopback", "refused_for"),
    [
        ("https://cdn.runcomfy.net/out/x.png", False, None),
        ("https://cdn.runcomfy.net/out/x.png?sig=abc", False, None),
        ("https://93.184.216.34/x.png", False, None),  # public literal
        ("http://cdn.runcomfy.net/x.png", False, "plain http"),
        ("http://cdn.runcomfy.net/x.png", True, "plain http"),  # http only to loopback
        ("http://127.0.0.1:8000/x.png", False, "plain http"),
        ("http://127.0.0.1:8000/x.png", True, None),
        ("http://localhost:8000/x.png", True, None),
        ("http://[::1]:8000/x.png", True, None),
        ("https://localhost/x.png", False, "loopback"),
        ("https://127.0.0.1/x.png", False, "loopback"),
        ("https://[::1]/x.png", False, "loopback"),
        ("file:///etc/passwd", True, "file: URLs are refused"),
        ("data:image/png;base64,iVBORw0KGgo=", True, "data: URLs are refused"),
        ("ftp://cdn.runcomfy.net/x.png", True, "ftp: URLs are refused"),
        ("gopher://cdn.runcomfy.net/", False, "gopher: URLs are refused"),
        ("/relative/x.png", False, "relative"),
        ("https://user:pw@cdn.runcomfy.net/x.png", False, "user name or password"),
        ("https://user@cdn.runcomfy.net/x.png", False, "user name or password"),
        ("https://:@cdn.runcomfy.net/x.png", False, "user name or password"),
        ("http://user@127.0.0.1/x.png", True, "user name or password"),
        ("https://10.1.2.3/x.png", False, "private"),
        ("https://172.16.0.1/x.png", True, "private"),
        ("https://192.168.1.1/x.png", True, "private"),
        ("https://169.254.169.254/latest/meta-data", True, "link-local"),
        ("https://[fe80::1]/x.png", True, "link-local"),
        ("https://224.0.0.1/x.png", True, "multicast"),
        ("https://[ff02::1]/x.png", True, "multicast"),
        ("https://240.0.0.1/x.png", True, "reserved"),
        ("https://0.0.0.0/x.png", True, "unspecified"),
        ("https://[::]/x.png", True, "unspecified"),
        ("https://[fc00::1]/x.png", True, "private"),
        ("https://100.64.0.1/x.png", True, "not globally routable"),
        ("https://[::ffff:10.0.0.1]/x.png", True, "private"),
        ("https://[::ffff:127.0.0.1]/x.png", False, "loopback"),
        ("https://127.1/x.png", True, "not a canonical IP address"),
        ("https://2130706433/x.png", True, "not a canonical IP address"),
    ],
)
def test_url_policy(url: str, allow_loopback: bool, refused_for: str | None) -> None:
    reason = url_refusal(URL(url), allow_loopback=allow_loopback)
    if refused_for is None:
        assert reason is None
    else:
        assert reason is not None
        assert refused_for in reason


def test_a_data_url_is_refused_with_the_reason() -> None:
    reason = url_refusal(URL("data:text/plain,hi"), allow_loopback=True)
    assert reason is not None
    assert "content is in the URL" in reason


@pytest.mark.parametrize(
    ("address", "allow_loopback", "kind"),
    [
        ("8.8.8.8", False, None),
        ("2606:4700:4700::1111", False, None),
        ("127.0.0.1", False, "loopback"),
        ("127.0.0.1", True, None),
        ("127.9.9.9", True, None),
        ("::1", True, None),
        ("10.0.0.1", True, "private"),
        ("169.254.1.1", True, "link-local"),
        ("239.1.1.1", True, "multicast"),
        ("255.255.255.255", True, "reserved"),
        ("0.0.0.0", True, "unspecified"),
        ("::", True, "unspecified"),
        ("::ffff:192.168.0.1", True, "private"),
    ],
)
def test_address_policy(address: str, allow_loopback: bool, kind: str | None) -> None:
    reason = address_refusal(ipaddress.ip_address(address), allow_loopback=allow_loopback)
    assert (reason is None) if kind is None else (reason is not None and kind in reason)


# ------------------------------------------------------------------ the resolver filter


class FakeResolver(AbstractResolver):
    """Answers every name with fixed addresses: no DNS, no sockets."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.asked: list[str] = []
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        self.closed = True


async def test_a_name_resolving_only_to_private_addresses_is_refused() -> None:
    inner = FakeResolver("10.1.2.3", "169.254.169.254", "127.0.0.1", "fd00::1")
    guard = GuardedResolver(inner, allow_loopback=False)
    with pytest.raises(BlockedAddressError, match="refused addresses") as caught:
        await guard.resolve("files.example", 443)
    assert "10.1.2.3 is a private address" in str(caught.value)
    assert "169.254.169.254 is a link-local address" in str(caught.value)
    assert isinstance(caught.value, OSError)  # aiohttp reports it as a connect failure


async def test_refused_addresses_are_dropped_and_public_ones_kept() -> None:
    guard = GuardedResolver(FakeResolver("10.1.2.3", "93.184.216.34"), allow_loopback=False)
    kept = await guard.resolve("files.example", 443)
    assert [info["host"] for info in kept] == ["93.184.216.34"]


async def test_loopback_answers_pass_only_when_allowed() -> None:
    allowed = GuardedResolver(FakeResolver("127.0.0.1", "10.0.0.1"), allow_loopback=True)
    assert [i["host"] for i in await allowed.resolve("sim.test", 80)] == ["127.0.0.1"]
    with pytest.raises(BlockedAddressError):
        await GuardedResolver(FakeResolver("127.0.0.1"), allow_loopback=False).resolve("x", 80)


async def test_localhost_must_resolve_to_loopback() -> None:
    guard = GuardedResolver(FakeResolver("93.184.216.34"), allow_loopback=True)
    with pytest.raises(BlockedAddressError, match="not loopback"):
        await guard.resolve("localhost", 80)


# ------------------------------------------------------------------ refused before connecting


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every connection aiohttp tries to open; none is: unit tests use no sockets, and no
    name goes to real DNS."""
    attempts: list[Any] = []

    async def refuse(self: aiohttp.TCPConnector, *args: Any, **kwargs: Any) -> Any:
        attempts.append(kwargs.get("addr_infos"))
        raise OSError("test: no connections allowed")

    monkeypatch.setattr(aiohttp.TCPConnector, "_wrap_create_connection", refuse)
    # No addresses at all for any name a downloader of aiohttp's resolver would look up.
    monkeypatch.setattr(aiohttp.resolver.DefaultResolver, "resolve", FakeResolver().resolve)
    return attempts


@pytest.mark.parametrize(
    "url",
    [
        "https://10.1.2.3/x.png",
        "https://169.254.169.254/latest/meta-data/iam",
        "https://[fd12::1]/x.png",
        "https://0.0.0.0/x.png",
        "https://127.0.0.1/x.png",
        "https://localhost/x.png",
        "http://cdn.runcomfy.net/x.png",
        "file:///etc/passwd",
    ],
)
async def test_refused_urls_never_open_a_connection(
    url: str, tmp_path: Path, connections: list[Any]
) -> None:
    async with Downloader() as downloader:
        with pytest.raises(DownloadError) as caught:
            await downloader.fetch(url, tmp_path, "out")
    assert connections == []
    assert os.listdir(tmp_path) == []
    assert caught.value.url == url


async def test_a_host_resolving_to_a_private_address_is_refused_at_connect_time(
    tmp_path: Path, connections: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What DNS rebinding would do: the name passes the URL check, the address does not.
    fake = FakeResolver("10.1.2.3")
    async with Downloader(resolver=fake) as downloader:
        with pytest.raises(DownloadError, match=r"10\.1\.2\.3 is a private address") as caught:
            await downloader.fetch("https://files.example/x.png?X-Signature=s3cr3t", tmp_path, "o")
    assert fake.asked == ["files.example"]
    assert fake.closed  # the downloader closes the resolver it was given
    assert connections == []
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)
    assert "s3cr3t" not in str(caught.value)


# ------------------------------------------------------------------ the session and errors


async def test_the_session_carries_no_credentials_or_cookies() -> None:
    async with Downloader() as downloader:
        session = downloader.check_open()
        assert set(session.headers) == {"User-Agent"}
        assert isinstance(session.cookie_jar, aiohttp.DummyCookieJar)
        assert session.trust_env is False
        assert session.auth is None


async def test_fetch_outside_async_with_says_how_to_open() -> None:
    with pytest.raises(RuntimeError, match="async with"):
        await Downloader().fetch("https://cdn.runcomfy.net/x.png", ".", "x")


@pytest.mark.parametrize(
    "options",
    [{"max_bytes": 0}, {"timeout": 0}, {"connections": 0}, {"max_redirects": -1}],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(rc.ConfigurationError):
        Downloader(**options)


def test_download_error_message_hides_query_and_user_info() -> None:
    url = "https://u:pw@cdn.runcomfy.net/o/x.png?X-Amz-Signature=abc#frag"
    error = DownloadError(redact(url), "HTTP 403")
    assert str(error) == "download of https://cdn.runcomfy.net/o/x.png failed: HTTP 403"
    assert (error.url, error.reason) == ("https://cdn.runcomfy.net/o/x.png", "HTTP 403")
    assert isinstance(error, rc.RunComfyError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.url, copy.reason, str(copy)) == (error.url, error.reason, str(error))


def test_redact_copes_with_unparsable_urls() -> None:
    assert redact("not a url?token=1") == "not a url"


async def test_a_result_without_output_is_a_request_failed_error(tmp_path: Path) -> None:
    failed = rc.Result(request_id="r1", state=rc.State.FAILED, error={"message": "boom"})
    cancelled = rc.Result(request_id="r2", state=rc.State.CANCELLED)
    async with Downloader() as downloader:
        with pytest.raises(rc.RequestFailedError) as caught:
            await download_result(downloader, failed, tmp_path)
        assert caught.value.request_id == "r1"
        with pytest.raises(rc.RequestCancelledError):
            await download_result(downloader, cancelled, tmp_path)
        empty = rc.Result(request_id="r3", state=rc.State.SUCCEEDED, output=rc.Output({}))
        assert await download_result(downloader, empty, tmp_path) == []
        with pytest.raises(ValueError, match="template"):  # checked even with nothing to fetch
            await download_result(downloader, empty, tmp_path, template="{key}")


async def test_a_template_that_names_two_outputs_alike_is_refused(tmp_path: Path) -> None:
    output = rc.Output({"images": ["https://a.example/1.png", "https://a.example/2.png"]})
    result = rc.Result(request_id="r", state=rc.State.SUCCEEDED, output=output)
    async with Downloader() as downloader:
        with pytest.raises(ValueError, match="same name"):
            await download_result(downloader, result, tmp_path, template="{key}.{ext}")
