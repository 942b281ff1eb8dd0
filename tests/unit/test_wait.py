"""wait()/run(): polling in virtual time, confirmation on /result, timeouts and cancellation."""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

import runcomfy_async as rc
from runcomfy_async import models
from tests.conftest import API, VirtualTime

WAN = "wan-ai/wan-2-2/text-to-image"
STATUS = f"{API}/v1/requests/r1/status"
RESULT = re.compile(rf"^{re.escape(API)}/v1/requests/r1/result(\?.*)?$")
CANCEL = f"{API}/v1/requests/r1/cancel"
OUTPUT = {"image": "https://cdn.example/r1.png"}


def make_client(vt: VirtualTime, **kwargs: Any) -> rc.Client:
    return rc.Client(
        api_key="k", base_url=API, sleep=vt.sleep, clock=vt.clock, rng=random.Random(1), **kwargs
    )


def count(m: aioresponses, method: str, pattern: str) -> int:
    return sum(
        len(v) for (meth, url), v in m.requests.items() if meth == method and pattern in str(url)
    )


async def test_wait_polls_until_finished_and_confirms_on_result(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.get(STATUS, payload={"status": "in_queue", "queue_position": 2})
        m.get(STATUS, payload={"status": "in_progress"})
        m.get(RESULT, payload={"status": "succeeded", "output": OUTPUT, "cost": 0.04})
        async with make_client(vt) as client:
            result = await client.wait("r1")
        assert count(m, "GET", "/status") == 2  # running: the next poll reads /result
        assert count(m, "GET", "/result") == 1
    assert result.succeeded
    assert result.output is not None
    assert result.output.urls == [OUTPUT["image"]]
    assert result.cost == 0.04
    assert len(vt.sleeps) == 2
    assert vt.sleeps[0] <= 1.0  # polls soon after submit


async def test_completed_on_status_but_failed_on_result_raises_request_failed(
    vt: VirtualTime,
) -> None:
    with aioresponses() as m:
        m.get(STATUS, payload={"status": "completed"})
        m.get(RESULT, payload={"status": "failed", "error": "NSFW content detected"})
        async with make_client(vt) as client:
            with pytest.raises(rc.RequestFailedError) as info:
                await client.wait("r1")
    assert info.value.request_id == "r1"
    assert info.value.error == "NSFW content detected"
    assert not isinstance(info.value, rc.RequestCancelledError)


async def test_cancelled_request_raises_request_cancelled(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.get(STATUS, payload={"status": "cancelled"})
        m.get(RESULT, payload={"status": "cancelled"})
        async with make_client(vt) as client:
            with pytest.raises(rc.RequestCancelledError):
                await client.wait("r1")


async def test_result_not_ready_after_completed_is_polled_again(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.get(STATUS, payload={"status": "completed"}, repeat=True)
        m.get(RESULT, status=400, payload={"error_code": 400005})
        m.get(RESULT, payload={"status": "succeeded", "output": OUTPUT})
        async with make_client(vt) as client:
            result = await client.wait("r1")
    assert result.output is not None
    assert result.output.image == OUTPUT["image"]


async def test_status_failures_never_mark_the_request_failed(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.get(STATUS, status=503)
        m.get(STATUS, exception=aiohttp.ServerDisconnectedError())
        m.get(STATUS, exception=aiohttp.SocketTimeoutError())
        m.get(STATUS, status=429, headers={"Retry-After": "1"})
        m.get(STATUS, status=200, body="<html>oops</html>")
        m.get(STATUS, payload={"status": "completed"})
        m.get(RESULT, status=502)
        m.get(RESULT, payload={"status": "succeeded", "output": OUTPUT})
        single = rc.RetryPolicy(max_attempts=1)  # every failure reaches wait() itself
        async with make_client(vt, retry=single) as client:
            result = await client.wait("r1")
    assert result.succeeded


async def test_unknown_state_is_not_terminal(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.get(STATUS, payload={"status": "warming_up"})
        m.get(STATUS, payload={"status": "completed"})
        m.get(RESULT, payload={"status": "succeeded", "output": OUTPUT})
        async with make_client(vt) as client:
            assert (await client.wait("r1")).succeeded


async def test_a_fresh_request_id_may_be_not_found_briefly(vt: VirtualTime) -> None:
    submit = f"{API}/v1/models/{WAN}"
    with aioresponses() as m:
        m.post(submit, payload={"request_id": "r1"})
        m.get(STATUS, status=404, payload={"error_code": 404001})
        m.get(STATUS, status=404, payload={"error_code": 404001})
        m.get(STATUS, payload={"status": "completed"})
        m.get(RESULT, payload={"status": "succeeded", "output": OUTPUT})
        async with make_client(vt) as client:
            result = await client.run(models.Wan22TextToImage(prompt="fox"))
    assert result.succeeded


async def test_an_unknown_request_id_is_not_found(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.get(STATUS, status=404, payload={"error_code": 404001, "error_message": "expired"})
        async with make_client(vt) as client:
            with pytest.raises(rc.NotFoundError, match="expired"):
                await client.wait("r1")


async def test_wait_timeout_names_the_request_and_leaves_it_running(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.get(STATUS, payload={"status": "in_progress"}, repeat=True)
        m.get(RESULT, payload={"status": "in_progress"}, repeat=True)  # polled once running
        async with make_client(vt) as client:
            with pytest.raises(rc.WaitTimeoutError) as info:
                await client.wait("r1", timeout=30)
        assert count(m, "POST", "/cancel") == 0
    assert isinstance(info.value, TimeoutError)
    assert info.value.request_id == "r1"
    assert info.value.cancel_outcome is None
    assert 30 <= vt.now <= 31


async def test_wait_timeout_can_cancel_the_request(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.get(STATUS, payload={"status": "in_queue", "queue_position": 9}, repeat=True)
        m.post(CANCEL, status=202, payload={"status": "completed", "outcome": "cancelled"})
        async with make_client(vt) as client:
            with pytest.raises(rc.WaitTimeoutError) as info:
                await client.wait("r1", timeout=10, cancel_on_timeout=True)
        assert count(m, "POST", "/cancel") == 1
    assert info.value.cancel_outcome.cancelled is True
    assert "was cancelled" in str(info.value)


async def test_polls_back_off_and_hold_back_for_a_long_queue(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.get(STATUS, payload={"status": "in_progress"}, repeat=True)
        m.get(RESULT, status=400, payload={"error_code": 400005}, repeat=True)
        async with make_client(vt) as client:
            with pytest.raises(rc.WaitTimeoutError):
                await client.wait("r1", timeout=120)
        assert count(m, "GET", "/status") == 1  # then /result, which says "not ready"
        running_polls = count(m, "GET", "/result") + 1
    with aioresponses() as m:
        m.get(STATUS, payload={"status": "in_queue", "queue_position": 40}, repeat=True)
        async with make_client(vt) as client:
            with pytest.raises(rc.WaitTimeoutError):
                await client.wait("r1", timeout=120)
        queued_polls = count(m, "GET", "/status")
    assert running_polls <= 120 / 2.0 * 1.1 + 8  # no sparser than 2 s until learnt, not 0.1 s
    assert queued_polls < running_polls / 2


async def cancel_while(vt: VirtualTime, state: str, **wait_kwargs: Any) -> int:
    with aioresponses() as m:
        m.get(STATUS, payload={"status": state}, repeat=True)
        m.get(RESULT, payload={"status": state}, repeat=True)  # a running one is read there
        m.post(CANCEL, status=202, payload={"outcome": "cancelled"})
        async with make_client(vt) as client:
            task = asyncio.ensure_future(client.wait("r1", **wait_kwargs))
            while count(m, "GET", "/status") + count(m, "GET", "/result") < 3:
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return count(m, "POST", "/cancel")


async def test_cancelling_the_waiting_task_cancels_a_queued_request(vt: VirtualTime) -> None:
    assert await cancel_while(vt, "in_queue") == 1


async def test_cancelling_the_waiting_task_leaves_a_running_request_alone(
    vt: VirtualTime,
) -> None:
    assert await cancel_while(vt, "in_progress") == 0


async def test_cancel_on_interrupt_can_be_turned_off(vt: VirtualTime) -> None:
    assert await cancel_while(vt, "in_queue", cancel_on_interrupt=False) == 0


async def test_cancel_reports_not_cancellable_without_raising(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.post(CANCEL, status=202, payload={"status": "completed", "outcome": "not_cancellable"})
        async with make_client(vt) as client:
            outcome = await client.cancel("r1")
    assert outcome.cancelled is False
    assert outcome.outcome == "not_cancellable"


async def test_the_request_handle_delegates_to_the_client(vt: VirtualTime) -> None:
    with aioresponses() as m:
        m.post(f"{API}/v1/models/{WAN}", payload={"request_id": "r1"})
        m.get(STATUS, payload={"status": "completed"}, repeat=True)
        m.get(RESULT, payload={"status": "succeeded", "output": OUTPUT}, repeat=True)
        async with make_client(vt) as client:
            request = await client.submit(WAN, {"prompt": "fox"})
            assert (await request.status()).state is rc.State.COMPLETED
            assert (await request.result()).succeeded
            assert (await request.wait()).output == (await client.wait("r1")).output
    assert repr(request) == f"Request(request_id='r1', model_id='{WAN}')"
