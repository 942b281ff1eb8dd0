"""The cost estimate against what the simulator bills."""

from __future__ import annotations

import pytest

import runcomfy_async as rc
from runcomfy_async.simulator import Simulator, SimulatorConfig


async def test_the_estimate_matches_what_the_simulator_bills() -> None:
    runway = rc.models.RunwayGen3TurboImageToVideo.model_id
    inputs = [
        {"promptText": "a", "promptImage": "https://example.com/a.png", "duration": 10},
        {"promptText": "b", "promptImage": "https://example.com/b.png"},
    ]
    async with (
        Simulator(SimulatorConfig(time_scale=0.01, queue_delay=0.0)) as sim,
        rc.Client("k", base_url=sim.url) as client,
    ):
        estimate = rc.estimate_cost(await client.model_info(runway), inputs)
        results = [await client.run(runway, one, timeout=30) for one in inputs]
    billed = sum(job.cost or 0.0 for job in sim.ledger.jobs)
    assert estimate.usd == pytest.approx(billed)
    assert all(result.succeeded for result in results)
