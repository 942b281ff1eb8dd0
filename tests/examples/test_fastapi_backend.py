"""examples/fastapi_backend.py served by uvicorn on loopback (started here, as a user starts
it), called with a real HTTP client, on RunComfy's simulator (whose ledger says what was
submitted and cancelled)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import pytest

import runcomfy_async as rc
from runcomfy_async.testing import ThreadedSimulator, runcomfy_simulator, runcomfy_simulator_config

from .test_examples import EXAMPLES, PNG, first_generate, free_port, server_sent_events

__all__ = ["runcomfy_simulator", "runcomfy_simulator_config"]  # fixtures used below

CANARY = "rc-canary-fastapi-5e1d0c7b"
SIM = {"time_scale": 0.1, "concurrency": 2}


@pytest.fixture
def service(runcomfy_simulator: ThreadedSimulator) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`uvicorn --app-dir examples fastapi_backend:app` on 127.0.0.1, on the simulator."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    env |= {"RUNCOMFY_API_KEY": CANARY, "RUNCOMFY_BASE_URL": runcomfy_simulator.url}
    app = ["--app-dir", str(EXAMPLES), "fastapi_backend:app"]
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", *app, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def refusal(inputs: dict[str, object]) -> str:
    """The SDK's own message for inputs the model's schema refuses."""
    with pytest.raises(rc.InvalidInputError) as refused:
        rc.models.Wan22TextToImage.from_dict(inputs)
    return str(refused.value)


@pytest.mark.parametrize("runcomfy_simulator", [SIM], indirect=True)
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_fastapi_backend_serves_jobs_and_events_and_cancels_its_queue_on_shutdown(
    runcomfy_simulator: ThreadedSimulator,
    service: tuple[str, subprocess.Popen[str]],
    stop: signal.Signals,
) -> None:
    base, process = service
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        request_id = await first_generate(http, base, process)
        assert [job.request_id for job in runcomfy_simulator.ledger.jobs] == [request_id]

        for bad in ({"prompt": 5}, {}, {"prompt": "a fox", "colour": 1}):
            async with http.post(f"{base}/generate", json=bad) as r:
                assert r.status == 422
                assert (await r.json())["detail"] == refusal(bad)  # the SDK's message
        assert len(runcomfy_simulator.ledger.jobs) == 1  # nothing refused was sent

        async with http.get(f"{base}/jobs/{request_id}/events") as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            *changes, (last, result) = server_sent_events(await r.text())
        assert (last, result["state"]) == ("result", "succeeded")
        assert changes[-1] == ("state", {"state": "succeeded"})  # the change that ended it
        assert len({json.dumps(data) for _, data in changes}) == len(changes)  # changes only
        async with http.get(result["urls"][0]) as r:
            assert (await r.read()).startswith(PNG)
        async with http.get(f"{base}/jobs/{request_id}") as r:
            assert await r.json() == {"state": "succeeded", "urls": result["urls"]}
        for path in ("jobs/no-such-job", "jobs/no-such-job/events"):  # unknown ids: 404
            async with http.get(f"{base}/{path}") as r:
                assert (r.status, await r.json()) == (404, {"detail": "no such job"})

        queued = []  # the simulated account runs 2 at a time: most of these wait
        for n in range(12):
            async with http.post(f"{base}/generate", json={"prompt": f"fox {n}"}) as r:
                queued.append((await r.json())["request_id"])

    process.send_signal(stop)
    stdout, stderr = process.communicate(timeout=30)
    assert "Application shutdown complete." in stderr  # the lifespan ran to its end
    assert process.returncode in (0, -stop), stderr  # uvicorn re-raises the signal it caught
    assert CANARY not in stdout + stderr
    found = re.search(r"^shutdown: cancelled (\d+) queued: (.*)$", stdout, re.MULTILINE)
    assert found, stdout
    cancelled = found[2].split()
    assert int(found[1]) == len(cancelled) >= 1
    states = {job.request_id: str(job.state) for job in runcomfy_simulator.ledger.jobs}
    assert {states[rid] for rid in cancelled} == {"cancelled"}
    assert "in_queue" not in states.values()  # everything it had queued was cancelled
    assert len(states) == 13  # one job per accepted POST, none resent
