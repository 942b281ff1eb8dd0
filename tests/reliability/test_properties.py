"""Properties over arbitrary input: the whole client path, Retry-After and the poll intervals.

tests/unit/test_wire.py fuzzes the decoders and tests/unit/test_retry_math.py the retry
arithmetic; here the answers go through real sockets, aiohttp's parser and the transport,
and only RunComfyError subclasses may come out of the client's methods.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import runcomfy_async as rc
from runcomfy_async._policy import RunWindow
from runcomfy_async._retry import parse_retry_after
from tests.conftest import VirtualTime
from tests.reliability._support import WAN

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
RETRY = rc.RetryPolicy(max_attempts=3, max_retry_after=60.0, budget=1e9)  # never runs dry


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"{}"


class Stage:
    """A loop of its own with two servers on 127.0.0.1 that answer what the example says:
    `http` (aiohttp.web: any status, headers and body) and `raw` (any bytes at all, as the
    whole HTTP answer), and a client for each, in virtual time."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()
        self.answers: list[Answer] = [Answer()]
        self.raw_answer = b""
        self.paths: list[str] = []
        self.raw_calls = 0
        self.vt = VirtualTime()
        self.runner.run(self._start())

    async def _start(self) -> None:
        # A bare server, no router: every path reaches the handler, whatever it holds.
        self._web = web.ServerRunner(web.Server(self._http), shutdown_timeout=0.1)
        await self._web.setup()
        site = web.TCPSite(self._web, "127.0.0.1", 0)
        await site.start()
        http_url = f"http://127.0.0.1:{self._web.addresses[0][1]}"
        self._raw = await asyncio.start_server(self._raw_answer, "127.0.0.1", 0)
        raw_url = f"http://127.0.0.1:{self._raw.sockets[0].getsockname()[1]}"
        self.http = self._client(http_url)
        self.raw = self._client(raw_url)
        await self.http.__aenter__()
        await self.raw.__aenter__()

    def _client(self, url: str) -> rc.Client:
        return rc.Client(
            "fuzz-key",
            base_url=url,
            retry=RETRY,
            timeout=rc.Timeouts(total=3.0, connect=3.0),
            sleep=self.vt.sleep,
            clock=self.vt.clock,
            rng=random.Random(0),
        )

    async def _http(self, request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        self.paths.append(request.raw_path)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return web.Response(status=answer.status, headers=answer.headers, body=answer.body)

    async def _raw_answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.raw_calls += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                 if line.lower().startswith(b"content-length:")),
                0,
            )  # fmt: skip
            await reader.readexactly(length)
            writer.write(self.raw_answer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def run(self, call: Callable[[rc.Client], Awaitable[object]], client: rc.Client) -> object:
        """Run one client call with a 10 s real-time guard; what it returned or raised."""

        async def guarded() -> object:
            async with asyncio.timeout(10):
                try:
                    return await call(client)
                except Exception as exc:
                    return exc

        return self.runner.run(guarded())

    def close(self) -> None:
        async def stop() -> None:
            await self.http.aclose()
            await self.raw.aclose()
            self._raw.close()
            await self._raw.wait_closed()
            await self._web.cleanup()

        self.runner.run(stop())
        self.runner.close()


@contextmanager
def stage() -> Iterator[Stage]:
    s = Stage()
    try:
        yield s
    finally:
        s.close()


CALLS: dict[str, Callable[[rc.Client], Awaitable[object]]] = {
    "submit": lambda c: c.submit(WAN, {"prompt": "fuzz"}),
    "status": lambda c: c.status("r1"),
    "result": lambda c: c.result("r1"),
    "cancel": lambda c: c.cancel("r1"),
    "model_info": lambda c: c.model_info(WAN),
}
EXPECTED = {
    "submit": rc.Request,
    "status": rc.Status,
    "result": rc.Result,
    "cancel": rc.CancelOutcome,
    "model_info": rc.ModelInfo,
}


def assert_typed(name: str, outcome: object) -> None:
    """The call gave its documented type, or raised a RunComfyError (never anything else)."""
    if isinstance(outcome, BaseException):
        assert isinstance(outcome, rc.RunComfyError), repr(outcome)
        if name == "submit":  # a submit either surely made no job, or says it may have
            assert not isinstance(outcome, rc.TransportError | rc.UnexpectedResponseError)
        "".join(str(outcome))  # readable
    else:
        assert isinstance(outcome, EXPECTED[name]), repr(outcome)


# ------------------------------------------------------------------ answers of any shape

_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
_FIELDS = ["request_id", "status", "queue_position", "output", "error", "cost", "outcome",
           "created_at", "finished_at", "error_code", "code", "error_message", "message",
           "detail", "model_id", "input_schema", "base_price_usd", "price_unit"]  # fmt: skip
_shaped = st.fixed_dictionaries({}, optional=dict.fromkeys(_FIELDS, _json))
_bodies = (
    st.binary(max_size=200)
    | _json.map(msgspec.json.encode)
    | _shaped.map(msgspec.json.encode)
    | _shaped.map(msgspec.json.encode).map(lambda b: b[: len(b) // 2])
)
_statuses = st.sampled_from(
    [200, 201, 202, 203, 206, 299, 300, 301, 302, 307, 400, 401, 402, 403, 404, 405, 408, 409,
     410, 413, 418, 422, 429, 451, 499, 500, 501, 502, 503, 504, 520, 599]
) | st.integers(200, 599)  # fmt: skip
_headers = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.sampled_from(["application/json", "text/html", "x/y"]) | _header_text,
        "Retry-After": _header_text,
        "Content-Encoding": st.sampled_from(["gzip", "deflate", "br", "zstd", "identity", "x"]),
        "Location": st.just("https://evil.example/steal") | _header_text,
    },
)
_answers = st.builds(Answer, status=_statuses, headers=_headers, body=_bodies)


def test_any_http_answer_gives_the_documented_type_or_a_runcomfy_error() -> None:
    @FUZZ
    @given(name=st.sampled_from(sorted(CALLS)), answers=st.lists(_answers, min_size=1, max_size=3))
    @example(name="result", answers=[Answer(400, {}, b'{"error_code": 400005}')])
    @example(name="submit", answers=[Answer(200, {"Content-Encoding": "gzip"}, b"not gzip")])
    @example(name="status", answers=[Answer(200, {}, b"[" * 100_000)])
    @example(name="cancel", answers=[Answer(429, {"Retry-After": "1e400"}), Answer(204)])
    def check(name: str, answers: list[Answer]) -> None:
        s.answers = answers
        assert_typed(name, s.run(CALLS[name], s.http))

    with stage() as s:
        check()


_raw_answers = (
    st.binary(max_size=300)
    | st.builds(
        lambda status, headers, body: b"HTTP/1.1 %b\r\n%b\r\n%b" % (status, headers, body),
        st.sampled_from([b"200 OK", b"503 X", b"429 Y", b"999 Z", b"20 OK", b"200", b""]),
        st.lists(
            st.sampled_from([
                b"Content-Length: 5", b"Content-Length: -1", b"Content-Length: 99999999",
                b"Content-Length: abc", b"Transfer-Encoding: chunked", b"Content-Type: a/b",
                b"Content-Encoding: gzip", b"Retry-After: 3", b"X: \xff\xfe", b"Bad header",
                b"Connection: close",
            ]).map(lambda line: line + b"\r\n"),
            max_size=4,
        ).map(b"".join),
        st.binary(max_size=40) | st.sampled_from([b'{"request_id": "r1"}', b"zz\r\n{}\r\n0\r\n"]),
    )
)  # fmt: skip


@FUZZ
@given(name=st.sampled_from(sorted(CALLS)), raw=_raw_answers)
@example(name="status", raw=b"")
@example(name="submit", raw=b'HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{"request_id"')
@example(name="result", raw=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
def test_any_bytes_on_the_wire_give_the_documented_type_or_a_runcomfy_error(
    name: str, raw: bytes
) -> None:
    with stage() as s:
        s.raw_answer = raw
        assert_typed(name, s.run(CALLS[name], s.raw))


def test_any_request_id_is_quoted_and_never_breaks_a_call() -> None:
    @FUZZ
    @given(request_id=st.text(min_size=1, max_size=256))
    @example(request_id="../../v1/models/x?y=1#z")
    def check(request_id: str) -> None:
        for name, call in (
            ("status", lambda c: c.status(request_id)),
            ("result", lambda c: c.result(request_id)),
            ("cancel", lambda c: c.cancel(request_id)),
        ):
            outcome = s.run(call, s.http)
            assert_typed(name, outcome)
            assert not isinstance(outcome, BaseException)
        assert s.paths[-1].startswith("/v1/requests/")
        assert s.paths[-1].count("/") == 4  # the id stays one path segment

    with stage() as s:
        s.answers = [Answer(200, {}, b'{"status": "in_queue"}')]
        check()


# ------------------------------------------------------------------ Retry-After end to end

_dates = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9999, 12, 31)).map(
    lambda d: email.utils.format_datetime(d.replace(tzinfo=UTC), usegmt=True)
)
_retry_after = (
    _header_text
    | _dates
    | st.floats(allow_nan=True, allow_infinity=True).map(repr)
    | st.integers(-(10**30), 10**30).map(str)
    | st.sampled_from(
        ["1e400", "-0", " 7 ", "1_000", "inf", "NaN", "Fri, 31 Dec 9999 23:59:59 GMT"]
    )
)


def test_any_retry_after_waits_a_finite_clamped_time() -> None:
    @FUZZ
    @given(value=_retry_after)
    def check(value: str) -> None:
        s.answers = [Answer(429, {"Retry-After": value}), Answer(200, {}, b'{"status": "x"}')]
        before, start = len(s.vt.sleeps), s.vt.now
        assert isinstance(s.run(CALLS["status"], s.http), rc.Status)
        waited = s.vt.sleeps[before:]
        seconds = parse_retry_after(value)
        assert seconds is None or (math.isfinite(seconds) and seconds >= 0)
        assert waited
        assert all(math.isfinite(w) and w >= 0 for w in waited)
        # at most max_retry_after and its jitter, plus the 429 gate's own jitter (≤ 1 s)
        assert s.vt.now - start <= RETRY.max_retry_after + RETRY.max_backoff + 1.0
        if seconds is not None:  # and at least what was asked (an HTTP date may round)
            assert s.vt.now - start >= min(seconds, RETRY.max_retry_after) - 1.0

    with stage() as s:
        check()


# ------------------------------------------------------------------ the poll interval policy

_durations = st.floats(min_value=1e-6, max_value=1e6)


@st.composite
def policies(draw: st.DrawFn) -> rc.PollPolicy:
    """Any PollPolicy the constructor accepts with finite durations (infinite ones are refused,
    see below); any growth, an overflowing or infinite one included."""
    low, first, high = sorted(draw(_durations) for _ in range(3))
    return rc.PollPolicy(
        min_interval=low,
        first_interval=first,
        max_interval=high,
        max_dense_interval=low + draw(_durations),
        growth=draw(st.floats(min_value=1.0) | st.sampled_from([1e5, 1e300])),
        latency_fraction=draw(st.floats(1e-6, 1.0)),
        backoff_per_second=draw(st.floats(0, 1e3)),
        seconds_per_queue_position=draw(_durations),
        max_queue_interval=draw(_durations),
        max_skip_interval=draw(_durations),
        jitter=draw(st.floats(0, 0.99)),
        min_samples=draw(st.integers(1, 1000)),
    )


_windows = (
    st.builds(lambda a, b, c: RunWindow(*sorted((a, b, c))), _durations, _durations, _durations)
    | st.none()
)


@settings(max_examples=500, deadline=None)
@given(
    policy=policies(),
    polls=st.integers(-5, 10**6),
    queue=st.none() | st.integers(-(10**6), 10**18),
    running_for=st.floats(-1e6, 1e7),
    window=_windows,
    seed=st.integers(0, 2**32),
)
def test_poll_delays_are_finite_non_negative_and_within_the_caps(
    policy: rc.PollPolicy,
    polls: int,
    queue: int | None,
    running_for: float,
    window: RunWindow | None,
    seed: int,
) -> None:
    rng = random.Random(seed)
    cap = max(
        policy.first_interval,
        policy.max_dense_interval,
        policy.max_interval,
        policy.max_queue_interval,
        policy.max_skip_interval,
    ) * (1 + policy.jitter)
    for delay in (
        policy.next_interval(polls, queue, rng),
        policy.first_delay(window, rng),
        policy.running_delay(running_for, polls, window, rng),
    ):
        assert math.isfinite(delay)
        assert 0 <= delay <= cap * (1 + 1e-12)


@pytest.mark.parametrize(
    "options",
    [
        {"growth": 1e5},  # found by this suite: an OverflowError, fixed
        {"first_interval": math.inf, "max_interval": math.inf},  # found here, now refused
    ],
    ids=["overflowing-growth", "infinite-interval"],
)
def test_a_poll_policy_that_constructs_never_gives_a_broken_delay(options: dict[str, Any]) -> None:
    try:
        policy = rc.PollPolicy(**options)
    except ValueError:
        return  # refused up front: fine
    delays = [policy.next_interval(polls, None, random.Random(1)) for polls in range(100)]
    assert all(math.isfinite(delay) for delay in delays)


def test_a_redirect_answer_to_a_submit_is_an_unknown_outcome(tmp_path: Path) -> None:
    # Found by this suite: a redirect used to be journaled "rejected", i.e. safe to resend.
    journal = tmp_path / "j.sqlite"

    async def batch(client: rc.Client) -> list[rc.Item]:
        return [item async for item in client.map([(WAN, {"prompt": "x"})], journal=journal)]

    with stage() as s:
        s.answers = [Answer(307, {"Location": "https://elsewhere.example/v1/models/x"})]
        direct = s.run(CALLS["submit"], s.http)
        items = s.run(batch, s.http)
    assert isinstance(items, list)
    with sqlite3.connect(journal) as db:
        (state,) = db.execute("SELECT state FROM items").fetchone()
    assert isinstance(direct, rc.SubmissionUnknownError), repr(direct)
    assert state == "unknown"
