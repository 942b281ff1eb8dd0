"""Each example runs as a user would run it (a subprocess, no key, the simulator) and does
what it says: the output it prints, the files it writes, the service it serves."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import anyio
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PNG = b"\x89PNG\r\n\x1a\n"


def child_env(time_scale: float) -> dict[str, str]:
    """The environment of an example: no RUNCOMFY_* settings (so no key), a fast simulator."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("RUNCOMFY_")}
    env["RUNCOMFY_EXAMPLE_TIME_SCALE"] = str(time_scale)
    return env


def run_example(
    name: str, *args: str, cwd: Path, time_scale: float = 0.01
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=child_env(time_scale),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done


def test_every_example_is_short() -> None:
    for path in EXAMPLES.glob("*.py"):
        lines = path.read_text(encoding="utf-8").count("\n")
        assert lines <= 60, f"{path.name} has {lines} lines"


def test_quickstart_prints_the_urls_and_downloads_an_image_and_a_video(tmp_path: Path) -> None:
    out = run_example("quickstart.py", cwd=tmp_path, time_scale=0.02).stdout
    assert len(re.findall(r"https?://\S+/files/\S+", out)) == 2
    files = sorted((tmp_path / "out" / "quickstart").iterdir(), key=lambda path: path.suffix)
    assert [path.suffix for path in files] == [".mp4", ".png"]
    video, image = (path.read_bytes() for path in files)
    assert b"ftyp" in video[:16]
    assert image.startswith(PNG)
    for path in files:
        assert f"{path.relative_to(tmp_path)} ({path.stat().st_size:,} bytes)" in out


def test_batch_prompts_downloads_every_image_and_a_rerun_resumes_them_all(tmp_path: Path) -> None:
    first = run_example("batch_prompts.py", cwd=tmp_path).stdout
    assert "300 succeeded, 0 failed, 0 resumed" in first
    out = tmp_path / "out" / "batch"
    assert (out / "journal.sqlite").is_file()
    images = sorted(out.glob("*.png"))
    assert len(images) == 300
    assert all(path.read_bytes().startswith(PNG) for path in images)

    again = run_example("batch_prompts.py", cwd=tmp_path)
    assert "300 succeeded, 0 failed, 300 resumed" in again.stdout
    assert sorted(out.glob("*.png")) == images  # nothing fetched or named twice


def test_custom_model_shows_the_schema_then_runs_and_a_bad_value_is_refused(
    tmp_path: Path,
) -> None:
    out = run_example("custom_model.py", cwd=tmp_path).stdout
    assert "acme/upscaler: requires ['image_url']; 0.02 USD per output" in out
    assert re.search(r"^ran: \['http://127\.0\.0\.1:\d+/files/\S+\.png'\]$", out, re.MULTILINE)
    assert "10 runs would cost about 0.20 USD" in out
    assert "{'scale': 3} refused before sending: acme/upscaler: scale: 3 is not one of 2, 4" in out
    assert "{'scale': 3} refused by RunComfy: HTTP 422" in out


def test_testing_with_simulator_passes_under_pytest(tmp_path: Path) -> None:
    example = str(EXAMPLES / "testing_with_simulator.py")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", example],
        cwd=tmp_path,
        env=child_env(0.01),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_sent_events(text: str) -> list[tuple[str, dict[str, object]]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def first_generate(
    http: aiohttp.ClientSession, base: str, service: subprocess.Popen[str]
) -> str:
    """POST /generate as soon as the service answers (it may still be starting): its id."""
    deadline = time.monotonic() + 30
    while True:
        try:
            async with http.post(f"{base}/generate", json={"prompt": "a red fox"}) as r:
                assert r.status == 202
                request_id: str = (await r.json())["request_id"]
                return request_id
        except aiohttp.ClientConnectionError:
            assert service.poll() is None, "the service exited"
            assert time.monotonic() < deadline, "the service did not start"
            await anyio.sleep(0.1)


@pytest.fixture
def web_backend(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`python examples/web_backend.py --port P` on the simulator: (its URL, the process)."""
    port = free_port()
    service = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "web_backend.py"), "--port", str(port)],
        cwd=tmp_path,
        env=child_env(0.05),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{port}", service
    finally:
        if service.poll() is None:
            service.kill()
        service.communicate()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_web_backend_serves_jobs_and_events_and_cancels_the_queue_on_shutdown(
    web_backend: tuple[str, subprocess.Popen[str]], stop: signal.Signals
) -> None:
    base, service = web_backend
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        request_id = await first_generate(http, base, service)

        for bad, field in [({"prompt": 5}, "prompt"), ({}, "prompt"), ({"colour": 1}, "colour")]:
            async with http.post(f"{base}/generate", json=bad) as r:
                assert r.status == 422
                assert field in (await r.json())["error"]

        async with http.get(f"{base}/jobs/{request_id}/events") as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            events = server_sent_events(await r.text())  # read to the end of the stream
        *changes, (last, result) = events
        assert last == "result"
        assert result["state"] == "succeeded"
        assert changes[-1] == ("state", {"state": "succeeded"})  # the change that ended it
        for name, data in changes:
            assert name == "state"
            assert data["state"] in ("in_queue", "in_progress", "completed", "succeeded")
        assert len({data["state"] for _, data in changes}) == len(changes)  # changes only
        urls = result["urls"]
        assert isinstance(urls, list)
        assert len(urls) == 1
        async with http.get(urls[0]) as r:
            assert (await r.read()).startswith(PNG)

        async with http.get(f"{base}/jobs/{request_id}") as r:
            assert await r.json() == {"state": "succeeded", "urls": urls}
        for path in ("jobs/no-such-job", "jobs/no-such-job/events"):  # unknown ids: 404
            async with http.get(f"{base}/{path}") as r:
                assert r.status == 404
                assert await r.text() == "no such job"

        queued = []  # the simulated account runs 2 at a time: most of these wait
        for n in range(20):
            async with http.post(f"{base}/generate", json={"prompt": f"fox {n}"}) as r:
                queued.append((await r.json())["request_id"])

    service.send_signal(stop)
    stdout, stderr = service.communicate(timeout=30)
    assert service.returncode == 0, stderr
    found = re.search(r"^shutdown: cancelled (\d+) queued: (.*)$", stdout, re.MULTILINE)
    assert found, stdout
    cancelled = found[2].split()
    assert int(found[1]) == len(cancelled) >= 1
    assert set(cancelled) <= set(queued)
