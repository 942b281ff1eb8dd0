"""The Simulator's lifecycle, defaults, public surface and logs."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

import runcomfy_async.simulator as simulator
from runcomfy_async.simulator import (
    RUNWAY_IMAGE_TO_VIDEO,
    WAN_TEXT_TO_IMAGE,
    Simulator,
    SimulatorConfig,
)

from .conftest import AUTH, TOKEN


def test_public_names_are_complete_and_sorted() -> None:
    public = {name for name in vars(simulator) if not name.startswith("_")}
    assert set(simulator.__all__) == public
    assert simulator.__all__ == sorted(simulator.__all__, key=lambda n: (not n.isupper(), n))


async def test_a_bare_simulator_serves_the_seeds_first_with_realistic_defaults() -> None:
    sim = Simulator()
    with pytest.raises(RuntimeError):
        _ = sim.url
    async with sim:
        assert sim.url.startswith("http://127.0.0.1:")
        config = sim.config
        assert (config.time_scale, config.concurrency, config.failure_rate, config.seed) == (
            1.0,
            None,
            0.0,
            0,
        )
        assert config.models[WAN_TEXT_TO_IMAGE].run_time == (2.0, 6.0)
        assert config.models[RUNWAY_IMAGE_TO_VIDEO].run_time == (10.0, 30.0)
        assert list(sim.catalog)[:2] == [WAN_TEXT_TO_IMAGE, RUNWAY_IMAGE_TO_VIDEO]
        assert len(sim.catalog) == 9  # and seven more, whose schemas use every construct
    await sim.stop()  # stopping twice is harmless
    assert repr(sim) == "<Simulator stopped>"


async def test_ledger_lists_jobs_per_model_and_files_answer_head() -> None:
    async with (
        Simulator(SimulatorConfig(time_scale=0.001, queue_delay=0.0)) as sim,
        aiohttp.ClientSession() as session,
    ):
        inputs = {"promptText": "a", "promptImage": "https://example.com/a.png"}
        for model, body in ((WAN_TEXT_TO_IMAGE, {"prompt": "a"}), (RUNWAY_IMAGE_TO_VIDEO, inputs)):
            async with session.post(f"{sim.url}/v1/models/{model}", json=body, headers=AUTH) as r:
                assert r.status == 200
        [job] = sim.ledger.jobs_for_model(RUNWAY_IMAGE_TO_VIDEO)
        assert job.inputs == inputs
        while job.finished_at is None:
            await asyncio.sleep(0.005)  # 10-30 ms of real time at this scale
            job = sim.ledger.job(job.request_id)
        async with session.head(f"{sim.url}/files/{job.request_id}/0.mp4") as response:
            assert (response.status, response.content_type) == (200, "video/mp4")
            assert response.content_length is not None
            assert response.content_length > 500


async def test_the_access_log_never_holds_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with Simulator(access_log=True) as sim, aiohttp.ClientSession() as session:
        async with session.get(f"{sim.url}/v1/models?search=wan", headers=AUTH) as response:
            assert response.status == 200
        async with session.get(f"{sim.url}/v1/requests/x/status", headers=AUTH) as response:
            assert response.status == 404
    assert "/v1/models?search=wan" in caplog.text
    assert TOKEN not in caplog.text
