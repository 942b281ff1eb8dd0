"""Outputs into a bucket end to end, against the simulator and moto's S3 server: map(...,
download_to="s3://..."), client.download(result, "s3://..."), `runcomfy batch --out s3://`
killed and rerun; the batch's journal and manifest stay in a local folder."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import runcomfy_async as rc
from runcomfy_async.simulator import Simulator
from tests.conftest import CANARY
from tests.integration.test_client_against_simulator import config, fast_client
from tests.integration.test_crash_recovery import (
    CLI,
    WAN,
    ledger,
    simulator_url,  # noqa: F401 - a fixture
)
from tests.storage.conftest import SECRET, Moto, objects, s3

MiB = 1024 * 1024


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(config()) as simulator:
        yield simulator


def final_writes(moto: Moto, bucket: str) -> dict[str, int]:
    """Object key -> writes that made it (a whole PUT, a completed multipart or copy)."""
    counts: dict[str, int] = {}
    for r in moto.requests():
        key = r["path"].removeprefix(f"/{bucket}/")
        if not r["path"].startswith(f"/{bucket}/") or "/." in r["path"]:
            continue  # another bucket, or a staging object
        whole = r["method"] == "PUT" and "partNumber" not in r["query"]
        complete = r["method"] == "POST" and "uploadId=" in r["query"]
        if whole or complete:
            counts[key] = counts.get(key, 0) + 1
    return counts


async def test_a_batch_saves_its_outputs_in_a_bucket_with_the_sha256_it_journals(
    sim: Simulator, moto: Moto, bucket: str, tmp_path: Path
) -> None:
    prompts = ["a red fox", "a lighthouse", "a bowl of ramen"]
    inputs = [("wan-ai/wan-2-2/text-to-image", {"prompt": p}) for p in prompts]
    journal = tmp_path / "journal.sqlite"
    async with fast_client(sim.url, api_key=CANARY) as client:
        items = [
            item
            async for item in client.map(
                inputs, journal=journal, download_to=f"s3://{bucket}/renders/"
            )
        ]
    assert all(item.ok for item in items), [item.error for item in items]
    stored = objects(moto, bucket)
    names = sorted(stored)
    assert names == [
        "renders/0000-a-red-fox-0.png",
        "renders/0001-a-lighthouse-0.png",
        "renders/0002-a-bowl-of-ramen-0.png",
    ]
    for row in rc.read_journal(journal):
        (file,) = row.files
        key = file["path"].removeprefix(f"s3://{bucket}/")
        assert hashlib.sha256(stored[key]).hexdigest() == file["sha256"]
        assert len(stored[key]) == file["size"]
    assert sorted(str(item.files[0].location) for item in items) == [
        f"s3://{bucket}/{n}" for n in names
    ]
    # A rerun replays the journal: nothing is fetched or put again.
    before = final_writes(moto, bucket)
    async with fast_client(sim.url, api_key=CANARY) as client:
        again = [
            i
            async for i in client.map(
                inputs, journal=journal, download_to=f"s3://{bucket}/renders/"
            )
        ]
    assert all(item.ok and item.resumed for item in again)
    assert final_writes(moto, bucket) == before == {name: 1 for name in names}
    log = moto.raw_log()
    assert CANARY not in log  # the RunComfy key never reached the store
    assert SECRET not in log


async def test_client_download_puts_the_outputs_and_refuses_a_different_existing_object(
    sim: Simulator, moto: Moto, bucket: str
) -> None:
    async with fast_client(sim.url) as client:
        result = await client.run("wan-ai/wan-2-2/text-to-image", {"prompt": "a fox"})
        (saved,) = await client.download(result, f"s3://{bucket}/one/", key="fox")
        assert saved.location == f"s3://{bucket}/one/fox-0.png"
        body = s3(moto).get_object(Bucket=bucket, Key="one/fox-0.png")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == saved.sha256
        assert (await client.download(result, f"s3://{bucket}/one/", key="fox")) == [saved]
        s3(moto).put_object(Bucket=bucket, Key="two/fox-0.png", Body=b"not this")
        with pytest.raises(rc.DownloadError, match=r"a different fox-0\.png exists"):
            await client.download(result, f"s3://{bucket}/two/", key="fox")
    assert s3(moto).get_object(Bucket=bucket, Key="two/fox-0.png")["Body"].read() == b"not this"


async def test_a_large_video_output_goes_up_in_parts(
    sim: Simulator, moto: Moto, bucket: str
) -> None:
    size = 40 * MiB
    block = os.urandom(MiB)

    async def video(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.content_length = size
        await response.prepare(request)
        for _ in range(size // MiB):
            await response.write(block)
        return response

    app = web.Application()
    app.router.add_get("/big.mp4", video)
    async with TestServer(app, host="127.0.0.1") as host, fast_client(sim.url) as client:
        url = str(host.make_url("/big.mp4"))
        result = rc.Result(
            request_id="req-big", state=rc.State.SUCCEEDED, output=rc.Output({"video": url})
        )
        (saved,) = await client.download(result, f"s3://{bucket}/videos/", key="clip")
    assert saved.size == size
    assert saved.sha256 == hashlib.sha256(block * (size // MiB)).hexdigest()
    parts = [
        r for r in moto.requests() if "partNumber=" in r["query"] and ".clip-0.mp4." in r["path"]
    ]
    assert len(parts) == 5  # 8 MiB parts
    assert final_writes(moto, bucket) == {"videos/clip-0.mp4": 1}


def run_batch(sim_url: str, folder: Path, bucket: str, *, kill_after: float | None) -> int:
    prompts, key = folder / "prompts.txt", folder / "key.txt"
    prompts.write_text("".join(f"prompt {i}\n" for i in range(20)))
    key.write_text(f"{CANARY}\n")
    command = [sys.executable, "-c", CLI, "batch", WAN, str(prompts)]
    command += ["--out", f"s3://{bucket}/renders/", "--state", str(folder / "state")]
    command += ["--base-url", sim_url, "--api-key-file", str(key), "--max-in-flight", "5"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    if kill_after is None:
        return process.wait(timeout=120)
    time.sleep(kill_after)
    process.send_signal(signal.SIGKILL)
    return process.wait(timeout=10)


def test_a_killed_cli_batch_to_a_bucket_reruns_without_putting_anything_twice(
    moto: Moto,
    bucket: str,
    tmp_path: Path,
    simulator_url: str,  # noqa: F811
) -> None:
    rng = random.Random(20261202)
    kills = sum(
        run_batch(simulator_url, tmp_path, bucket, kill_after=rng.uniform(1.0, 2.5)) == -9
        for _ in range(3)
    )
    assert kills >= 1
    final = run_batch(simulator_url, tmp_path, bucket, kill_after=None)
    jobs = ledger(simulator_url)["jobs"]
    text = (tmp_path / "state" / "manifest.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()]
    assert (tmp_path / "state" / "journal.sqlite").is_file()  # the batch's state: local
    stored = objects(moto, bucket)
    done = [row for row in rows if row["state"] == "succeeded"]
    assert final == (0 if len(done) == 20 else 1)
    assert sorted(f["path"] for row in done for f in row["files"]) == sorted(
        f"s3://{bucket}/{name}" for name in stored
    )
    for row in done:
        (file,) = row["files"]
        data = stored[file["path"].removeprefix(f"s3://{bucket}/")]
        assert hashlib.sha256(data).hexdigest() == file["sha256"]
    assert set(final_writes(moto, bucket).values()) == {1}  # no object put twice
    assert isinstance(jobs, list)
    assert len({json.dumps(job["inputs"], sort_keys=True) for job in jobs}) == len(jobs)


def test_run_out_a_bucket_saves_the_output_there(
    moto: Moto, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from runcomfy_async._cli import main

    code = main(["run", WAN, "-i", "prompt=a fox", "--simulate", "--out", f"s3://{bucket}/one/"])
    err = capsys.readouterr().err
    assert code == 0, err
    (name,) = objects(moto, bucket)
    assert name.startswith("one/")
    assert name.endswith("-0.png")
    assert f"saved s3://{bucket}/{name}" in err
