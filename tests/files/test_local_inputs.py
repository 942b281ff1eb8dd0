"""Local files as inputs against the simulator fetching what it is sent: a Path or LocalFile
is checked on disk, sent inline (data: URI) or refused when too large, read once per batch;
the journal holds its path and sha256, never its bytes."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import runcomfy_async as rc
from runcomfy_async import models
from runcomfy_async.simulator import Simulator
from tests.integration.test_client_against_simulator import config, fast_client
from tests.unit.test_imagesize import png

RUNWAY = "runwayml/runway-gen-3-alpha/turbo/image-to-video"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(config(fetch_inputs=True)) as simulator:
        yield simulator


def beach(tmp_path: Path, width: int = 1280, height: int = 768, size: int = 5000) -> Path:
    path = tmp_path / "beach.png"
    path.write_bytes(png(width, height, size))
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_path_in_a_typed_input_reaches_runcomfy_as_its_bytes(
    sim: Simulator, tmp_path: Path
) -> None:
    image = beach(tmp_path)
    inputs = models.RunwayGen3TurboImageToVideo(prompt_text="waves", prompt_image=image)  # type: ignore[arg-type]
    async with fast_client(sim.url) as client:
        result = await client.run(inputs, timeout=20)
    assert result.state is rc.State.SUCCEEDED
    (got,) = sim.ledger.fetched
    assert (got.field, got.size, got.sha256, got.error) == (
        "promptImage",
        image.stat().st_size,
        sha(image),
        None,
    )
    assert got.url.startswith("data:image/png;base64,")


async def test_a_local_file_in_dict_inputs_is_checked_with_the_preflight_words(
    sim: Simulator, tmp_path: Path
) -> None:
    wide = beach(tmp_path, width=3000, height=1000)  # 3:1, the model allows 1:2 to 2:1
    async with fast_client(sim.url) as client:
        with pytest.raises(rc.PreflightError) as caught:
            await client.submit(RUNWAY, {"promptText": "w", "promptImage": rc.LocalFile(wide)})
    assert str(caught.value) == (
        "promptImage: image is 3000x1000 px (width/height 3); rule width/height < 2: "
        "The aspect ratio range should be 1:2 to 2:1."
    )
    assert sim.ledger.calls["submit"] == 0  # nothing sent, nothing paid


async def test_a_file_over_the_inline_cap_without_uploads_is_refused_before_any_submit(
    sim: Simulator, tmp_path: Path
) -> None:
    image = beach(tmp_path, size=300_000)
    async with fast_client(sim.url, inline_max_bytes=100_000) as client:
        with pytest.raises(rc.InvalidInputError) as caught:
            await client.submit(RUNWAY, {"promptText": "w", "promptImage": image})
    message = str(caught.value)
    assert f"{image} is 0.3 MiB (300,000 bytes)" in message
    assert "cap for sending a file inline" in message
    assert "uploads='s3://bucket/prefix/'" in message
    assert sim.ledger.calls["submit"] == 0


async def test_a_missing_file_is_an_input_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.png"
    typed = models.RunwayGen3TurboImageToVideo(prompt_text="w", prompt_image=missing)  # type: ignore[arg-type]
    with pytest.raises(rc.InvalidInputError, match=r"cannot read .*nothing-here\.png"):
        typed.validate()
    async with rc.Client("k", base_url="http://127.0.0.1:9") as client:  # nothing listens
        with pytest.raises(rc.InvalidInputError, match=r"cannot read .*nothing-here\.png"):
            await client.submit(RUNWAY, {"promptText": "w", "promptImage": missing})


async def test_a_batch_reads_one_file_once_and_journals_its_path_and_sha256_not_its_bytes(
    sim: Simulator, tmp_path: Path
) -> None:
    image = beach(tmp_path, size=20_000)
    journal = tmp_path / "batch.sqlite"
    prompts = [f"waves {n}" for n in range(6)]
    inputs = [(RUNWAY, {"promptText": p, "promptImage": image}) for p in prompts]
    async with fast_client(sim.url) as client:
        items = [item async for item in client.map(inputs, journal=journal)]
    assert all(item.ok for item in items)
    assert [f.sha256 for f in sim.ledger.fetched] == [sha(image)] * 6
    raw = sqlite3.connect(journal).execute("SELECT inputs FROM items").fetchall()
    stored = " ".join(row[0] for row in raw)
    assert f"runcomfy-file={image}" in stored
    assert f"sha256={sha(image)}" in stored
    assert "base64" not in stored
    assert len(stored) < 6 * 400
    rows = rc.read_journal(journal)
    assert {row.inputs["promptImage"] for row in rows} == {
        f"data:image/png;runcomfy-file={image};sha256={sha(image)},"
    }
    # A rerun resumes on the same keys: nothing is submitted again.
    async with fast_client(sim.url) as client:
        again = [item async for item in client.map(inputs, journal=journal)]
    assert all(item.ok for item in again)
    assert sim.ledger.calls["submit"] == 6
