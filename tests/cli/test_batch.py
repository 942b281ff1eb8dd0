"""`runcomfy batch`: input files, estimate, summary, manifest, files, resume, refusal."""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runcomfy_async._cli.batch import InputFile
from runcomfy_async._wire import ModelInfo
from tests.cli.conftest import CANARY, RUNWAY, WAN, SimProcess, manifest

PROGRESS = re.compile(r"^runcomfy batch: \d+/\d+ done \(pending \d+, queued \d+, running \d+", re.M)


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def check_files(out: Path, rows: list[dict[str, Any]]) -> int:
    """Every file of the manifest is on disk with its size and sha256; how many."""
    count = 0
    for row in rows:
        for file in row["files"]:
            data = (out / file["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == file["sha256"]
            assert len(data) == file["size"]
            count += 1
    return count


def test_text_file_batch_reports_bad_lines_and_writes_manifest_and_files(
    cli: Any, tmp_path: Path
) -> None:
    prompts = write(
        tmp_path / "prompts.txt",
        "# a comment",
        "a red fox",
        "",
        "a lighthouse in a storm",
        "   ",
        "x" * 801,  # line 6: longer than the model allows
        "a bowl of ramen",
    )
    out = tmp_path / "out"
    done = cli("batch", WAN, prompts, "--out", out, "--simulate")
    assert done.code == 1  # a skipped line is an input that did not succeed
    assert f"{prompts}:6: skipped:" in done.err
    assert "prompt" in done.err.split(":6: skipped:")[1].splitlines()[0]
    assert "estimated cost $0.1200" in done.err
    assert "3 inputs: 3 succeeded, 0 failed, 0 cancelled, 0 unknown" in done.out
    assert "skipped lines: 1" in done.out
    assert "cost: $0.1200" in done.out
    assert str(out / "manifest.jsonl") in done.out
    rows = manifest(out)  # in input order, the skipped line among them
    assert [(row["line"], row["index"], row["state"]) for row in rows] == [
        (2, 0, "succeeded"),
        (4, 1, "succeeded"),
        (6, 2, "skipped"),
        (7, 3, "succeeded"),
    ]
    assert "prompt" in rows.pop(2)["error"]
    assert [row["input"]["prompt"] for row in rows] == [
        "a red fox",
        "a lighthouse in a storm",
        "a bowl of ramen",
    ]
    assert all(row["state"] == "succeeded" and row["error"] is None for row in rows)
    assert all(row["request_id"] and row["resumed"] is False for row in rows)
    assert check_files(out, rows) == 3
    assert PROGRESS.search(done.err)  # stderr is no terminal: plain lines
    assert "\r" not in done.err


def test_jsonl_bad_lines_are_reported_with_their_line_numbers(cli: Any, tmp_path: Path) -> None:
    inputs = write(
        tmp_path / "inputs.jsonl",
        '{"prompt": "a red fox", "seed": 7}',
        '{"prompt": "broken"',  # 2: not JSON
        "[1, 2, 3]",  # 3: not an object
        '{"prompt": "x", "aspect_ratio": "1:1"}',  # 4: not one of the ratios
        "",
        '{"prompt": "a koi pond", "aspect_ratio": "1024:1024 (1:1)"}',
    )
    out = tmp_path / "out"
    done = cli("batch", WAN, inputs, "--out", out, "--simulate", "--max-in-flight", "1")
    assert done.code == 1
    for number in (2, 3, 4):
        assert f"{inputs}:{number}: skipped:" in done.err
    assert "aspect_ratio" in done.err
    assert "2 inputs: 2 succeeded" in done.out
    assert "skipped lines: 3" in done.out
    rows = [row for row in manifest(out) if row["state"] != "skipped"]
    assert len(rows) == 2
    assert check_files(out, rows) == 2


def test_rerun_resumes_everything_and_submits_nothing(
    cli: Any, sim: SimProcess, key_file: Path, tmp_path: Path
) -> None:
    prompts = write(tmp_path / "p.txt", *(f"prompt {n}" for n in range(5)))
    out = tmp_path / "out"
    args = ["batch", WAN, prompts, "--out", out, "--base-url", sim.url, "--api-key-file", key_file]
    before = sim.submits()
    first = cli(*args)
    assert first.code == 0, first.err
    assert sim.submits() == before + 5
    assert (out / "journal.sqlite").exists()
    first_rows = manifest(out)
    assert check_files(out, first_rows) == 5

    again = cli(*args)
    assert again.code == 0, again.err
    assert sim.submits() == before + 5  # nothing sent again
    assert "5 inputs: 5 succeeded" in again.out
    assert "resumed from the journal: 5" in again.out
    rows = manifest(out)
    assert len(rows) == 5
    assert all(row["resumed"] for row in rows)
    assert {row["request_id"] for row in rows} == {row["request_id"] for row in first_rows}
    assert check_files(out, rows) == 5
    for path in out.iterdir():  # manifest, journal, outputs: the key is in none of them
        assert CANARY.encode() not in path.read_bytes()


def test_max_cost_refuses_to_start(
    cli: Any, sim: SimProcess, key_file: Path, tmp_path: Path
) -> None:
    prompts = write(tmp_path / "p.txt", *(f"prompt {n}" for n in range(10)))
    out = tmp_path / "out"
    before = sim.submits()
    done = cli(
        "batch", WAN, prompts, "--out", out, "--max-cost", "0.39",
        "--base-url", sim.url, "--api-key-file", key_file,
    )  # fmt: skip
    assert done.code == 2
    assert "estimated cost $0.4000" in done.err
    assert "--max-cost" in done.err
    assert "nothing was submitted" in done.err
    assert sim.submits() == before
    assert not (out / "manifest.jsonl").exists()


def test_video_estimate_sums_durations(cli: Any, tmp_path: Path) -> None:
    image = "https://example.com/cat.png"
    inputs = write(
        tmp_path / "v.jsonl",
        json.dumps({"promptText": "a", "promptImage": image, "duration": 10}),
        json.dumps({"promptText": "b", "promptImage": image}),  # default: 5 s
        json.dumps({"promptText": "c", "promptImage": image, "duration": 5}),
    )
    done = cli("batch", RUNWAY, inputs, "--out", tmp_path / "o", "--simulate", "--max-cost", "0.5")
    assert done.code == 2
    assert "estimated cost $1.0000 ($0.0500 per second)" in done.err


def test_a_text_file_cannot_feed_a_model_needing_two_fields(cli: Any, tmp_path: Path) -> None:
    prompts = write(tmp_path / "p.txt", "a cat walking")
    done = cli("batch", RUNWAY, prompts, "--out", tmp_path / "o", "--simulate")
    assert done.code == 2
    assert done.err.count("\n") == 1
    assert "promptText" in done.err
    assert "promptImage" in done.err
    assert "JSONL" in done.err


def test_missing_input_file_exits_2(cli: Any, tmp_path: Path) -> None:
    done = cli("batch", WAN, tmp_path / "absent.txt", "--out", tmp_path / "o", "--simulate")
    assert done.code == 2
    assert "absent.txt" in done.err


def test_failures_and_unknown_submits_are_counted_and_resumed_as_such(
    cli: Any, key_file: Path, tmp_path: Path
) -> None:
    unknown = '{"action": "reset_after_read", "endpoint": "submit", "times": 1}'
    sim = SimProcess("--time-scale", "0.05", "--failure-rate", "0.4", "--fault", unknown)
    try:
        prompts = write(tmp_path / "p.txt", *(f"prompt {n}" for n in range(8)))
        out = tmp_path / "out"
        args = ["batch", WAN, prompts, "--out", out, "--base-url", sim.url]
        args += ["--api-key-file", key_file, "--max-in-flight", "1"]
        first = cli(*args)
        assert first.code == 1
        rows = manifest(out)
        states = [row["state"] for row in rows]
        assert states.count("unknown") == 1
        failed = states.count("failed")
        assert failed >= 1
        assert f"{8 - failed - 1} succeeded, {failed} failed, 0 cancelled, 1 unknown" in first.out
        assert "--resubmit-unknown" in first.out
        assert all(row["error"] for row in rows if row["state"] != "succeeded")
        submits = sim.submits()

        again = cli(*args)  # the unknown one is reported again, not resent
        assert again.code == 1
        assert sim.submits() == submits
        assert [row["state"] for row in manifest(out)].count("unknown") == 1

        resent = cli(*args, "--resubmit-unknown")
        assert sim.submits() == submits + 1
        assert [row["state"] for row in manifest(out)].count("unknown") == 0
        assert resent.code == 1  # the failed ones stay failed
    finally:
        sim.stop()


def test_input_files_are_read_lazily(tmp_path: Path) -> None:
    path = write(tmp_path / "p.txt", "one", "two")
    info = ModelInfo(model_id=WAN, input_schema={"required": ["prompt"]})
    source = InputFile.open(path, WAN, info)
    lines: Iterator[dict[str, Any]] = source.read(report=False)
    assert inspect.isgenerator(lines)
    assert next(lines) == {"prompt": "one"}


def test_json_content_is_jsonl_whatever_the_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "inputs.txt", "# comment", '{"prompt": "a"}')
    source = InputFile.open(path, WAN, ModelInfo(model_id=WAN))
    assert source.prompt_field is None
    assert list(source.read(report=False)) == [{"prompt": "a"}]


def test_first_required_string_field_takes_the_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "p.txt", "hello")
    schema = {"required": ["text"], "properties": {"text": {"type": "string"}}}
    source = InputFile.open(
        path, "acme/speak", ModelInfo(model_id="acme/speak", input_schema=schema)
    )
    assert list(source.read(report=False)) == [{"text": "hello"}]


def test_a_file_that_is_no_journal_exits_2(cli: Any, tmp_path: Path) -> None:
    prompts = write(tmp_path / "p.txt", "one")
    journal = tmp_path / "not-a-journal.sqlite"
    journal.write_bytes(b"this is not a SQLite database, not even close" * 100)
    done = cli("batch", WAN, prompts, "--out", tmp_path / "o", "--journal", journal, "--simulate")
    assert done.code == 2
    assert done.err.strip().splitlines()[-1].startswith("runcomfy: error: ")
    assert "journal" in done.err.strip().splitlines()[-1]


def png_data_uri(width: int, height: int) -> str:
    """A PNG of that size, as far as its header goes (all a pre-flight reads)."""
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    head = (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )
    return "data:image/png;base64," + base64.b64encode(head).decode()


@pytest.mark.parametrize("preflight", [True, False], ids=["preflight", "no-preflight"])
def test_batch_checks_file_inputs_before_paying_unless_told_not_to(
    cli: Any, tmp_path: Path, preflight: bool
) -> None:
    inputs = write(
        tmp_path / "v.jsonl",
        json.dumps({"promptText": "fits", "promptImage": png_data_uri(1280, 768)}),
        json.dumps({"promptText": "too wide", "promptImage": png_data_uri(9000, 4600)}),
    )
    flags = [] if preflight else ["--no-preflight"]
    done = cli("batch", RUNWAY, inputs, "--out", tmp_path / "o", "--simulate", *flags)
    assert done.code == 1
    assert "2 inputs: 1 succeeded, 1 failed" in done.out
    rows = {row["input"]["promptText"]: row for row in manifest(tmp_path / "o")}
    error = rows["too wide"]["error"]
    assert rows["fits"]["state"] == "succeeded"
    if preflight:  # refused before the submit, with the model's own rule text
        assert "promptImage: image is 9000 px wide; rule width_pixels < 8000" in error
        assert rows["too wide"]["request_id"] is None
    else:  # sent, and refused by RunComfy's own check
        assert "invalid inputs" in error
