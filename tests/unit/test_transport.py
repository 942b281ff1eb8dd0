"""Transport behaviour a user relies on: what is retried, what never is, and how it waits."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

import runcomfy_async as rc
from runcomfy_async import models
from tests.conftest import API, CANARY, VirtualTime

WAN = "wan-ai/wan-2-2/text-to-image"
SUBMIT_URL = f"{API}/v1/models/{WAN}"
STATUS_URL = f"{API}/v1/requests/r1/status"
OK_SUBMIT = {"request_id": "r1", "status_url": STATUS_URL}


def make_client(vt: VirtualTime, **kwargs: Any) -> rc.Client:
    kwargs.setdefault("api_key", "test-key")
    return rc.Client(base_url=API, sleep=vt.sleep, clock=vt.clock, rng=random.Random(7), **kwargs)


def calls(m: aioresponses, method: str, url: str) -> int:
    return sum(len(v) for (meth, u), v in m.requests.items() if meth == method and str(u) == url)


def refused() -> aiohttp.ClientConnectorError:
    return aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey(
            "model-api.runcomfy.net", 443, True, None, None, None, None
        ),
        ConnectionRefusedError(111, "Connection refused"),
    )


# ------------------------------------------------------------------ submit: never paid twice


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"exception": aiohttp.ServerDisconnectedError()}, id="reset-after-send"),
        pytest.param({"exception": aiohttp.SocketTimeoutError()}, id="read-timeout"),
        pytest.param({"exception": TimeoutError()}, id="total-timeout"),
        pytest.param({"exception": aiohttp.ClientPayloadError("cut")}, id="truncated-body"),
        pytest.param({"status": 500, "payload": {"error": "boom"}}, id="http-500"),
        pytest.param({"status": 503, "body": "<html>"}, id="http-503"),
        pytest.param({"status": 200, "body": '{"request_id": "r1"'}, id="unreadable-2xx"),
        pytest.param({"status": 200, "payload": {"request_id": ""}}, id="empty-request-id"),
        pytest.param({"status": 200, "payload": {"status": "in_queue"}}, id="no-request-id"),
    ],
)
async def test_submit_is_not_resent_when_its_outcome_is_unknown(
    vt: VirtualTime, failure: dict[str, Any]
) -> None:
    inputs = models.Wan22TextToImage(prompt="a red fox")
    with aioresponses() as m:
        m.post(SUBMIT_URL, **failure)
        m.post(SUBMIT_URL, payload=OK_SUBMIT)  # would be taken by a (forbidden) resend
        async with make_client(vt) as client:
            with pytest.raises(rc.SubmissionUnknownError) as info:
                await client.submit(inputs)
        assert calls(m, "POST", SUBMIT_URL) == 1
    assert info.value.model_id == WAN
    assert info.value.inputs is inputs
    assert "not resent" in str(info.value)


async def test_submit_with_dict_inputs_carries_the_dict_when_unknown(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.post(SUBMIT_URL, exception=aiohttp.ServerDisconnectedError())
        async with make_client(vt) as client:
            with pytest.raises(rc.SubmissionUnknownError) as info:
                await client.submit(WAN, {"prompt": "x"})
    assert info.value.inputs == {"prompt": "x"}


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"exception": refused()}, id="connection-refused"),
        pytest.param({"exception": aiohttp.ConnectionTimeoutError()}, id="connect-timeout"),
        pytest.param({"status": 429, "payload": {"error_code": 429}}, id="rate-limited"),
    ],
)
async def test_submit_is_retried_when_nothing_was_sent(
    vt: VirtualTime, failure: dict[str, Any]
) -> None:
    with aioresponses() as m:
        m.post(SUBMIT_URL, **failure)
        m.post(SUBMIT_URL, payload=OK_SUBMIT)
        async with make_client(vt) as client:
            request = await client.submit(WAN, {"prompt": "x"})
        assert calls(m, "POST", SUBMIT_URL) == 2
    assert request.request_id == "r1"
    assert request.model_id == WAN


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, rc.BadRequestError),
        (401, rc.AuthenticationError),
        (402, rc.InsufficientBalanceError),
        (422, rc.BadRequestError),
    ],
)
async def test_submit_rejections_are_raised_at_once(
    vt: VirtualTime, status: int, error: type[Exception]
) -> None:
    with aioresponses() as m:
        m.post(SUBMIT_URL, status=status, payload={"error_message": "no"})
        async with make_client(vt) as client:
            with pytest.raises(error):
                await client.submit(WAN, {"prompt": "x"})
        assert calls(m, "POST", SUBMIT_URL) == 1


# ------------------------------------------------------------------ idempotent calls


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"exception": aiohttp.ServerDisconnectedError()}, id="reset"),
        pytest.param({"exception": aiohttp.SocketTimeoutError()}, id="read-timeout"),
        pytest.param({"exception": refused()}, id="refused"),
        pytest.param({"status": 408}, id="408"),
        pytest.param({"status": 500}, id="500"),
        pytest.param({"status": 502}, id="502"),
        pytest.param({"status": 503}, id="503"),
        pytest.param({"status": 504}, id="504"),
        pytest.param({"status": 200, "body": "{trunc"}, id="unreadable"),
    ],
)
async def test_status_is_retried_after_transient_failures(
    vt: VirtualTime, failure: dict[str, Any]
) -> None:
    with aioresponses() as m:
        m.get(STATUS_URL, **failure)
        m.get(STATUS_URL, **failure)
        m.get(STATUS_URL, payload={"request_id": "r1", "status": "in_progress"})
        async with make_client(vt) as client:
            status = await client.status("r1")
        assert calls(m, "GET", STATUS_URL) == 3
    assert status.state is rc.State.IN_PROGRESS
    assert len(vt.sleeps) == 2  # backed off between tries
    assert all(0 <= s <= 20 for s in vt.sleeps)


async def test_retries_stop_after_max_attempts_with_the_last_error(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.get(STATUS_URL, status=503, payload={"message": "down"}, repeat=True)
        async with make_client(vt, retry=rc.RetryPolicy(max_attempts=3)) as client:
            with pytest.raises(rc.ServerError) as info:
                await client.status("r1")
        assert calls(m, "GET", STATUS_URL) == 3
    assert info.value.status_code == 503
    assert info.value.message == "down"


async def test_retry_budget_bounds_calls_under_total_failure(vt: VirtualTime) -> None:
    policy = rc.RetryPolicy(max_attempts=10, budget=20, retry_cost=5, success_refund=1)
    with aioresponses() as m:
        m.get(re.compile(r".*/status$"), status=503, repeat=True)
        async with make_client(vt, retry=policy) as client:
            for n in range(10):
                with pytest.raises(rc.ServerError):
                    await client.status(f"r{n}")
        total = sum(len(v) for v in m.requests.values())
    # 10 first tries + at most 20/5 = 4 retries in all, not 10 * 10.
    assert total == 10 + 4


async def test_rate_limit_slows_the_whole_client(vt: VirtualTime) -> None:
    sent: list[tuple[str, float]] = []

    def record(url: Any, **_: Any) -> None:
        sent.append((str(url), vt.now))

    with aioresponses() as m:
        a, b = f"{API}/v1/requests/a/status", f"{API}/v1/requests/b/status"
        m.get(a, status=429, headers={"Retry-After": "3"}, callback=record)
        m.get(a, payload={"status": "in_queue"}, callback=record)
        m.get(b, payload={"status": "in_queue"}, callback=record)
        async with make_client(vt) as client:
            first = asyncio.ensure_future(client.status("a"))
            while not sent:
                await asyncio.sleep(0)
            await client.status("b")  # started after the 429: must wait it out too
            await first
    times = {url: t for url, t in sent[1:]}
    assert times[a] >= 3.0
    assert times[b] >= 3.0


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_retry_after_is_honoured_in_both_forms(vt: VirtualTime, form: str) -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    value = "30" if form == "seconds" else email.utils.format_datetime(when, usegmt=True)
    with aioresponses() as m:
        m.get(STATUS_URL, status=429, headers={"Retry-After": value})
        m.get(STATUS_URL, payload={"status": "in_queue"})
        async with make_client(vt) as client:
            await client.status("r1")
    assert 28.0 <= vt.now <= 30.0 + 20.0


async def test_garbage_retry_after_falls_back_to_backoff(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.get(STATUS_URL, status=429, headers={"Retry-After": "soon-ish"})
        m.get(STATUS_URL, payload={"status": "in_queue"})
        async with make_client(vt) as client:
            await client.status("r1")
    # A backoff (at most 0.5 s) and the pace of the client slowed by its 429 (about 1 call
    # a second: the rate it went at), nowhere near a "soon-ish" read as a long wait.
    assert 0 <= vt.now <= 0.5 + 1.5


async def test_api_calls_do_not_follow_redirects(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.get(STATUS_URL, status=302, headers={"Location": "https://evil.example/steal"})
        m.get("https://evil.example/steal", payload={"status": "in_queue"})
        async with make_client(vt) as client:
            with pytest.raises(rc.UnexpectedResponseError, match="redirect"):
                await client.status("r1")
        assert calls(m, "GET", "https://evil.example/steal") == 0


async def test_every_call_carries_the_bearer_key(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.get(STATUS_URL, payload={"status": "in_queue"})
        async with make_client(vt, api_key="k-123") as client:
            await client.status("r1")
        (call,) = m.requests[("GET", aiohttp.client.URL(STATUS_URL))]
    assert call.kwargs["headers"]["Authorization"] == "Bearer k-123"
    assert call.kwargs["allow_redirects"] is False


async def test_request_ids_are_quoted_into_the_path(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.get(f"{API}/v1/requests/a%2Fb%3Fc/status", payload={"status": "in_queue"})
        async with make_client(vt) as client:
            status = await client.status("a/b?c")
    assert status.request_id == "a/b?c"


# ------------------------------------------------------------------ secrets


async def test_canary_key_appears_in_no_log_repr_or_error(
    vt: VirtualTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with aioresponses() as m:
        m.post(SUBMIT_URL, exception=aiohttp.ServerDisconnectedError())
        m.get(STATUS_URL, status=401, payload={"error_code": 400004})
        m.get(f"{API}/v1/requests/r2/status", exception=refused(), repeat=True)
        m.get(f"{API}/v1/requests/r3/status", status=302, headers={"Location": "/x"})
        client = make_client(vt, api_key=CANARY, retry=rc.RetryPolicy(max_attempts=2))
        seen += [repr(client), str(client)]
        async with client:
            for call in (
                client.submit(WAN, {"prompt": "x"}),
                client.status("r1"),
                client.status("r2"),
                client.status("r3"),
            ):
                with pytest.raises(rc.RunComfyError) as info:
                    await call
                seen.append("".join(traceback.format_exception(info.value)))
                seen += [repr(info.value), str(vars(info.value))]
    seen.append(caplog.text)
    assert caplog.records  # something was logged at DEBUG
    assert not [text for text in seen if CANARY in text]


# ------------------------------------------------------------------ configuration


def test_plain_http_is_refused_except_to_loopback() -> None:
    with pytest.raises(rc.ConfigurationError, match="https"):
        rc.Client(api_key="k", base_url="http://model-api.runcomfy.net")
    for url in ("http://127.0.0.1:8000", "http://localhost:1", "http://[::1]:9"):
        assert rc.Client(api_key="k", base_url=url).base_url == url


@pytest.mark.parametrize(
    "url",
    ["https://user:pw@model-api.runcomfy.net", "ftp://x", "https://x/?a=1", "not a url", ""],
)
def test_unsafe_base_urls_are_refused(url: str) -> None:
    with pytest.raises(rc.ConfigurationError):
        rc.Client(api_key="k", base_url=url or "https://")


def test_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(rc.ConfigurationError, match="RUNCOMFY_API_KEY"):
        rc.Client()
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", CANARY)
    client = rc.Client()
    assert CANARY not in repr(client)
    monkeypatch.setenv("RUNCOMFY_BASE_URL", "http://127.0.0.1:9")
    assert rc.Client().base_url == "http://127.0.0.1:9"


def test_a_key_with_spaces_is_refused_without_echoing_it() -> None:
    with pytest.raises(rc.ConfigurationError) as info:
        rc.Client(api_key="abc def-secret")
    assert "secret" not in str(info.value)


async def test_a_borrowed_session_is_used_and_left_open(vt: VirtualTime) -> None:
    async with aiohttp.ClientSession() as session:
        with aioresponses() as m:
            m.get(STATUS_URL, payload={"status": "in_queue"})
            async with make_client(vt, session=session) as client:
                await client.status("r1")
        assert not session.closed


async def test_calls_outside_the_context_manager_say_how_to_open(vt: VirtualTime) -> None:
    client = make_client(vt)
    with pytest.raises(RuntimeError, match="async with"):
        await client.status("r1")


async def test_a_redirect_answer_to_a_submit_is_an_unknown_outcome(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.post(SUBMIT_URL, status=307, headers={"Location": f"{API}/elsewhere"})
        async with make_client(vt) as client:
            with pytest.raises(rc.SubmissionUnknownError):
                await client.submit(WAN, {"prompt": "x"})
        assert calls(m, "POST", SUBMIT_URL) == 1


async def test_a_server_error_inside_an_http_200_is_retried_on_polls(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.get(STATUS_URL, payload={"error_code": 500001, "error_message": "busy"})
        m.get(STATUS_URL, payload={"request_id": "r1", "status": "in_progress"})
        async with make_client(vt) as client:
            status = await client.status("r1")
    assert status.state is rc.State.IN_PROGRESS


async def test_a_server_error_inside_an_http_200_on_submit_is_unknown(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.post(SUBMIT_URL, payload={"error_code": 500001, "error_message": "busy"})
        m.post(SUBMIT_URL, payload=OK_SUBMIT)
        async with make_client(vt) as client:
            with pytest.raises(rc.SubmissionUnknownError):
                await client.submit(WAN, {"prompt": "x"})
        assert calls(m, "POST", SUBMIT_URL) == 1


@pytest.mark.parametrize(
    "url", ["ftp://user:s3cret-pw@example.com", "https://user:s3cret-pw@example.com:99999"]
)
def test_a_refused_base_url_never_echoes_its_password(url: str) -> None:
    with pytest.raises(rc.ConfigurationError) as info:
        rc.Client(api_key="k", base_url=url)
    assert "s3cret-pw" not in "".join(traceback.format_exception(info.value))


async def test_no_submit_is_counted_on_the_wire_once_each_has_ended(vt: VirtualTime) -> None:
    # While a submit is on the wire the pollers let it go first (a loop turn each poll);
    # a count left behind by a failed or cancelled submit would slow every later poll.
    entered = asyncio.Event()

    async def hang(url: Any, **kwargs: Any) -> None:
        entered.set()
        await asyncio.Event().wait()

    with aioresponses() as m:
        m.post(SUBMIT_URL, payload=OK_SUBMIT)
        m.post(SUBMIT_URL, exception=aiohttp.ServerDisconnectedError())
        m.post(SUBMIT_URL, callback=hang)
        async with make_client(vt) as client:
            transport = client._runtime.transport
            await client.submit(WAN, {"prompt": "ok"})
            assert transport.submits == 0
            with pytest.raises(rc.SubmissionUnknownError):
                await client.submit(WAN, {"prompt": "lost"})
            assert transport.submits == 0
            task = asyncio.ensure_future(client.submit(WAN, {"prompt": "hangs"}))
            await entered.wait()
            assert transport.submits == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert transport.submits == 0
