"""SyncClient against the simulator, from plain code: every blocking call, a running event
loop in the calling thread (as in Jupyter), many threads, a clean close, and Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import runcomfy_async as rc
from runcomfy_async import models
from runcomfy_async.testing import ThreadedSimulator, runcomfy_simulator, runcomfy_simulator_config

__all__ = ["runcomfy_simulator", "runcomfy_simulator_config"]  # fixtures used below

WAN = "wan-ai/wan-2-2/text-to-image"
PNG = b"\x89PNG\r\n\x1a\n"


def portal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "runcomfy-sync-client"]


def test_every_blocking_call_works_from_plain_code(
    runcomfy_simulator: ThreadedSimulator, tmp_path: Path
) -> None:
    with rc.SyncClient("k", base_url=runcomfy_simulator.url) as client:
        info = client.model_info(WAN)
        assert info.model_id == WAN
        assert [i.model_id for i in client.models(search="wan-2-2")] == [WAN]
        request = client.submit(models.Wan22TextToImage(prompt="a red fox"))
        assert client.status(request).request_id == request.request_id
        done = client.wait(request, timeout=60)
        assert done.state is rc.State.SUCCEEDED
        assert client.result(request).output == done.output
        files = client.download(done, tmp_path)
        assert [f.path.read_bytes()[:8] for f in files] == [PNG]
        assert client.run(WAN, {"prompt": "a blue whale"}).state is rc.State.SUCCEEDED
        states = list(client.watch(client.submit(WAN, {"prompt": "an owl"})))
        assert states[-1] is rc.State.SUCCEEDED
        handles = [client.submit(WAN, {"prompt": f"p{n}"}) for n in range(3)]
        finished = {r.request_id for r in client.as_completed(handles)}
        assert finished == {h.request_id for h in handles}
        items = list(client.map([models.Wan22TextToImage(prompt=f"m{n}") for n in range(4)]))
        assert sorted(item.index for item in items if item.ok) == [0, 1, 2, 3]
        outcome = client.cancel(request)
        assert outcome.request_id == request.request_id
        assert not outcome.cancelled  # finished already
        assert [o.request_id for o in client.cancel_many(handles)] == [
            h.request_id for h in handles
        ]
    assert sorted(runcomfy_simulator.ledger.jobs_per_input().values()) == [1] * 10
    assert portal_threads() == []


def test_a_refused_input_raises_the_sdk_error_in_the_calling_thread(
    runcomfy_simulator: ThreadedSimulator,
) -> None:
    with (
        rc.SyncClient("k", base_url=runcomfy_simulator.url) as client,
        pytest.raises(rc.InvalidInputError, match="prompt"),
    ):
        client.run(WAN, {"prompt": 7})
    assert runcomfy_simulator.ledger.jobs == []


def test_it_works_inside_a_running_event_loop_and_from_a_thread_beside_it(
    runcomfy_simulator: ThreadedSimulator,
) -> None:
    async def notebook_cell() -> tuple[rc.State, rc.State]:
        with rc.SyncClient("k", base_url=runcomfy_simulator.url) as client:
            inside = client.run(WAN, {"prompt": "inside a coroutine"}).state  # loop blocked
            beside = await asyncio.to_thread(client.run, WAN, {"prompt": "from a thread"})
            return inside, beside.state

    assert asyncio.run(notebook_cell()) == (rc.State.SUCCEEDED, rc.State.SUCCEEDED)
    assert sorted(runcomfy_simulator.ledger.jobs_per_input().values()) == [1, 1]


def test_many_threads_share_one_client(runcomfy_simulator: ThreadedSimulator) -> None:
    with (
        rc.SyncClient("k", base_url=runcomfy_simulator.url) as client,
        ThreadPoolExecutor(8) as pool,
    ):
        results = list(pool.map(lambda n: client.run(WAN, {"prompt": f"t{n}"}), range(16)))
    assert [r.state for r in results] == [rc.State.SUCCEEDED] * 16
    assert len({r.request_id for r in results}) == 16
    assert sorted(runcomfy_simulator.ledger.jobs_per_input().values()) == [1] * 16


def test_it_closes_cleanly_and_refuses_calls_after(runcomfy_simulator: ThreadedSimulator) -> None:
    client = rc.SyncClient("k", base_url=runcomfy_simulator.url)
    assert len(portal_threads()) == 1
    client.run(WAN, {"prompt": "one"})
    client.close()
    client.close()
    assert portal_threads() == []
    with pytest.raises(rc.RunComfyError, match="closed"):
        client.status("abc")


def test_no_key_raises_configuration_error_and_leaves_no_thread() -> None:
    with pytest.raises(rc.ConfigurationError):
        rc.SyncClient()
    assert portal_threads() == []


@pytest.mark.parametrize(
    "runcomfy_simulator", [{"time_scale": 0.2, "concurrency": 1}], indirect=True
)
def test_leaving_a_map_early_cancels_what_it_queued(runcomfy_simulator: ThreadedSimulator) -> None:
    with rc.SyncClient("k", base_url=runcomfy_simulator.url) as client:
        with client.map([(WAN, {"prompt": f"m{n}"}) for n in range(4)]) as batch:
            first = next(batch)
        assert first.ok
        assert len(batch.unfinished) <= 1  # the one that had started, if any
    states = sorted(str(job.state) for job in runcomfy_simulator.ledger.jobs)
    assert "in_queue" not in states
    assert states.count("cancelled") >= 2


SCRIPT = """
import sys
import runcomfy_async as rc

with rc.SyncClient("k", base_url=sys.argv[1]) as client:
    first = client.submit("{wan}", {{"prompt": "runs"}})  # takes the account's one slot
    if sys.argv[2] == "wait":
        queued = client.submit("{wan}", {{"prompt": "queued"}})
        print(queued.request_id, flush=True)
        client.wait(queued)
    else:
        prompts = [("{wan}", {{"prompt": f"m{{n}}"}}) for n in range(3)]
        seen = set()
        def on_change(change):
            if change.state is rc.State.IN_QUEUE and change.index not in seen:
                seen.add(change.index)
                if len(seen) == 3:
                    print("waiting", flush=True)
        for item in client.map(prompts, on_change=on_change):
            print("item", item.index, flush=True)
"""


def polled(simulator: ThreadedSimulator, request_id: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(call.subject == request_id for call in simulator.ledger.call_log):
            return
        time.sleep(0.05)
    raise AssertionError(f"{request_id} was never polled")


@pytest.mark.parametrize(
    "runcomfy_simulator", [{"time_scale": 1.0, "concurrency": 1}], indirect=True
)
@pytest.mark.parametrize("call", ["wait", "map"])
def test_ctrl_c_cancels_the_queued_requests(
    runcomfy_simulator: ThreadedSimulator, call: str
) -> None:
    script = textwrap.dedent(SCRIPT.format(wan=WAN))
    process = subprocess.Popen(
        [sys.executable, "-c", script, runcomfy_simulator.url, call],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if call == "wait":  # Ctrl-C once the wait polls the queued request
            polled(runcomfy_simulator, line)
        else:
            assert line == "waiting"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "KeyboardInterrupt" in err
    assert "item" not in out
    states = {job.inputs["prompt"]: job.state for job in runcomfy_simulator.ledger.jobs}
    queued = ["queued"] if call == "wait" else ["m0", "m1", "m2"]
    assert {p: str(states[p]) for p in queued} == {p: "cancelled" for p in queued}
    assert str(states["runs"]) == "in_progress"  # running: not cancellable, left alone
