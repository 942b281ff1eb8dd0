"""Local file inputs over the inline cap, uploaded to a real S3 server (moto) and sent as a
presigned URL that the simulator fetches: once per file, not again on a resumed batch, and
no RunComfy key (or store secret) where it does not belong."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import runcomfy_async as rc
from runcomfy_async.simulator import Simulator
from tests.conftest import CANARY
from tests.integration.test_client_against_simulator import config, fast_client
from tests.storage.conftest import SECRET, Moto, objects
from tests.unit.test_imagesize import png

RUNWAY = "runwayml/runway-gen-3-alpha/turbo/image-to-video"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(config(fetch_inputs=True)) as simulator:
        yield simulator


def puts(moto: Moto, bucket: str) -> list[str]:
    return [
        r["path"]
        for r in moto.requests()
        if r["method"] in ("PUT", "POST") and r["path"].startswith(f"/{bucket}/")
    ]


async def test_a_large_local_file_is_uploaded_once_and_the_simulator_fetches_its_bytes(
    sim: Simulator, moto: Moto, bucket: str, tmp_path: Path
) -> None:
    image = tmp_path / "beach.png"
    image.write_bytes(png(1280, 768, 300_000))
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    inputs = [(RUNWAY, {"promptText": f"waves {n}", "promptImage": image}) for n in range(4)]
    journal = tmp_path / "journal.sqlite"
    options = {"api_key": CANARY, "uploads": f"s3://{bucket}/inputs/", "inline_max_bytes": 100_000}
    async with fast_client(sim.url, **options) as client:
        items = [item async for item in client.map(inputs, journal=journal)]
    assert all(item.ok for item in items), [item.error for item in items]
    assert objects(moto, bucket) == {f"inputs/{digest}.png": image.read_bytes()}
    assert len([p for p in puts(moto, bucket) if p.endswith(f"{digest}.png")]) == 1
    fetched = sim.ledger.fetched
    assert [(f.size, f.sha256) for f in fetched] == [(300_000, digest)] * 4
    assert all(f.url == f"{moto.url}/{bucket}/inputs/{digest}.png" for f in fetched)
    # A rerun of the same batch in a new process (a new client) uploads nothing again.
    journal.unlink()
    async with fast_client(sim.url, **options) as client:
        again = [item async for item in client.map(inputs, journal=journal)]
    assert all(item.ok for item in again)
    assert len([p for p in puts(moto, bucket) if p.endswith(f"{digest}.png")]) == 1
    # The RunComfy key never reached the store; the store's secret reached neither host.
    log = moto.raw_log()
    assert CANARY not in log
    assert SECRET not in log
    assert all(SECRET not in str(job.inputs) for job in sim.ledger.jobs)


async def test_an_upload_that_fails_sends_nothing_and_says_where(
    sim: Simulator, moto: Moto, bucket: str, tmp_path: Path
) -> None:
    image = tmp_path / "beach.png"
    image.write_bytes(png(1280, 768, 300_000))
    options = {"uploads": "s3://no-such-bucket-here/inputs/", "inline_max_bytes": 100_000}
    async with fast_client(sim.url, **options) as client:
        with pytest.raises(rc.UploadError) as caught:
            await client.submit(RUNWAY, {"promptText": "w", "promptImage": image})
    assert "could not be uploaded to s3://no-such-bucket-here/inputs/" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert sim.ledger.calls["submit"] == 0


def test_a_store_url_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "obstore", None)
    monkeypatch.setitem(sys.modules, "obstore.store", None)
    with pytest.raises(rc.ConfigurationError, match=r"pip install 'runcomfy-async\[storage\]'"):
        rc.Client("k", uploads="s3://bucket/inputs/")


async def test_store_credentials_may_come_from_an_aws_profile(
    sim: Simulator, moto: Moto, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[renders]\naws_access_key_id = AKIAFROMPROFILE\naws_secret_access_key = {SECRET}\n"
    )
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_PROFILE", "renders")
    image = tmp_path / "beach.png"
    image.write_bytes(png(1280, 768, 200_000))
    options = {"uploads": f"s3://{bucket}/inputs/", "inline_max_bytes": 100_000}
    async with fast_client(sim.url, **options) as client:
        result = await client.run(RUNWAY, {"promptText": "w", "promptImage": image}, timeout=20)
    assert result.state is rc.State.SUCCEEDED
    signed = [r for r in moto.requests() if r["path"].startswith(f"/{bucket}/inputs/")]
    assert any(
        "Credential=AKIAFROMPROFILE/" in r["headers"].get("Authorization", "") for r in signed
    )
    assert SECRET not in moto.raw_log()
