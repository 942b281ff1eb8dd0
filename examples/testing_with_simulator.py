"""Testing your own code with the simulator as a pytest fixture, injected failures included.

    python -m pytest examples/testing_with_simulator.py

In your project, enable the fixture once, in the root conftest.py. Each test gets
`runcomfy_simulator`: a fresh simulated RunComfy on 127.0.0.1 with a ledger to assert on.
"""

import subprocess
import sys

import pytest

import runcomfy_async as rc
from runcomfy_async.simulator import FaultRule
from runcomfy_async.testing import ThreadedSimulator as Sim

pytest_plugins = ["runcomfy_async.testing"]
pytestmark = pytest.mark.asyncio


async def generate_all(client: rc.Client, prompts: list[str]) -> list[str]:
    """The code under test: an image per prompt, all at once; the first error is raised."""
    urls = [""] * len(prompts)
    async with client.map([rc.models.Wan22TextToImage(prompt=p) for p in prompts]) as batch:
        async for item in batch:
            if item.error is not None:
                raise item.error  # leaving the batch cancels the requests still queued
            assert item.result is not None
            assert item.result.output is not None
            urls[item.index] = item.result.output.urls[0]
    return urls


async def test_an_image_per_prompt_none_paid_twice(runcomfy_simulator: Sim) -> None:
    async with rc.Client("any-key", base_url=runcomfy_simulator.url) as client:
        urls = await generate_all(client, ["a red fox", "a blue whale"])
    assert [url.endswith(".png") for url in urls] == [True, True]
    assert sorted(runcomfy_simulator.ledger.jobs_per_input().values()) == [1, 1]


async def test_a_refused_submit_is_reported(runcomfy_simulator: Sim) -> None:
    refuse = FaultRule(action="status", endpoint="submit", status_code=402, times=1)
    runcomfy_simulator.faults.add(refuse)  # the next submit: HTTP 402, insufficient balance
    async with rc.Client("any-key", base_url=runcomfy_simulator.url) as client:
        with pytest.raises(rc.InsufficientBalanceError):
            await generate_all(client, ["a red fox"])
    assert runcomfy_simulator.ledger.jobs == []  # no job was created, nothing was billed


@pytest.mark.parametrize("runcomfy_simulator", [{"failure_rate": 1.0}], indirect=True)
async def test_a_failed_run_is_reported(runcomfy_simulator: Sim) -> None:
    async with rc.Client("any-key", base_url=runcomfy_simulator.url) as client:
        with pytest.raises(rc.RequestFailedError) as failed:
            await generate_all(client, ["a red fox"])
    assert failed.value.request_id == runcomfy_simulator.ledger.jobs[0].request_id


if __name__ == "__main__":  # `python examples/testing_with_simulator.py` runs pytest on it
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", __file__, *sys.argv[1:]]))
