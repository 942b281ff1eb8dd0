"""Each quirk switch reproduces one of the behaviours RunComfy's sources disagree on."""

from __future__ import annotations

from typing import Any

import aiohttp

from runcomfy_async.simulator import WAN_TEXT_TO_IMAGE, Quirks

from .conftest import FakeClock, Start, call

WAN = WAN_TEXT_TO_IMAGE


async def submit(session: aiohttp.ClientSession, url: str) -> dict[str, str]:
    status, body = await call(session, "POST", f"{url}/v1/models/{WAN}", json={"prompt": "a"})
    assert status in (200, 202)
    return {
        "request_id": body["request_id"],
        "status_url": f"{url}/v1/requests/{body['request_id']}/status",
        "result_url": f"{url}/v1/requests/{body['request_id']}/result",
    }


async def test_a_failed_run_reads_completed_on_status_and_failed_on_result(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = await start(failure_rate=1.0)
    sub = await submit(session, sim.url)
    clock.advance(60)
    _, status = await call(session, "GET", sub["status_url"])
    assert status["status"] == "completed"
    assert "error" not in status
    _, result = await call(session, "GET", sub["result_url"] + "?include_cost=true")
    assert result["status"] == "failed"
    assert isinstance(result["error"], str)
    assert "output" not in result
    assert result["cost"] == 0.04  # it ran, so it is billed
    assert {"created_at", "finished_at"} <= set(result)


async def test_failed_status_quirk_reports_failed_with_its_error(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = await start(failure_rate=1.0, quirks=Quirks(failed_status="failed"))
    sub = await submit(session, sim.url)
    clock.advance(60)
    _, status = await call(session, "GET", sub["status_url"])
    assert status["status"] == "failed"
    assert status["error"] == sim.ledger.job(sub["request_id"]).error


async def test_not_ready_400005_quirk_answers_400_until_finished(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = await start(quirks=Quirks(not_ready="400005"))
    sub = await submit(session, sim.url)
    status, body = await call(session, "GET", sub["result_url"])
    assert (status, body) == (400, {"error_code": 400005, "error_message": "result not ready"})
    clock.advance(60)
    status, body = await call(session, "GET", sub["result_url"])
    assert (status, body["status"]) == (200, "succeeded")


async def test_not_ready_status_quirk_answers_the_current_state(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = await start(quirks=Quirks(not_ready="status"))
    sub = await submit(session, sim.url)
    clock.advance(1.0)  # past the 0.5 s queue delay, before the 2 s minimum run
    status, body = await call(session, "GET", sub["result_url"])
    assert (status, body) == (200, {"request_id": sub["request_id"], "status": "in_progress"})


async def test_errors_as_200_quirk_answers_every_api_error_with_200(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start(quirks=Quirks(errors_as_200=True))
    cases: list[tuple[str, str, Any, dict[str, str] | None, int]] = [
        ("GET", f"{sim.url}/v1/requests/nope/status", None, None, 404001),
        ("POST", f"{sim.url}/v1/models/{WAN}", {"prompt": 1}, None, 422001),
        ("POST", f"{sim.url}/v1/models/nope/x", {"prompt": "a"}, None, 400001),
        ("GET", f"{sim.url}/v1/models", None, {}, 400004),
    ]
    for method, url, json, headers, code in cases:
        status, body = await call(session, method, url, json=json, headers=headers)
        assert (status, body["error_code"]) == (200, code)
        assert body["error_message"]


async def test_minimal_submit_style_answers_202_with_only_the_id(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start(quirks=Quirks(submit_style="minimal"))
    status, body = await call(session, "POST", f"{sim.url}/v1/models/{WAN}", json={"prompt": "a"})
    assert status == 202
    assert body == {"request_id": body["request_id"], "status": "in_queue"}


async def test_fresh_request_ids_answer_404_for_a_while(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = await start(quirks=Quirks(fresh_404_seconds=2.0))
    sub = await submit(session, sim.url)
    for url in (sub["status_url"], sub["result_url"]):
        status, body = await call(session, "GET", url)
        assert (status, body["error_code"]) == (404, 404001)
    clock.advance(2.0)
    status, _ = await call(session, "GET", sub["status_url"])
    assert status == 200
