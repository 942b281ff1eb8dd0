"""Outputs into a bucket (StoreSink) against moto's S3 server: streamed, hashed, put only
where no object is (an identical one kept, a different one refused), multipart for large
files with memory bounded, measured in a child process."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runcomfy_async._store import ObjectExistsError, StoreSink
from tests.storage.conftest import Moto, objects, s3


async def stream(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def writes(moto: Moto, bucket: str, name: str) -> list[str]:
    return [
        f"{r['method']} {r['query']}"
        for r in moto.requests()
        if r["method"] in ("PUT", "POST") and r["path"] == f"/{bucket}/{name}"
    ]


async def test_an_output_is_put_once_with_its_sha256_and_a_rerun_keeps_it(
    moto: Moto, bucket: str
) -> None:
    sink = StoreSink(f"s3://{bucket}/renders")
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(300_000)
    digest = hashlib.sha256(data).hexdigest()
    stored = await sink.put("0000-a-fox-0.png", stream(data), "image/png")
    assert stored == (f"s3://{bucket}/renders/0000-a-fox-0.png", len(data), digest)
    head = s3(moto).head_object(Bucket=bucket, Key="renders/0000-a-fox-0.png")
    assert head["Metadata"] == {"sha256": digest}
    assert head["ContentType"] == "image/png"
    assert await sink.put("0000-a-fox-0.png", stream(data), "image/png") == stored
    assert len(writes(moto, bucket, "renders/0000-a-fox-0.png")) == 1  # kept, not sent again
    assert await sink.holds(stored[0], len(data))
    assert not await sink.holds(stored[0], len(data) + 1)


async def test_a_different_existing_object_is_refused_and_left_as_it_was(
    moto: Moto, bucket: str
) -> None:
    s3(moto).put_object(Bucket=bucket, Key="renders/clip.mp4", Body=b"someone else's")
    sink = StoreSink(f"s3://{bucket}/renders/")
    with pytest.raises(ObjectExistsError, match=r"a different clip\.mp4 exists"):
        await sink.put("clip.mp4", stream(b"ours" * 1000), "video/mp4")
    big = os.urandom(9 * 1024 * 1024)  # past the single-put size: multipart, then a copy
    with pytest.raises(ObjectExistsError, match=r"a different clip\.mp4 exists"):
        await sink.put("clip.mp4", stream(big, 1024 * 1024), "video/mp4")
    assert objects(moto, bucket) == {"renders/clip.mp4": b"someone else's"}  # no staging left


def test_a_large_video_goes_up_in_parts_with_memory_bounded(
    moto: Moto, bucket: str, tmp_path: Path
) -> None:
    mib = 96
    child = subprocess.run(
        [sys.executable, "-m", "tests.storage.big_put", f"s3://{bucket}/renders/", str(mib)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[2],
        check=False,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    location, size, sha256, expected, grown_kib = child.stdout.split()
    assert location == f"s3://{bucket}/renders/big.mp4"
    assert int(size) == mib * 1024 * 1024
    assert sha256 == expected
    parts = [w for w in writes(moto, bucket, "renders/" + next(
        r["path"].rsplit("/", 1)[1] for r in moto.requests() if ".big.mp4." in r["path"]
    )) if "partNumber=" in w]  # fmt: skip
    assert len(parts) >= mib // 8  # 8 MiB parts
    assert int(grown_kib) < 48 * 1024  # peak RSS grew by far less than the 96 MiB it sent
    got = s3(moto).get_object(Bucket=bucket, Key="renders/big.mp4")["Body"].read()
    assert hashlib.sha256(got).hexdigest() == sha256
