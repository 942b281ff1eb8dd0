"""The client against the RunComfy simulator over real sockets: what a user would see."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import traceback
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

import runcomfy_async as rc
from runcomfy_async import models
from runcomfy_async.simulator import FaultRule, ModelProfile, Quirks, Simulator, SimulatorConfig
from tests.conftest import CANARY

WAN = models.Wan22TextToImage.model_id
RUNWAY = models.RunwayGen3TurboImageToVideo.model_id
FAST = {
    WAN: ModelProfile(run_time=(0.05, 0.15)),
    RUNWAY: ModelProfile(run_time=(0.1, 0.2), price=0.05),
}
IMAGE = "https://example.com/cat.png"


def config(**kwargs: Any) -> SimulatorConfig:
    kwargs.setdefault("models", FAST)
    kwargs.setdefault("queue_delay", 0.0)
    return SimulatorConfig(**kwargs)


def fast_client(url: str, **kwargs: Any) -> rc.Client:
    kwargs.setdefault("api_key", "test-key")
    kwargs.setdefault(
        "poll", rc.PollPolicy(first_interval=0.02, min_interval=0.01, max_interval=0.1)
    )
    kwargs.setdefault("retry", rc.RetryPolicy(base_backoff=0.01, max_backoff=0.05))
    return rc.Client(base_url=url, timeout=5.0, **kwargs)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(config()) as simulator:
        yield simulator


async def test_typed_image_request_runs_to_a_real_png(sim: Simulator) -> None:
    async with fast_client(sim.url) as client:
        result = await client.run(models.Wan22TextToImage(prompt="a red fox", seed=7))
    assert result.state is rc.State.SUCCEEDED
    assert result.output is not None
    assert result.output.image is not None
    assert result.cost == pytest.approx(0.04)
    assert result.created_at is not None
    assert result.finished_at is not None
    async with aiohttp.ClientSession() as http, http.get(result.output.image) as response:
        assert response.content_type == "image/png"
        assert (await response.read()).startswith(b"\x89PNG\r\n\x1a\n")
    (job,) = sim.ledger.jobs
    assert job.inputs == {"prompt": "a red fox", "seed": 7}  # unset fields not sent


async def test_typed_video_request_runs_to_real_mp4_bytes(sim: Simulator) -> None:
    inputs = models.RunwayGen3TurboImageToVideo(prompt_text="waves", prompt_image=IMAGE)
    async with fast_client(sim.url) as client:
        request = await client.submit(inputs)
        result = await request.wait(timeout=10)
    assert result.output is not None
    assert result.output.video is not None
    async with aiohttp.ClientSession() as http, http.get(result.output.video) as response:
        body = await response.read()
    assert body[4:8] == b"ftyp"
    assert b"moov" in body
    assert sim.ledger.job(request.request_id).inputs == {
        "promptText": "waves",
        "promptImage": IMAGE,
    }


async def test_dict_inputs_reach_any_model_and_the_simulator_checks_them() -> None:
    strict = {
        "type": "object",
        "required": ["prompt"],
        "properties": {"prompt": {"type": "string", "maxLength": 10}},
    }
    catalog = {**FAST, "acme/strict": ModelProfile(run_time=(0.05, 0.1), input_schema=strict)}
    async with Simulator(config(models=catalog)) as sim, fast_client(sim.url) as client:
        result = await client.run(WAN, {"prompt": "a fox", "aspect_ratio": "1024:1024 (1:1)"})
        assert result.succeeded
        assert (await client.run("acme/strict", {"prompt": "short"})).succeeded
        too_long = {"prompt": "far too long a prompt"}
        with pytest.raises(rc.InvalidInputError, match="prompt"):  # the catalog schema says no
            await client.submit("acme/strict", too_long)
        with pytest.raises(rc.BadRequestError) as info:  # unchecked: RunComfy says no
            await client.submit("acme/strict", too_long, validate=False)
        with pytest.raises(rc.InvalidInputError, match="aspect_ratio"):  # typed: checked here
            await client.submit(WAN, {"prompt": "a fox", "aspect_ratio": "square"})
        assert info.value.status_code == 422
        assert sim.ledger.calls["submit"] == 3
        assert len(sim.ledger.jobs) == 2


async def test_invalid_typed_inputs_never_reach_the_api(sim: Simulator) -> None:
    async with fast_client(sim.url) as client:
        with pytest.raises(rc.InvalidInputError, match="prompt_text"):
            await client.submit(
                models.RunwayGen3TurboImageToVideo(prompt_text="x" * 513, prompt_image=IMAGE)
            )
    assert sum(sim.ledger.calls.values()) == 0


async def test_reset_after_the_submit_was_read_is_unknown_and_not_resent(sim: Simulator) -> None:
    sim.faults.add(FaultRule(action="reset_after_read", endpoint="submit", times=1))
    inputs = models.Wan22TextToImage(prompt="pay once")
    async with fast_client(sim.url) as client:
        with pytest.raises(rc.SubmissionUnknownError) as info:
            await client.submit(inputs)
    assert info.value.inputs is inputs
    assert sim.ledger.calls["submit"] == 1
    assert list(sim.ledger.jobs_per_input().values()) == [1]


@pytest.mark.parametrize("action", ["reset_before_read", "status"])
async def test_submit_failures_before_or_without_a_job_are_explicit(
    sim: Simulator, action: str
) -> None:
    # A reset before the body was read still may look like "sent" to the client: it raises
    # SubmissionUnknownError rather than guess. A 503 is a possible-job too. Neither resends.
    sim.faults.add(FaultRule(action=action, endpoint="submit", times=1))  # type: ignore[arg-type]
    async with fast_client(sim.url) as client:
        with pytest.raises(rc.SubmissionUnknownError):
            await client.submit(WAN, {"prompt": "x"})
    assert sim.ledger.calls["submit"] == 1
    assert sim.ledger.jobs == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_a_refused_connection_is_retried_and_pays_once() -> None:
    port = free_port()
    policy = rc.RetryPolicy(max_attempts=20, base_backoff=0.05, max_backoff=0.1)
    async with rc.Client("k", base_url=f"http://127.0.0.1:{port}", retry=policy) as client:
        submit = asyncio.ensure_future(client.submit(WAN, {"prompt": "late server"}))
        await asyncio.sleep(0.3)  # the first attempts are refused: nothing listens yet
        assert not submit.done()
        async with Simulator(config(port=port)) as sim:
            request = await submit
            assert sim.ledger.jobs_per_input() == {'{"prompt": "late server"}': 1}
            assert sim.ledger.job(request.request_id).model_id == WAN


async def test_rate_limit_with_retry_after_is_waited_out(sim: Simulator) -> None:
    sim.faults.add(FaultRule(action="status", status_code=429, retry_after=1, times=1))
    async with fast_client(sim.url) as client:
        started = time.monotonic()
        request = await client.submit(WAN, {"prompt": "x"})
        assert time.monotonic() - started >= 1.0
        await request.wait(timeout=10)
    assert sim.ledger.calls["submit"] == 2
    assert len(sim.ledger.jobs) == 1


async def test_flapping_status_never_fails_the_request(sim: Simulator) -> None:
    for action in ("reset_after_read", "truncate", "status"):
        sim.faults.add(FaultRule(action=action, endpoint="status", probability=0.3))  # type: ignore[arg-type]
    async with fast_client(sim.url, retry=rc.RetryPolicy(max_attempts=1)) as client:
        results = await asyncio.gather(
            *(client.run(WAN, {"prompt": f"p{n}"}, timeout=30) for n in range(10))
        )
    assert all(result.succeeded for result in results)
    assert sum(1 for call in sim.ledger.call_log if call.fault) > 0


QUIRKS = [
    Quirks(not_ready="400005"),
    Quirks(failed_status="failed"),
    Quirks(errors_as_200=True),
    Quirks(submit_style="minimal"),
    Quirks(fresh_404_seconds=0.3),
]


@pytest.mark.parametrize("quirks", QUIRKS, ids=lambda q: repr(q))
async def test_every_quirk_still_gives_results_and_failures(quirks: Quirks) -> None:
    models_ = {
        WAN: ModelProfile(run_time=(0.05, 0.1)),
        "acme/broken": ModelProfile(failure_rate=1.0, run_time=(0.05, 0.1)),
    }
    async with (
        Simulator(config(models=models_, quirks=quirks)) as sim,
        fast_client(sim.url) as client,
    ):
        good = await client.run(WAN, {"prompt": "ok"}, timeout=20)
        with pytest.raises(rc.RequestFailedError) as info:
            await client.run("acme/broken", {"anything": 1}, timeout=20)
        with pytest.raises(rc.NotFoundError):
            await client.status("no-such-request")
    assert good.succeeded
    assert good.output is not None
    assert good.output.urls
    assert info.value.error


async def test_cancel_frees_a_queued_request_and_reports_a_running_one() -> None:
    slow = {WAN: ModelProfile(run_time=(30.0, 30.0))}
    async with Simulator(config(models=slow, concurrency=1)) as sim:
        async with fast_client(sim.url) as client:
            running = await client.submit(WAN, {"prompt": "first"})
            queued = await client.submit(WAN, {"prompt": "second"})
            await asyncio.sleep(0.05)
            assert (await client.status(queued)).queue_position == 1
            assert (await client.cancel(queued)).cancelled
            assert (await client.status(queued)).state is rc.State.CANCELLED
            with pytest.raises(rc.RequestCancelledError):
                await queued.wait()
            outcome = await client.cancel(running)
        assert outcome.cancelled is False
        assert outcome.outcome == "not_cancellable"
        assert sim.ledger.job(queued.request_id).charged == 0


async def test_cancelling_a_waiting_task_cancels_its_queued_request() -> None:
    slow = {WAN: ModelProfile(run_time=(30.0, 30.0))}
    async with Simulator(config(models=slow, concurrency=1)) as sim:
        async with fast_client(sim.url) as client:
            await client.submit(WAN, {"prompt": "blocker"})
            queued = await client.submit(WAN, {"prompt": "waiting"})
            task = asyncio.ensure_future(queued.wait())
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert sim.ledger.calls["cancel"] == 1
        assert sim.ledger.job(queued.request_id).state.value == "cancelled"


async def test_model_info_has_the_schema_and_price(sim: Simulator) -> None:
    async with fast_client(sim.url) as client:
        info = await client.model_info(RUNWAY)
        with pytest.raises(rc.UnknownModelError):  # RunComfy's 400001
            await client.model_info("acme/not-a-model")
    assert info.model_id == RUNWAY
    assert info.input_schema is not None
    assert info.input_schema["required"] == ["promptText", "promptImage"]
    assert info.base_price_usd == pytest.approx(0.05)
    assert info.price_unit


async def test_wrong_key_is_an_authentication_error() -> None:
    async with (
        Simulator(config(api_key="right")) as sim,
        fast_client(sim.url, api_key="wrong") as client,
    ):
        with pytest.raises(rc.AuthenticationError):
            await client.submit(WAN, {"prompt": "x"})
        assert sim.ledger.jobs == []


async def test_canary_key_leaks_nowhere_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    faults = (
        FaultRule(action="reset_after_read", endpoint="submit", times=1),
        FaultRule(action="status", endpoint="status", status_code=503, times=2),
        FaultRule(action="latency", endpoint="result", seconds=0.01, times=1),
    )
    async with Simulator(config(api_key=CANARY, faults=faults)) as sim:
        async with fast_client(sim.url, api_key=CANARY) as client:
            texts.append(repr(client))
            for attempt in (
                client.submit(WAN, {"prompt": "a"}),
                client.status("missing"),
                client.run(WAN, {"prompt": "b"}),
            ):
                try:
                    texts.append(repr(await attempt))
                except rc.RunComfyError as exc:
                    texts.append("".join(traceback.format_exception(exc)))
        texts.append(repr(sim.ledger.to_json()))
    texts.append(caplog.text)
    assert all(call.authorized for call in sim.ledger.call_log if call.endpoint != "files")
    assert [t for t in texts if CANARY in t] == []
