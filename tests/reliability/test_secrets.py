"""A canary API key through a representative run, at DEBUG: it must show up nowhere.

Nowhere means: no log record of any logger, no exception text or chain, no repr of the
client, requests, batches, items or errors, no byte of any file written (journal, manifest,
downloads), no CLI output, and no call to a host other than the API. Output URLs point at a
decoy file host that records the headers it receives: it must never see an Authorization.
"""

from __future__ import annotations

import asyncio
import http.server
import logging
import os
import subprocess
import sys
import threading
import traceback
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import runcomfy_async as rc
from runcomfy_async import _cli
from tests.reliability._support import WAN, SimProcess

CANARY = "rc-reliability-canary-5e0c7a9d3f1b4e28"


class Decoy:
    """A file host on 127.0.0.1 that records every call's headers and serves the simulator's
    output files (fetched from it without credentials)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.upstream = ""
        decoy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                decoy.calls.append((self.path, dict(self.headers.items())))
                try:
                    with urllib.request.urlopen(decoy.upstream + self.path, timeout=10) as got:
                        body, kind = got.read(), got.headers.get("Content-Type", "")
                    status = 200
                except urllib.error.HTTPError as exc:
                    body, kind, status = exc.read(), "application/json", exc.code
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class World:
    decoy: Decoy
    sim: SimProcess  # accepts only the canary
    outsider: SimProcess  # accepts another key: the canary is refused there


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    decoy = Decoy()
    options = ["--time-scale", "0.05", "--queue-delay", "0", "--failure-rate", "0.2"]
    sim = SimProcess(*options, "--files-base-url", decoy.url, key=CANARY)
    decoy.upstream = sim.url
    outsider = SimProcess(*options, key="someone-elses-key")
    try:
        yield World(decoy, sim, outsider)
    finally:
        for process in (sim, outsider):
            process.stop()
        decoy.stop()


@dataclass
class Seen:
    """Every text a user or an operator could come across."""

    texts: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def add(self, *values: object) -> None:
        for value in values:
            self.texts += [repr(value), str(value)]
            if isinstance(value, BaseException):
                self.error(value)

    def error(self, exc: BaseException) -> None:
        """The formatted exception with its whole chain, and every link's repr and vars."""
        self.errors.append(exc)
        self.texts.append("".join(traceback.format_exception(exc)))
        link: BaseException | None = exc
        while link is not None:
            self.texts += [repr(link), str(link), repr(vars(link))]
            link = link.__cause__ or link.__context__

    def leaks(self) -> list[str]:
        return [text for text in self.texts if CANARY in text]


def log_texts(records: Iterable[logging.LogRecord]) -> list[str]:
    """Each record as formatted, plus its raw arguments and exception."""
    formatter = logging.Formatter()
    return [formatter.format(r) + repr(r.args) + repr(r.__dict__) for r in records]


def file_leaks(root: Path, *, skip: Path) -> tuple[int, list[Path]]:
    """How many files there are under `root` (but `skip`), and which hold the canary."""
    files = [p for p in root.rglob("*") if p.is_file() and p != skip]
    return len(files), [p for p in files if CANARY.encode() in p.read_bytes()]


# ------------------------------------------------------------------ the client


async def client_scenario(world: World, folder: Path, seen: Seen) -> None:
    sim = world.sim
    poll = rc.PollPolicy(first_interval=0.02, min_interval=0.01, max_interval=0.1)
    retry = rc.RetryPolicy(max_attempts=3, base_backoff=0.01, max_backoff=0.05)

    async def faults(*rules: dict[str, Any]) -> None:
        await asyncio.to_thread(sim.clear_faults)
        if rules:
            await asyncio.to_thread(sim.add_faults, *rules)

    async def expect_error(call: Any) -> None:
        try:
            seen.add(await call)
        except rc.RunComfyError as exc:
            seen.add(exc)
        else:
            raise AssertionError("expected an error")

    client = rc.Client(CANARY, base_url=sim.url, poll=poll, retry=retry, timeout=5.0)
    seen.add(client)
    async with client:
        await faults({"action": "reset_after_read", "endpoint": "submit", "times": 1})
        await expect_error(client.submit(WAN, {"prompt": "unknown outcome"}))
        await faults(
            {"action": "status", "endpoint": "status", "status_code": 503, "times": 2},
            {"action": "truncate", "endpoint": "result", "times": 1},
            {"action": "status", "endpoint": "result", "status_code": 429, "retry_after": 0,
             "times": 1},
        )  # fmt: skip
        request = await client.submit(WAN, {"prompt": "a fox"})
        seen.add(request, await client.status(request))
        try:
            result = await request.wait(timeout=20)
        except rc.RequestFailedError as exc:  # the simulator fails 20 % of runs
            seen.add(exc)
        else:
            seen.add(result, await client.download(result, folder / "single"))
        await expect_error(client.status("no-such-request"))
        await expect_error(client.result("no-such-request"))
        await expect_error(client.cancel("no-such-request"))
        slow = await client.submit("runwayml/runway-gen-3-alpha/turbo/image-to-video", {
            "promptText": "waves", "promptImage": "https://example.com/cat.png"})  # fmt: skip
        await expect_error(client.wait(slow, timeout=0.01, cancel_on_timeout=True))
        seen.add(await client.cancel(slow))
        await expect_error(client.submit(WAN, {"prompt": "x" * 801}))  # invalid input
        await expect_error(client.model_info("acme/no-such-model"))  # with did-you-mean
        await expect_error(client.submit("acme/no-such-model", {"a": 1}, validate=False))

        await faults(
            {"action": "status", "endpoint": "submit", "status_code": 503, "probability": 0.1},
            {"action": "reset_after_read", "endpoint": "submit", "probability": 0.1},
            {"action": "status", "endpoint": "status", "status_code": 500, "probability": 0.2},
            {"action": "reset_before_read", "endpoint": "status", "probability": 0.1},
            {"action": "truncate", "endpoint": "files", "probability": 0.2},
        )
        inputs = [(WAN, {"prompt": f"batch {i}"}) for i in range(24)]
        batch = client.map(
            inputs, journal=folder / "journal.sqlite", download_to=folder / "out", max_in_flight=8
        )
        async for item in batch:
            seen.add(item, item.result, *item.files)
            if item.error is not None:
                seen.add(item.error)
        seen.add(batch, batch.progress)
        await faults()

    async with rc.Client(CANARY, base_url=world.outsider.url, retry=retry) as refused:
        await expect_error(refused.submit(WAN, {"prompt": "wrong account"}))
        await expect_error(refused.status("anything"))


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "asyncio-debug"])
def test_the_canary_key_leaks_from_no_client_call_log_error_repr_or_file(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture, debug: bool
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: every logger, aiohttp's and asyncio's
    seen = Seen()
    decoy_calls = len(world.decoy.calls)
    asyncio.run(client_scenario(world, tmp_path, seen), debug=debug)

    assert len(caplog.records) > 20  # DEBUG logging really was on
    assert [t for t in log_texts(caplog.records) if CANARY in t] == []
    kinds = {type(exc) for exc in seen.errors}
    assert {rc.SubmissionUnknownError, rc.NotFoundError, rc.WaitTimeoutError} <= kinds
    assert {rc.AuthenticationError, rc.InvalidInputError, rc.BadRequestError} <= kinds
    assert rc.UnknownModelError in kinds
    assert seen.leaks() == []
    count, leaking = file_leaks(tmp_path, skip=tmp_path / "none")
    assert count >= 10  # the journal and the downloaded files
    assert leaking == []
    assert_no_credential_left_for_the_file_host(world, decoy_calls)


def assert_no_credential_left_for_the_file_host(world: World, since: int) -> None:
    calls = world.decoy.calls[since:]
    assert calls  # outputs were fetched from the decoy, not the API host
    for _, headers in calls:
        assert {name.lower() for name in headers} & {"authorization", "cookie"} == set()
        assert not any(CANARY in value for value in headers.values())
    ledger = world.sim.ledger()
    api = [c for c in ledger["call_log"] if c["endpoint"] != "files"]
    assert api
    assert all(c["authorized"] for c in api)  # the canary did go to the API, and only there
    assert not any(c["authorized"] for c in ledger["call_log"] if c["endpoint"] == "files")


# ------------------------------------------------------------------ the command line


def test_the_canary_key_leaks_from_no_cli_output_journal_manifest_or_file(
    world: World,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    key = tmp_path / "key.txt"
    key.write_text(CANARY + "\n", encoding="utf-8")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(16)), encoding="utf-8")
    decoy_calls = len(world.decoy.calls)
    common = ["--base-url", world.sim.url, "--api-key-file", str(key)]
    codes: list[int] = []

    def cli(*args: str, url: str | None = None) -> None:
        command = list(args) + (common if url is None else ["--base-url", url, *common[2:]])
        codes.append(_cli.main(command))

    world.sim.clear_faults()
    cli("status", "no-such-request")
    cli("result", "no-such-request", "--json")
    cli("cancel", "no-such-request")
    cli("run", WAN, "-i", "prompt=too slow", "--timeout", "0.01")
    cli("run", WAN, "-i", "prompt=a fox", "--out", str(tmp_path / "run"), "--json")
    cli("submit", WAN, "-i", "prompt=refused", url=world.outsider.url)
    cli("models", "info", "acme/no-such-model")
    world.sim.add_faults({"action": "reset_after_read", "endpoint": "submit", "times": 1})
    cli("submit", WAN, "-i", "prompt=unknown outcome")
    world.sim.add_faults(
        {"action": "reset_after_read", "endpoint": "submit", "probability": 0.15},
        {"action": "status", "endpoint": "status", "status_code": 502, "probability": 0.2},
    )
    cli("batch", WAN, str(prompts), "--out", str(tmp_path / "batch"), "--max-in-flight", "4")
    cli("batch", WAN, str(prompts), "--out", str(tmp_path / "batch"))  # the resume
    world.sim.clear_faults()

    out, err = capsys.readouterr()
    assert len([code for code in codes if code != 0]) >= 6  # failing commands, each reported
    assert out
    assert err
    assert CANARY not in out + err
    assert [t for t in log_texts(caplog.records) if CANARY in t] == []
    assert (tmp_path / "batch" / "manifest.jsonl").exists()
    assert (tmp_path / "batch" / "journal.sqlite").exists()
    count, leaking = file_leaks(tmp_path, skip=key)
    assert count >= 10
    assert leaking == []
    assert_no_credential_left_for_the_file_host(world, decoy_calls)


DEBUG_RUN = """
import logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
from runcomfy_async._cli import main
codes = [main(sys.argv[1:]), main(["status", "no-such-request", *sys.argv[-4:]])]
print("exit statuses", codes)
"""


def test_under_pythonasynciodebug_a_failing_batch_shows_no_canary(
    world: World, tmp_path: Path
) -> None:
    key = tmp_path / "key.txt"
    key.write_text(CANARY, encoding="utf-8")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"debug {i}\n" for i in range(8)), encoding="utf-8")
    world.sim.add_faults({"action": "reset_after_read", "endpoint": "submit", "probability": 0.3})
    try:
        args = ["batch", WAN, str(prompts), "--out", str(tmp_path / "out")]
        args += ["--base-url", world.sim.url, "--api-key-file", str(key)]
        env = {**os.environ, "PYTHONASYNCIODEBUG": "1", "PYTHONDEVMODE": "1"}
        env["PYTHONPATH"] = str(Path(__file__).parents[2])
        done = subprocess.run(
            [sys.executable, "-c", DEBUG_RUN, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    finally:
        world.sim.clear_faults()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exit statuses" in done.stdout
    assert "DEBUG:asyncio:Using selector" in done.stderr  # debug mode and DEBUG logs were on
    assert "DEBUG:runcomfy_async" in done.stderr
    assert CANARY not in done.stdout + done.stderr
    count, leaking = file_leaks(tmp_path, skip=key)
    assert count >= 3
    assert leaking == []
