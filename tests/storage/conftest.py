"""A real S3 server for the storage tests: moto's server mode on 127.0.0.1 (one per session),
logging every request it gets, and per-test buckets with the store's standard environment."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SECRET = "store-secret-canary-5e1f0a9b7c3d"  # the store's secret key: it must go nowhere


@dataclass
class Moto:
    """The moto server: its URL and its request log (one JSON object a line)."""

    url: str
    log: Path

    def requests(self) -> list[dict[str, Any]]:
        with self.log.open(encoding="utf-8") as file:
            return [json.loads(line) for line in file]

    def raw_log(self) -> str:
        return self.log.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    log = tmp_path_factory.mktemp("moto") / "requests.jsonl"
    log.touch()
    command = [sys.executable, "-m", "tests.storage.moto_logged", "--log", str(log)]
    server_log = (log.parent / "server.log").open("w")  # werkzeug's access lines, not pytest's
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=server_log,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("PORT "), line
        yield Moto(f"http://127.0.0.1:{int(line.split()[1])}", log)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        server_log.close()


@pytest.fixture
def bucket(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket, and the store's standard environment pointing at moto (credentials
    from AWS_* variables only, as on a real machine)."""
    name = f"test-{secrets.token_hex(4)}"
    request = urllib.request.Request(f"{moto.url}/{name}", method="PUT")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    for key, value in {
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "AKIATESTSTORE",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == SECRET
    return name


def s3(moto: Moto) -> Any:
    """A boto3 client of moto (moto's own dependency): the test's view, not the SDK's."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=moto.url,
        region_name="us-east-1",
        aws_access_key_id="AKIATESTSTORE",
        aws_secret_access_key=SECRET,
    )


def objects(moto: Moto, bucket: str) -> dict[str, bytes]:
    """Every object of `bucket` and its bytes."""
    client = s3(moto)
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        entry["Key"]: client.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
        for entry in listed
    }
