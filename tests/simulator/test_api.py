"""Each endpoint's happy path and errors, over real sockets, in virtual time."""

from __future__ import annotations

import asyncio
from datetime import datetime

import aiohttp

from runcomfy_async.simulator import (
    RUNWAY_IMAGE_TO_VIDEO,
    WAN_TEXT_TO_IMAGE,
    ModelProfile,
    default_models,
)

from .conftest import AUTH, TOKEN, FakeClock, Start, call

WAN = WAN_TEXT_TO_IMAGE
RUNWAY = RUNWAY_IMAGE_TO_VIDEO
RUNWAY_INPUTS = {"promptText": "waves", "promptImage": "https://example.com/a.png", "duration": 10}


async def test_submit_answers_absolute_urls_and_records_the_job(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start()
    status, body = await call(session, "POST", f"{sim.url}/v1/models/{WAN}", json={"prompt": "a"})
    assert status == 200
    rid = body["request_id"]
    assert body == {
        "request_id": rid,
        "status_url": f"{sim.url}/v1/requests/{rid}/status",
        "result_url": f"{sim.url}/v1/requests/{rid}/result",
        "cancel_url": f"{sim.url}/v1/requests/{rid}/cancel",
    }
    [job] = sim.ledger.jobs
    assert (job.request_id, job.model_id, job.inputs) == (rid, WAN, {"prompt": "a"})
    assert sim.ledger.jobs_per_input() == {'{"prompt": "a"}': 1}
    assert sim.ledger.calls["submit"] == 1


async def test_a_job_goes_from_queue_to_progress_to_completed(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = await start(models={WAN: ModelProfile(run_time=(3.0, 3.0))}, queue_delay=1.0)
    _, sub = await call(session, "POST", f"{sim.url}/v1/models/{WAN}", json={"prompt": "a"})
    states = []
    for _ in range(3):
        _, body = await call(session, "GET", sub["status_url"])
        states.append((body["status"], body.get("queue_position")))
        clock.advance(2.0)
    assert states == [("in_queue", 1), ("in_progress", None), ("completed", None)]
    assert set(body) == {"request_id", "status", "instance_id", "status_url", "result_url"}


async def test_result_of_a_success_has_outputs_timestamps_and_optional_cost(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = await start(models={WAN: ModelProfile(run_time=(3.0, 3.0))}, queue_delay=1.0)
    _, sub = await call(session, "POST", f"{sim.url}/v1/models/{WAN}", json={"prompt": "a"})
    _, early = await call(session, "GET", sub["result_url"])
    assert early == {"request_id": sub["request_id"], "status": "in_queue"}
    clock.advance(4.0)
    _, body = await call(session, "GET", sub["result_url"])
    rid = sub["request_id"]
    assert body["status"] == "succeeded"
    assert body["output"] == {"image": f"{sim.url}/files/{rid}/0.png"}
    took = datetime.fromisoformat(body["finished_at"]) - datetime.fromisoformat(body["created_at"])
    assert abs(took.total_seconds() - 4.0) < 0.002
    assert "cost" not in body
    _, costed = await call(session, "GET", sub["result_url"] + "?include_cost=true")
    assert costed["cost"] == 0.04
    assert sim.ledger.job(rid).finished_at == clock.t


async def test_video_outputs_are_mp4_and_billed_per_second(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = await start()
    _, sub = await call(session, "POST", f"{sim.url}/v1/models/{RUNWAY}", json=RUNWAY_INPUTS)
    clock.advance(60)
    _, body = await call(session, "GET", sub["result_url"] + "?include_cost=true")
    assert body["cost"] == 0.5
    async with session.get(body["output"]["video"]) as response:  # no Authorization: a CDN
        data = await response.read()
        assert response.status == 200
        assert response.content_type == "video/mp4"
        assert response.content_length == len(data)
    assert data[4:8] == b"ftyp"
    assert sim.ledger.total_charged == 0.5


async def test_output_files_are_real_pngs_and_only_exist_once_done(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = await start(models={WAN: ModelProfile(outputs=2)}, files_base_url="http://cdn.local/")
    _, sub = await call(session, "POST", f"{sim.url}/v1/models/{WAN}", json={"prompt": "a"})
    rid = sub["request_id"]
    async with session.get(f"{sim.url}/files/{rid}/0.png") as response:
        assert response.status == 404
    clock.advance(60)
    _, body = await call(session, "GET", sub["result_url"])
    assert body["output"] == {
        "images": [f"http://cdn.local/files/{rid}/0.png", f"http://cdn.local/files/{rid}/1.png"]
    }
    for name, expected in (("1.png", 200), ("2.png", 404), ("0.mp4", 404), ("x.png", 404)):
        async with session.get(f"{sim.url}/files/{rid}/{name}") as response:
            data = await response.read()
            assert response.status == expected, name
    async with session.get(f"{sim.url}/files/{rid}/0.png") as response:
        data = await response.read()
        assert response.content_type == "image/png"
        assert response.content_length == len(data)
        assert data.startswith(b"\x89PNG")
    assert sim.ledger.total_charged == 0.08  # two images


async def test_cancel_frees_a_queued_job_and_spares_a_running_one(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = await start(concurrency=1, queue_delay=0.0)
    url = f"{sim.url}/v1/models/{WAN}"
    _, running = await call(session, "POST", url, json={"prompt": "a"})
    _, queued = await call(session, "POST", url, json={"prompt": "b"})
    status, body = await call(session, "POST", queued["cancel_url"])
    assert (status, body) == (
        202,
        {"request_id": queued["request_id"], "status": "cancelled", "outcome": "cancelled"},
    )
    _, again = await call(session, "POST", queued["cancel_url"])
    assert again["outcome"] == "cancelled"
    status, body = await call(session, "POST", running["cancel_url"])
    assert (status, body["status"], body["outcome"]) == (202, "in_progress", "not_cancellable")
    _, state = await call(session, "GET", queued["status_url"])
    assert state["status"] == "cancelled"
    clock.advance(60)
    _, result = await call(session, "GET", queued["result_url"] + "?include_cost=true")
    assert (result["status"], result["cost"]) == ("cancelled", 0.0)
    _, result = await call(session, "GET", running["result_url"] + "?include_cost=true")
    assert (result["status"], result["cost"]) == ("succeeded", 0.04)
    assert dict(sim.ledger.cancels) == {"cancelled": 2, "not_cancellable": 1}


async def test_unknown_request_ids_answer_404001(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start()
    for method, tail in (("GET", "status"), ("GET", "result"), ("POST", "cancel")):
        status, body = await call(session, method, f"{sim.url}/v1/requests/nope/{tail}")
        assert (status, body["error_code"]) == (404, 404001)


async def test_unknown_models_answer_400001(start: Start, session: aiohttp.ClientSession) -> None:
    sim = await start()
    url = f"{sim.url}/v1/models/acme/nothing"
    for method in ("GET", "POST"):
        status, body = await call(session, method, url, json={"prompt": "a"})
        assert (status, body["error_code"]) == (400, 400001)
    assert sim.ledger.jobs == []


async def test_invalid_inputs_answer_422_with_details(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start()
    url = f"{sim.url}/v1/models/{RUNWAY}"
    status, body = await call(session, "POST", url, json={"promptText": "x" * 513, "seed": -1})
    assert status == 422
    assert body["error_code"] == 422001
    assert body["detail"] == [
        {"field": "promptImage", "message": "field required"},
        {"field": "promptText", "message": "must be at most 512 characters"},
        {"field": "seed", "message": "must be >= 0"},
    ]
    status, body = await call(session, "POST", url, data=b"{not json")
    assert (status, body["error_code"]) == (422, 422001)
    assert sim.ledger.jobs == []


async def test_the_catalog_serves_entries_and_searches(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start()
    status, entry = await call(session, "GET", f"{sim.url}/v1/models/{RUNWAY}")
    assert status == 200
    assert entry["model_id"] == RUNWAY
    assert (entry["categories"], entry["price_unit"], entry["base_price_usd"]) == (
        ["image-to-video"],
        "second",
        0.05,
    )
    assert entry["display_name"] == "Runway Gen-3 Alpha Turbo Image to Video"
    schema = entry["input_schema"]
    assert schema["required"] == ["promptText", "promptImage"]
    assert schema["properties"]["promptImage"]["validations"][4]["validation_value"] == 16
    assert set(entry["output_schema"]["properties"]) == {"image", "video", "images", "videos"}
    _, listing = await call(session, "GET", f"{sim.url}/v1/models")
    catalog = list(default_models())  # the seeds first, then the extra models
    assert [m["model_id"] for m in listing["models"]] == catalog
    assert catalog[:2] == [WAN, RUNWAY]
    assert listing["total"] == len(catalog) == 9
    _, found = await call(session, "GET", f"{sim.url}/v1/models?search=WAN&category=text-to-image")
    assert [m["model_id"] for m in found["models"]] == [WAN]
    _, page = await call(session, "GET", f"{sim.url}/v1/models?limit=1&offset=1")
    assert ([m["model_id"] for m in page["models"]], page["total"]) == ([RUNWAY], 9)
    status, _ = await call(session, "GET", f"{sim.url}/v1/models?limit=x")
    assert status == 422


async def test_calls_without_a_valid_token_answer_401_and_create_nothing(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start(api_key=TOKEN)
    url = f"{sim.url}/v1/models/{WAN}"
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": f"Basic {TOKEN}"}):
        status, body = await call(session, "POST", url, json={"prompt": "a"}, headers=headers)
        assert (status, body) == (
            401,
            {"error_code": 400004, "error_message": body["error_message"]},
        )
    wrong = {"Authorization": "Bearer wrong-token"}
    status, body = await call(session, "GET", f"{sim.url}/v1/models", headers=wrong)
    assert status == 401
    assert "wrong-token" not in str(body)
    status, _ = await call(session, "POST", url, json={"prompt": "a"}, headers=AUTH)
    assert status == 200
    assert len(sim.ledger.jobs) == 1
    assert [c.authorized for c in sim.ledger.call_log] == [False, True, True, True, True]
    assert TOKEN not in repr(sim.config)


async def test_any_token_is_accepted_without_a_configured_key_and_never_echoed(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = await start()
    _, sub = await call(session, "POST", f"{sim.url}/v1/models/{WAN}", json={"prompt": "a"})
    clock.advance(60)
    seen = [str(sub)]
    for url in (sub["status_url"], sub["result_url"] + "?include_cost=true"):
        status, body = await call(session, "GET", url)
        assert status == 200
        seen.append(str(body))
    async with session.get(f"{sim.url}/_sim/ledger") as response:
        seen.append(await response.text())
    assert not any(TOKEN in text for text in seen)


async def test_an_exhausted_balance_answers_402_400002(
    start: Start, session: aiohttp.ClientSession
) -> None:
    sim = await start(balance_usd=0.1, concurrency=1, queue_delay=0.0)
    url = f"{sim.url}/v1/models/{WAN}"
    answers = [await call(session, "POST", url, json={"prompt": str(i)}) for i in range(3)]
    assert [status for status, _ in answers] == [200, 200, 402]
    assert answers[2][1]["error_code"] == 400002
    await call(session, "POST", answers[1][1]["cancel_url"])  # frees its reserved cost
    status, _ = await call(session, "POST", url, json={"prompt": "again"})
    assert status == 200


async def test_outputs_expire_after_their_ttl(
    start: Start, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = await start(output_ttl=100.0, time_scale=0.1)  # 10 s of simulated time
    _, sub = await call(session, "POST", f"{sim.url}/v1/models/{WAN}", json={"prompt": "a"})
    clock.advance(5)
    _, body = await call(session, "GET", sub["result_url"])
    file_url = body["output"]["image"]
    clock.advance(10)
    status, body = await call(session, "GET", sub["result_url"])
    assert (status, body["error_code"]) == (404, 404001)
    async with session.get(file_url) as response:
        assert response.status == 404


async def test_concurrency_cap_holds_in_real_time(session: aiohttp.ClientSession) -> None:
    from runcomfy_async.simulator import Simulator, SimulatorConfig

    config = SimulatorConfig(time_scale=0.01, concurrency=3, queue_delay=0.0)
    async with Simulator(config) as sim:
        url = f"{sim.url}/v1/models/{WAN}"
        subs = [await call(session, "POST", url, json={"prompt": str(i)}) for i in range(12)]
        positions = [(await call(session, "GET", s["status_url"]))[1] for _, s in subs]
        assert [p.get("queue_position") for p in positions[3:6]] == [1, 2, 3]
        results = []
        for _, sub in subs:
            while True:
                _, body = await call(session, "GET", sub["result_url"])
                if body["status"] == "succeeded":
                    results.append((sim.now(), sim.ledger.job(sub["request_id"]).finished_at))
                    break
                await asyncio.sleep(0.01)
        assert sim.ledger.peak_running == 3
        assert all(
            finished is not None and seen >= finished for seen, finished in results
        )  # detection latency >= 0
        starts = sorted(j.started_at or 0 for j in sim.ledger.jobs)
        finishes = sorted(j.finished_at or 0 for j in sim.ledger.jobs)
        assert starts[3] >= finishes[0]  # the fourth job waited for a free slot
