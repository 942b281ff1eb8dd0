"""`-i NAME=@PATH` and JSONL's {"$file": PATH}: local files from the command line, checked
and sent as their bytes (the simulator reads every file input and records what it got)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import CANARY, RUNWAY, SimProcess, manifest
from tests.unit.test_imagesize import png


@pytest.fixture(scope="module")
def fetching() -> Iterator[SimProcess]:
    process = SimProcess("--time-scale", "0.02", "--fetch-inputs", key=CANARY)
    try:
        yield process
    finally:
        process.stop()


def image(folder: Path, name: str = "beach.png") -> tuple[Path, str]:
    path = folder / name
    path.write_bytes(png(1280, 768, 4000))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_at_path_sends_a_local_image_and_reads_a_prompt_from_a_text_file(
    cli: Any, fetching: SimProcess, key_file: Path, tmp_path: Path
) -> None:
    beach, digest = image(tmp_path)
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("slow waves at dusk, 1984\n", encoding="utf-8")
    before = len(fetching.ledger()["fetched"])
    done = cli(
        "run", RUNWAY, "-i", f"promptText=@{prompt}", "-i", f"promptImage=@{beach}",
        "--base-url", fetching.url, "--api-key-file", key_file,
    )  # fmt: skip
    assert done.code == 0, done.text
    ledger = fetching.ledger()
    (got,) = ledger["fetched"][before:]
    assert (got["field"], got["sha256"], got["size"]) == ("promptImage", digest, 4000)
    assert ledger["jobs"][-1]["inputs"]["promptText"] == "slow waves at dusk, 1984"


def test_at_path_of_a_missing_file_exits_2_before_any_call(
    cli: Any, fetching: SimProcess, key_file: Path, tmp_path: Path
) -> None:
    submits = fetching.submits()
    done = cli(
        "submit", RUNWAY, "-i", "promptText=w", "-i", f"promptImage=@{tmp_path}/gone.png",
        "--base-url", fetching.url, "--api-key-file", key_file,
    )  # fmt: skip
    assert done.code == 2
    assert f"cannot read {tmp_path}/gone.png" in done.err
    assert fetching.submits() == submits


def test_jsonl_names_local_files_relative_to_itself_and_the_manifest_shows_the_path(
    cli: Any, fetching: SimProcess, key_file: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    beach, digest = image(folder)
    lines = [{"promptText": f"waves {n}", "promptImage": {"$file": "beach.png"}} for n in range(3)]
    inputs = folder / "inputs.jsonl"
    inputs.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    before = len(fetching.ledger()["fetched"])
    out = tmp_path / "out"
    done = cli(
        "batch", RUNWAY, inputs, "--out", out,
        "--base-url", fetching.url, "--api-key-file", key_file,
    )  # fmt: skip
    assert done.code == 0, done.text
    fetched = fetching.ledger()["fetched"][before:]
    assert [f["sha256"] for f in fetched] == [digest] * 3
    rows = manifest(out)
    assert [row["input"]["promptImage"] for row in rows] == [
        {"$file": str(beach), "sha256": digest}
    ] * 3
    assert "base64" not in (out / "manifest.jsonl").read_text(encoding="utf-8")
