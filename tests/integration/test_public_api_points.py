"""estimate_cost takes what map() takes (to_dict() gives a typed input's wire dict), and
as_completed with an unknown id: the error names it, and the others' results are not lost."""

from __future__ import annotations

import pytest

import runcomfy_async as rc
from runcomfy_async import models
from runcomfy_async.simulator import ModelProfile, Simulator, SimulatorConfig

RUNWAY = models.RunwayGen3TurboImageToVideo
WAN = models.Wan22TextToImage.model_id


def test_to_dict_is_the_wire_dict_and_the_inverse_of_from_dict() -> None:
    typed = RUNWAY(prompt_text="waves", prompt_image="https://example.com/a.png", duration=10)
    wire = typed.to_dict()
    assert wire == {
        "promptText": "waves",
        "promptImage": "https://example.com/a.png",
        "duration": 10,
    }
    assert RUNWAY.from_dict(wire) == typed
    assert models.Wan22TextToImage(prompt="a fox").to_dict() == {"prompt": "a fox"}


async def test_estimate_cost_takes_typed_inputs_pairs_and_numbered_like_map() -> None:
    typed = RUNWAY(prompt_text="a", prompt_image="https://example.com/a.png", duration=10)
    pair = (RUNWAY.model_id, {"promptText": "b", "promptImage": "https://example.com/b.png"})
    async with (
        Simulator(SimulatorConfig(time_scale=0.01, queue_delay=0.0)) as sim,
        rc.Client("k", base_url=sim.url) as client,
    ):
        info = await client.model_info(RUNWAY.model_id)
        mixed = [typed, pair, rc.Numbered(typed, 7, line=9)]
        estimate = rc.estimate_cost(info, mixed)
        items = [item async for item in client.map([typed, pair, typed])]
        with pytest.raises(rc.InvalidInputError, match=WAN):
            rc.estimate_cost(info, [models.Wan22TextToImage(prompt="other model")])
        with pytest.raises(rc.InvalidInputError):
            rc.estimate_cost(info, [42])  # type: ignore[list-item]
    assert estimate.inputs == 3
    assert all(item.ok for item in items)
    billed = sum(job.cost or 0.0 for job in sim.ledger.jobs)
    assert estimate.usd == pytest.approx(billed)


async def test_as_completed_with_an_unknown_id_names_it_and_keeps_the_other_results() -> None:
    config = SimulatorConfig(
        models={WAN: ModelProfile(run_time=(0.05, 0.1))}, queue_delay=0.0, time_scale=1.0
    )
    async with Simulator(config) as sim, rc.Client("k", base_url=sim.url) as client:
        first = await client.submit(WAN, {"prompt": "one"})
        second = await client.submit(WAN, {"prompt": "two"})
        ids = [first.request_id, "no-such-request", second.request_id]
        results: list[rc.Result] = []

        async def collect() -> None:
            async for result in client.as_completed(ids, timeout=30):
                results.append(result)

        with pytest.raises(rc.NotFoundError) as raised:
            await collect()
        mixed = [r async for r in client.as_completed(ids, timeout=30, return_exceptions=True)]
        with pytest.raises(rc.NotFoundError) as direct:
            await client.status("no-such-request")
    assert raised.value.request_id == "no-such-request"
    assert "no-such-request" in str(raised.value)
    assert sorted(r.request_id for r in results) == sorted([first.request_id, second.request_id])
    assert all(r.succeeded for r in results)
    errors = [r for r in mixed if isinstance(r, rc.NotFoundError)]
    assert [e.request_id for e in errors] == ["no-such-request"]
    assert len(mixed) == 3
    assert direct.value.request_id == "no-such-request"
    assert "no-such-request" in str(direct.value)
