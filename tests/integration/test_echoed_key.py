"""Issue 11, points 5 and 6: a key the server echoes is scrubbed where server text enters the
SDK, and no error's frame locals (whole __cause__/__context__ chain) hold the key."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import sqlite3
import traceback
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import runcomfy_async as rc
from runcomfy_async import models
from runcomfy_async.simulator import FaultRule, ModelProfile, Simulator, SimulatorConfig

KEY = "rk-echo-canary-4b7e19d2a0c35f68"
WAN = models.Wan22TextToImage.model_id
QUICK = rc.PollPolicy(first_interval=0.02, min_interval=0.01, max_interval=0.1)
ECHOES = [
    f"rejected credentials Bearer {KEY}",
    f"token={quote(KEY, safe='')}",
    base64.b64encode(f"Bearer {KEY}".encode()).decode(),
    base64.urlsafe_b64encode(f"{KEY}:".encode()).decode(),
    base64.b64encode(f"xy{KEY}".encode()).decode(),  # the key at another base64 alignment
    json.dumps({"auth": KEY}),
    KEY.upper(),
    KEY.encode().hex(),
]
TRACES = (KEY, base64.b64encode(KEY.encode()).decode()[:20], KEY.upper(), KEY.encode().hex())


def clean(text: str) -> bool:
    return not any(trace in text for trace in TRACES)


def chain_text(exc: BaseException) -> str:
    """Everything an error tracker recording locals would keep: every frame's locals over
    the whole __cause__/__context__ chain, and str/repr/vars of every exception in it."""
    parts: list[str] = []
    te: traceback.TracebackException | None
    te = traceback.TracebackException.from_exception(exc, capture_locals=True)
    pending = [te]
    while pending:  # every frame's locals, this test's own frames (its fixtures) left out
        te = pending.pop()
        if te is None:
            continue
        parts += [str(te)]
        for frame in te.stack:
            if frame.filename != __file__:
                parts += [repr(frame.locals)]
        pending += [te.__cause__, te.__context__]
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        parts += [str(e), repr(e), repr(vars(e)) if hasattr(e, "__dict__") else ""]
        tb = e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename != __file__:
                parts += [repr(v) for v in tb.tb_frame.f_locals.values()]
            tb = tb.tb_next
        todo += [e.__cause__, e.__context__]
    return "\n".join(parts)


def config(*faults: FaultRule) -> SimulatorConfig:
    return SimulatorConfig(
        models={WAN: ModelProfile(run_time=(0.05, 0.1))}, queue_delay=0.0, faults=faults
    )


def client_for(url: str, **kwargs: Any) -> rc.Client:
    kwargs.setdefault("retry", rc.RetryPolicy(max_attempts=2, base_backoff=0.01, max_backoff=0.02))
    return rc.Client(KEY, base_url=url, poll=QUICK, timeout=kwargs.pop("timeout", 5.0), **kwargs)


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.mark.parametrize("echo", ECHOES)
async def test_a_key_echoed_in_a_401_body_is_in_no_str_repr_body_or_log(
    echo: str, debug_log: pytest.LogCaptureFixture
) -> None:
    fault = FaultRule(action="status", status_code=401, body={"error_message": echo})
    async with Simulator(config(fault)) as sim, client_for(sim.url) as client:
        with pytest.raises(rc.AuthenticationError) as caught:
            await client.submit(models.Wan22TextToImage(prompt="a fox"))
    error = caught.value
    assert "********" in error.body
    for text in (str(error), repr(error), error.body, error.message, debug_log.text):
        assert clean(text), text
    assert clean(chain_text(error))


async def test_a_key_echoed_in_a_200_error_body_and_a_result_error_is_scrubbed(
    debug_log: pytest.LogCaptureFixture,
) -> None:
    body = {"error_code": 400004, "error_message": f"bad token Bearer {KEY}"}
    fault = FaultRule(action="status", endpoint="submit", status_code=200, body=body, times=1)
    async with Simulator(config(fault)) as sim, client_for(sim.url) as client:
        with pytest.raises(rc.AuthenticationError) as caught:
            await client.submit(models.Wan22TextToImage(prompt="a fox"))
        assert clean(str(caught.value) + repr(caught.value) + caught.value.body)
        request = await client.submit(models.Wan22TextToImage(prompt="a fox"))
        await client.wait(request)
        answer = {"request_id": request.request_id, "status": "failed", "error": f"echo {KEY}"}
        sim.faults.add(FaultRule(action="status", endpoint="result", status_code=200, body=answer))
        result = await client.result(request)
    assert result.state is rc.State.FAILED
    assert result.error == "echo ********"
    assert clean(debug_log.text)


async def test_a_key_echoed_in_the_reason_phrase_is_scrubbed() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 401 Bearer {KEY}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, client_for(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(rc.AuthenticationError) as caught:
            await client.status("r1")
    assert "HTTP 401 Bearer ********" in str(caught.value)
    assert clean(chain_text(caught.value))


async def test_an_echoed_key_reaches_neither_the_journal_nor_the_items(tmp_path: Path) -> None:
    journal = tmp_path / "batch.sqlite"
    faults = [
        FaultRule(
            action="status",
            endpoint="submit",
            status_code=403,
            times=1,
            body={"error_message": f"key {KEY} may not use this model"},
        ),
        FaultRule(
            action="status_after_read",
            endpoint="submit",
            status_code=520,
            times=1,
            body={"error_message": f"origin said Bearer {KEY}"},
        ),
    ]
    inputs = [models.Wan22TextToImage(prompt=f"p{i}") for i in range(4)]
    async with Simulator(config(*faults)) as sim, client_for(sim.url) as client:
        items = [item async for item in client.map(inputs, journal=journal)]
    failed = [item for item in items if not item.ok]
    assert len(failed) == 2
    assert all(clean(str(item.error) + repr(item.error) + repr(item)) for item in failed)
    with sqlite3.connect(journal) as db:
        rows = repr(list(db.execute("SELECT * FROM items")))
    assert "********" in rows
    assert clean(rows)
    assert clean(journal.read_bytes().decode("utf-8", "replace"))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A server that reads the call and never answers (the client times out)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(30)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_no_error_the_client_raises_holds_the_key_in_its_frames(silent_server: str) -> None:
    """Connect refused, timeout, reset, 401, 5xx and an unknown submit: the whole chain of
    each, with every frame's locals as Sentry-like trackers record them, has no key."""
    errors: list[BaseException] = []
    async with client_for(f"http://127.0.0.1:{_closed_port()}") as client:
        with pytest.raises(rc.TransportError) as refused:
            await client.status("r1")
        errors.append(refused.value)
    async with client_for(silent_server, timeout=0.3) as client:
        with pytest.raises(rc.TransportTimeoutError) as timed_out:
            await client.status("r1")
        errors.append(timed_out.value)
        with pytest.raises(rc.SubmissionUnknownError) as unknown:
            await client.submit(models.Wan22TextToImage(prompt="a fox"))
        errors.append(unknown.value)
    faults = [
        FaultRule(action="reset_after_read", endpoint="status"),
        FaultRule(action="status", endpoint="result", status_code=401, times=1),
        FaultRule(action="status", endpoint="cancel", status_code=503),
        FaultRule(action="status_after_read", endpoint="submit", status_code=502, times=1),
    ]
    async with Simulator(config(*faults)) as sim, client_for(sim.url) as client:
        with pytest.raises(rc.TransportError) as reset:
            await client.status("r1")
        errors.append(reset.value)
        for call, kind in (
            (client.result, rc.AuthenticationError),
            (client.cancel, rc.ServerError),
        ):
            with pytest.raises(kind) as caught:
                await call("r1")
            errors.append(caught.value)
        with pytest.raises(rc.SubmissionUnknownError) as paid:
            await client.submit(models.Wan22TextToImage(prompt="a fox"))
        errors.append(paid.value)
    for error in errors:
        assert clean(chain_text(error)), type(error)
