"""A batch never waits on work that has died: whatever is raised inside its pipeline, the
input gets an item with an SDK error and the batch ends (issue 11, points 3 and 4)."""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import runcomfy_async as rc
from runcomfy_async import _journal
from runcomfy_async.simulator import FaultRule, ModelProfile, Simulator, SimulatorConfig

from ._support import WAN

QUICK = rc.PollPolicy(first_interval=0.02, min_interval=0.01, max_interval=0.1)
LIMIT = 30.0  # seconds: far above what each batch needs; a hang fails the test, not the suite


def config(**kwargs: Any) -> SimulatorConfig:
    kwargs.setdefault("models", {WAN: ModelProfile(run_time=(0.02, 0.05))})
    return SimulatorConfig(queue_delay=0.0, **kwargs)


def client_for(sim: Simulator) -> rc.Client:
    retry = rc.RetryPolicy(base_backoff=0.01, max_backoff=0.05)
    return rc.Client("k", base_url=sim.url, poll=QUICK, retry=retry, timeout=5.0)


async def drain(batch: rc.Batch) -> list[rc.Item]:
    with anyio.fail_after(LIMIT):
        return [item async for item in batch]


def pairs(n: int, model: str = WAN) -> list[tuple[str, dict[str, Any]]]:
    return [(model, {"prompt": f"p{i}"}) for i in range(n)]


async def test_a_submit_answered_with_a_300_character_request_id_ends_as_an_error_item(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    long_id = "r" * 300
    fault = FaultRule(
        action="status", endpoint="submit", status_code=200, body={"request_id": long_id}, times=1
    )
    journal = tmp_path / "j.sqlite"
    async with Simulator(config(faults=[fault])) as sim, client_for(sim) as client:
        items = await drain(client.map(pairs(3), journal=journal, max_in_flight=1))
        again = await drain(client.map(pairs(3), journal=journal))  # not resent
        submits = sim.ledger.calls["submit"]
    broken = [item for item in items if not item.ok]
    assert len(items) == 3
    assert len(broken) == 1
    assert isinstance(broken[0].error, rc.RunComfyError)
    assert broken[0].request_id == long_id
    assert "not resubmitted" in str(broken[0].error)
    assert submits == 3
    assert [item.ok for item in sorted(again, key=lambda i: i.index)] == [
        item.ok for item in sorted(items, key=lambda i: i.index)
    ]
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and "input" in r.message]
    assert len(logged) == 2  # once per run


@pytest.mark.parametrize("name", ['say "hi"', "back\\slash", "new\nline"])
async def test_a_catalog_schema_with_an_odd_property_name_ends_as_an_error_item(
    name: str,
) -> None:
    model = "acme/odd-schema"
    schema = {"type": "object", "properties": {name: {"type": "string"}, "prompt": {}}}
    models = {model: ModelProfile(run_time=(0.02, 0.05), input_schema=schema)}
    async with Simulator(config(models=models)) as sim, client_for(sim) as client:
        items = await drain(client.map(pairs(2, model)))
        submits = sim.ledger.calls["submit"]
    assert len(items) == 2
    for item in items:
        assert item.ok or isinstance(item.error, rc.RunComfyError)
    assert submits == sum(item.request_id is not None for item in items)


@contextlib.asynccontextmanager
async def deep_output_server(depth: int) -> AsyncIterator[str]:
    """A RunComfy stand-in whose results nest `depth` levels deep (bytes made by hand: the
    simulator's own json.dumps cannot write them either)."""
    from aiohttp import web

    count = itertools.count()

    async def submit(request: web.Request) -> web.Response:
        return web.json_response({"request_id": f"deep-{next(count)}"})

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"request_id": request.match_info["rid"], "status": "completed"})

    async def result(request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        deep = '{"a":' * depth + '"https://example.com/deep.png"' + "}" * depth
        text = f'{{"request_id":"{rid}","status":"succeeded","output":{{"deep":{deep}}}}}'
        return web.Response(body=text.encode(), content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/models/{model:.+}", submit)
    app.router.add_get("/v1/requests/{rid}/status", status)
    app.router.add_get("/v1/requests/{rid}/result", result)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_journal_write_that_raises_ends_as_an_error_item_and_the_batch_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # What an output nested ~950 levels deep did to the journal's json.dumps.
    def finished(*args: Any, **kwargs: Any) -> None:
        raise RecursionError("maximum recursion depth exceeded while encoding a JSON object")

    monkeypatch.setattr(_journal.Journal, "finished", finished)
    journal = tmp_path / "j.sqlite"
    async with Simulator(config()) as sim, client_for(sim) as client:
        items = await drain(client.map(pairs(3), journal=journal))
        jobs = {job.request_id for job in sim.ledger.jobs}
    assert len(items) == 3
    for item in items:
        assert isinstance(item.error, rc.RunComfyError)
        assert "RecursionError" in str(item.error)
        assert item.request_id in jobs
    assert [row.state for row in rc.read_journal(journal)] == ["tracked"] * 3  # re-attachable
    # Each record about such an input names its request and model as structured `extra`.
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and "input" in r.message]
    assert logged
    assert {r.request_id for r in logged} == {item.request_id for item in items}  # type: ignore[attr-defined]
    assert {r.model_id for r in logged} == {WAN}  # type: ignore[attr-defined]


async def test_an_output_nested_900_levels_deep_is_recorded_and_resumed(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    async with deep_output_server(900) as url:
        client = rc.Client("k", base_url=url, poll=QUICK, validate=False, timeout=5.0)
        async with client:
            items = await drain(client.map(pairs(2), journal=journal))
            again = await drain(client.map(pairs(2), journal=journal))
    assert all(item.ok for item in items)
    assert all(item.ok and item.resumed for item in again)
    assert {i.request_id for i in again} == {i.request_id for i in items}


async def test_a_batch_timeout_bounds_next_even_when_an_input_never_settles() -> None:
    async with Simulator(config()) as sim, client_for(sim) as client:

        async def forever(*args: Any, **kwargs: Any) -> None:
            await anyio.sleep_forever()

        client._runtime.checks.check = forever  # type: ignore[method-assign]  # a check that hangs
        batch = client.map(pairs(2), timeout=0.3)
        with anyio.fail_after(LIMIT):
            items = [item async for item in batch]
        assert sim.ledger.calls["submit"] == 0
    assert len(items) == 2
    assert all("timeout" in str(item.error) for item in items)


async def test_an_input_whose_timeout_item_was_made_is_not_submitted_afterwards(
    tmp_path: Path,
) -> None:
    # A claim or a check that returns after the batch timeout gave the input its item (a
    # shared journal waiting on another worker, a slow pre-flight) must not submit it then.
    release = anyio.Event()
    journal = tmp_path / "j.sqlite"
    async with Simulator(config()) as sim, client_for(sim) as client:
        check = client._runtime.checks.check

        async def late(*args: Any, **kwargs: Any) -> Any:
            await release.wait()
            return await check(*args, **kwargs)

        client._runtime.checks.check = late  # type: ignore[method-assign]
        batch = client.map(pairs(2), timeout=0.3, journal=journal)
        with anyio.fail_after(LIMIT):
            items = [item async for item in batch]
            release.set()  # the checks return now, after their items were made
            for _ in range(50):
                await anyio.sleep(0.02)
        assert sim.ledger.calls["submit"] == 0
    assert all("timeout" in str(item.error) for item in items)
    assert [row.state for row in rc.read_journal(journal)] == ["rejected"] * 2  # sent anew


class Broken(Exception):
    pass


def raising_inputs(n: int) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from pairs(n)
    raise Broken("line 4 of the caller's file is unreadable")


async def araising_inputs(n: int) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    for value in pairs(n):
        yield value
    raise Broken("the caller's async source failed")


@pytest.mark.parametrize("source", [raising_inputs, araising_inputs])
async def test_an_input_iterable_that_raises_tracks_what_was_sent_then_raises_its_error(
    source: Any, tmp_path: Path
) -> None:
    slow = {WAN: ModelProfile(run_time=(0.3, 0.4))}
    journal = tmp_path / "j.sqlite"
    async with Simulator(config(models=slow)) as sim, client_for(sim) as client:
        items: list[rc.Item] = []

        async def consume() -> None:
            async for item in client.map(source(3), journal=journal):
                items.append(item)

        with anyio.fail_after(LIMIT), pytest.raises(Broken, match="caller"):
            await consume()
        jobs = sim.ledger.jobs
        cancels = sim.ledger.calls["cancel"]
    assert sorted(item.index for item in items) == [0, 1, 2]
    assert all(item.ok for item in items)  # tracked to the end, not cancelled or unknown
    assert len(jobs) == 3
    assert {job.state.value for job in jobs} == {"succeeded"}
    assert cancels == 0
    assert [row.state for row in rc.read_journal(journal)] == ["succeeded"] * 3
