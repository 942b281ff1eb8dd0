"""Each fault action as a real aiohttp client sees it, and what the ledger records."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from runcomfy_async.simulator import RUNWAY_IMAGE_TO_VIDEO, WAN_TEXT_TO_IMAGE, FaultRule

from .conftest import AUTH, FakeClock, Start, call

WAN = WAN_TEXT_TO_IMAGE
DISCONNECTS = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


async def test_a_status_fault_answers_its_code_retry_after_and_creates_no_job(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start()
    sim.faults.add(FaultRule("status", endpoint="submit", status_code=429, retry_after=2, times=1))
    url = f"{sim.url}/v1/models/{WAN}"
    async with session.post(url, json={"prompt": "a"}, headers=AUTH) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "2"
        assert await response.json() == {
            "error_code": 429001,
            "error_message": "simulated HTTP 429",
        }
    assert sim.ledger.jobs == []
    status, _ = await call(session, "POST", url, json={"prompt": "a"})
    assert status == 200  # `times=1` is spent
    assert [(c.status_code, c.fault) for c in sim.ledger.call_log] == [
        (429, "status"),
        (200, None),
    ]


async def test_retry_after_can_be_an_http_date_and_the_body_custom(
    start: Start, session: aiohttp.ClientSession
) -> None:
    date = "Wed, 21 Oct 2099 07:28:00 GMT"
    body = {"code": 503, "message": "maintenance"}
    sim = await start(faults=(FaultRule("status", status_code=503, retry_after=date, body=body),))
    async with session.get(f"{sim.url}/v1/models", headers=AUTH) as response:
        assert (response.status, response.headers["Retry-After"]) == (503, date)
        assert await response.json() == body


async def test_error_200_answers_an_error_code_with_http_200(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start()
    sim.faults.add(FaultRule("error_200", endpoint="status", error_code=500001))
    status, body = await call(session, "GET", f"{sim.url}/v1/requests/any/status")
    assert (status, body["error_code"]) == (200, 500001)


async def test_reset_before_read_drops_the_submit_and_creates_no_job(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start()
    sim.faults.add(FaultRule("reset_before_read", endpoint="submit", times=1))
    with pytest.raises(DISCONNECTS):
        await call(session, "POST", f"{sim.url}/v1/models/{WAN}", json={"prompt": "a" * 500})
    assert sim.ledger.jobs == []
    [logged] = sim.ledger.call_log
    assert (logged.endpoint, logged.status_code, logged.fault) == (
        "submit",
        None,
        "reset_before_read",
    )


async def test_reset_after_read_creates_exactly_one_job_the_client_never_hears_of(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start()
    sim.faults.add(FaultRule("reset_after_read", endpoint="submit", times=1))
    with pytest.raises(DISCONNECTS):
        await call(session, "POST", f"{sim.url}/v1/models/{WAN}", json={"prompt": "a"})
    assert sim.ledger.jobs_per_input() == {'{"prompt": "a"}': 1}
    assert sim.ledger.calls["submit"] == 1


async def test_latency_makes_the_client_time_out_after_the_job_exists(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start()
    sim.faults.add(FaultRule("latency", endpoint="submit", seconds=0.3))
    timeout = aiohttp.ClientTimeout(total=0.05)
    url = f"{sim.url}/v1/models/{WAN}"
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(url, json={"prompt": "a"}, headers=AUTH, timeout=timeout):
            pass
    assert len(sim.ledger.jobs) == 1
    await asyncio.sleep(0.3)  # let the late answer go out before the simulator stops


async def test_latency_delays_but_still_answers(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start()
    sim.faults.add(FaultRule("latency", endpoint="catalog", seconds=0.1))
    loop = asyncio.get_running_loop()
    began = loop.time()
    status, _ = await call(session, "GET", f"{sim.url}/v1/models")
    assert status == 200
    assert loop.time() - began >= 0.1


async def test_truncate_sends_less_than_the_content_length_after_creating_the_job(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start()
    sim.faults.add(FaultRule("truncate", endpoint="submit"))
    async with session.post(f"{sim.url}/v1/models/{WAN}", json={"prompt": "a"}, headers=AUTH) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    assert len(sim.ledger.jobs) == 1
    assert sim.ledger.call_log[0].fault == "truncate"


async def test_model_filters_pick_the_model_on_submit_and_on_later_calls(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = await start()
    runway = {"promptText": "a", "promptImage": "https://example.com/a.png"}
    _, wan_sub = await call(session, "POST", f"{sim.url}/v1/models/{WAN}", json={"prompt": "a"})
    url = f"{sim.url}/v1/models/{RUNWAY_IMAGE_TO_VIDEO}"
    _, run_sub = await call(session, "POST", url, json=runway)
    sim.faults.add(FaultRule("status", model_id=RUNWAY_IMAGE_TO_VIDEO, status_code=500))
    assert (await call(session, "GET", wan_sub["status_url"]))[0] == 200
    assert (await call(session, "GET", run_sub["status_url"]))[0] == 500
    assert (await call(session, "POST", url, json=runway))[0] == 500


async def test_probability_faults_are_seeded_and_reproducible(start: Start) -> None:
    async def pattern(seed: int) -> list[bool]:
        sim = await start(seed=seed, faults=(FaultRule("status", probability=0.3),))
        return [sim.faults.match("status", None) is not None for _ in range(300)]

    first = await pattern(1)
    assert first == await pattern(1)
    assert first != await pattern(2)
    assert 60 < sum(first) < 120


async def test_files_faults_apply_to_downloads(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = await start()
    _, sub = await call(session, "POST", f"{sim.url}/v1/models/{WAN}", json={"prompt": "a"})
    clock.advance(60)
    _, body = await call(session, "GET", sub["result_url"])
    sim.faults.add(FaultRule("truncate", endpoint="files"))
    async with session.get(body["output"]["image"]) as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_admin_endpoints_manage_faults_ledger_and_reset(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start(faults=(FaultRule("status", endpoint="cancel", status_code=500),))
    admin = f"{sim.url}/_sim"
    rule = {"action": "status", "endpoint": "submit", "status_code": 503, "times": 1}
    status, body = await call(session, "POST", f"{admin}/faults", json=[rule], headers={})
    assert status == 200
    assert [r["endpoint"] for r in body["rules"]] == ["cancel", "submit"]
    status, body = await call(session, "POST", f"{admin}/faults", json={"action": "boom"})
    assert status == 400
    assert "invalid fault rule" in body["error"]
    url = f"{sim.url}/v1/models/{WAN}"
    assert (await call(session, "POST", url, json={"prompt": "a"}))[0] == 503
    assert (await call(session, "POST", url, json={"prompt": "a"}))[0] == 200
    _, ledger = await call(session, "GET", f"{admin}/ledger", headers={})
    assert ledger["calls"] == {"submit": 2}
    assert ledger["jobs_per_input"] == {'{"prompt": "a"}': 1}
    assert ledger["jobs"][0]["state"] in ("in_queue", "in_progress")
    assert ledger["peak_queued"] == 1
    assert [c["status_code"] for c in ledger["call_log"]] == [503, 200]
    assert isinstance(ledger["now"], float)
    status, body = await call(session, "DELETE", f"{admin}/faults", headers={})
    assert (status, body, sim.faults.rules) == (200, {"rules": []}, ())
    assert (await call(session, "POST", f"{admin}/reset", headers={}))[0] == 200
    assert sim.ledger.jobs == []
    assert sim.ledger.calls == {}
    _, body = await call(session, "GET", f"{admin}/faults", headers={})
    assert [r["endpoint"] for r in body["rules"]] == ["cancel"]  # the configured ones return
    _, sub = await call(session, "POST", url, json={"prompt": "a"})
    assert sub["request_id"] != ledger["jobs"][0]["request_id"]  # no id is reused


@pytest.mark.parametrize("tell", [True, False], ids=["retry-after", "no-retry-after"])
async def test_the_submit_rate_limit_admits_its_rate_and_refuses_the_rest_429(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock, tell: bool
) -> None:
    sim = await start(submit_rate=4.0, submit_burst=2.0, submit_retry_after=tell)
    url = f"{sim.url}/v1/models/{WAN}"

    async def submit() -> tuple[int, str | None]:
        async with session.post(url, json={"prompt": "a"}, headers=AUTH) as response:
            body = await response.json()
            if response.status == 429:
                assert body["error_code"] == 429001
            return response.status, response.headers.get("Retry-After")

    assert [await submit() for _ in range(3)] == [
        (200, None),
        (200, None),
        (429, "0.250" if tell else None),  # the next token in 1/4 s
    ]
    clock.advance(0.2)
    assert await submit() == (429, "0.050" if tell else None)
    clock.advance(0.05)
    assert (await submit())[0] == 200
    assert len(sim.ledger.jobs) == 3  # a refused submit creates nothing
