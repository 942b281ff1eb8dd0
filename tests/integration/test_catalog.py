"""The catalog through the public API: client.models() pages until `total`; Result.ok."""

from __future__ import annotations

import pytest

import runcomfy_async as rc
from runcomfy_async.simulator import ModelProfile, Simulator, SimulatorConfig, default_models

WAN = "wan-ai/wan-2-2/text-to-image"


def many_models(count: int) -> dict[str, ModelProfile]:
    extra = {f"acme/model-{n:03d}/text-to-image": ModelProfile() for n in range(count)}
    return {**default_models(), **extra}


async def test_models_pages_until_the_total_and_yields_every_entry() -> None:
    catalog = many_models(230)
    async with (
        Simulator(SimulatorConfig(models=catalog)) as sim,
        rc.Client("k", base_url=sim.url) as client,
    ):
        found = [info async for info in client.models()]
        listed = [call for call in sim.ledger.call_log if call.endpoint == "catalog"]
        acme = [info.model_id async for info in client.models(search="acme/model-1")]
        images = [info async for info in client.models(category="image-to-video")]
    assert [info.model_id for info in found] == list(catalog)
    assert len(listed) == 3  # 100 + 100 + 39 entries
    assert all(isinstance(info, rc.ModelInfo) for info in found)
    assert found[0].input_schema is not None
    assert found[0].price_unit == "output"
    assert acme == [f"acme/model-{n:03d}/text-to-image" for n in range(100, 200)]
    assert [info.model_id for info in images] == [
        "runwayml/runway-gen-3-alpha/turbo/image-to-video"
    ]


async def test_result_ok_is_true_only_for_a_success() -> None:
    fails = "acme/always-fails/text-to-image"
    catalog = {**default_models(), fails: ModelProfile(failure_rate=1.0)}
    config = SimulatorConfig(time_scale=0.01, models=catalog)
    async with Simulator(config) as sim, rc.Client("k", base_url=sim.url) as client:
        good = await client.run(WAN, {"prompt": "a fox"})
        request = await client.submit(fails, {"prompt": "fails"})
        with pytest.raises(rc.RequestFailedError):
            await request.wait()
        bad = await client.result(request)
    assert good.ok is True
    assert bad.ok is False
    assert bad.state is rc.State.FAILED
