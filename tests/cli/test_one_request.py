"""One request from the command line: the request_id at once, --out refused before paying,
"succeeded, not saved" (exit 7), `wait` and `result --out`, and Ctrl-C during run/wait."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import CANARY, CLI, WAN, SimProcess, cli_process, lines_of
from tests.cli.test_interrupt import wait_for

SUBMITTED = re.compile(r"^runcomfy: submitted request (\S+)$", re.M)


def request_id_of(err: str) -> str:
    found = SUBMITTED.search(err)
    assert found, err
    return found[1]


def job(sim: SimProcess, rid: str) -> dict[str, Any]:
    return next(j for j in sim.ledger()["jobs"] if j["request_id"] == rid)


def hinted(err: str, words: str) -> list[str]:
    """The command line printed after `words` (e.g. "to fetch them again, run: ")."""
    line = err.split(words, 1)[1].splitlines()[0]
    return shlex.split(line)


def run_hint(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a printed `runcomfy ...` command as the user would paste it."""
    assert command[0] == "runcomfy"
    return subprocess.run(
        [sys.executable, *CLI, *command[1:]], capture_output=True, text=True, timeout=60
    )


def test_run_prints_the_request_id_on_stderr_as_soon_as_it_is_known(
    cli: Any, sim: SimProcess, key_file: Path
) -> None:
    done = cli("run", WAN, "-i", "prompt=a fox", "--base-url", sim.url, "--api-key-file", key_file)
    assert done.code == 0
    rid = request_id_of(done.err)
    assert job(sim, rid)["state"] == "succeeded"
    assert done.err.index(f"submitted request {rid}") < done.err.index("succeeded, cost")
    sub = cli("submit", WAN, "-i", "prompt=x", "--base-url", sim.url, "--api-key-file", key_file)
    assert request_id_of(sub.err) == sub.out.strip()


@pytest.fixture
def blocked_folders(tmp_path: Path) -> Iterator[dict[str, Path]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder", encoding="utf-8")
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        # root writes through a folder's mode bits, but not into /proc: an existing folder
        # nobody can create a file in
        unwritable = Path("/proc") if os.geteuid() == 0 else read_only
        yield {"file": a_file, "under-a-file": a_file / "sub" / "out", "read-only": unwritable}
    finally:
        read_only.chmod(0o700)


@pytest.mark.parametrize("where", ["file", "under-a-file", "read-only"])
def test_run_refuses_an_out_folder_it_cannot_write_before_sending_anything(
    cli: Any, sim: SimProcess, key_file: Path, blocked_folders: dict[str, Path], where: str
) -> None:
    before = sim.submits()
    common = ["--base-url", sim.url, "--api-key-file", key_file]
    done = cli("run", WAN, "-i", "prompt=a fox", "--out", blocked_folders[where], *common)
    assert done.code == 2
    assert "nothing was submitted" in done.err
    assert str(blocked_folders[where]) in done.err
    assert done.out == ""
    assert sim.submits() == before


def test_a_save_that_fails_after_success_exits_7_with_the_command_that_fetches_it_again(
    key_file: Path, tmp_path: Path
) -> None:
    fault = '{"action": "status", "endpoint": "files", "status_code": 500, "times": 1}'
    sim = SimProcess("--time-scale", "0.05", "--fault", fault, key=CANARY)
    try:
        out = tmp_path / "out"
        process = cli_process(
            "run", WAN, "-i", "prompt=a fox", "--out", out,
            "--base-url", sim.url, "--api-key-file", key_file,
        )  # fmt: skip
        stdout, err = process.communicate(timeout=60)
        assert process.returncode == 7, err
        rid = request_id_of(err)
        assert f"request {rid} succeeded" in err
        assert "not saved" in err
        assert stdout.strip().startswith(sim.url)  # the URLs are still printed
        assert list(out.iterdir()) == []
        command = hinted(err, "to fetch them again, run: ")
        assert command[:5] == ["runcomfy", "result", rid, "--out", str(out)]
        again = run_hint(command)
        assert again.returncode == 0, again.stderr
        assert [p.name for p in out.iterdir()] == [f"{rid}-0.png"]
        assert sim.submits() == 1  # fetched again, not paid again
        assert sim.ledger()["total_charged"] == pytest.approx(0.04)
    finally:
        sim.stop()


def test_wait_saves_the_outputs_of_an_earlier_request(
    cli: Any, sim: SimProcess, key_file: Path, tmp_path: Path
) -> None:
    common = ["--base-url", sim.url, "--api-key-file", key_file]
    rid = cli("submit", WAN, "-i", "prompt=later", *common).out.strip()
    done = cli("wait", rid, "--out", tmp_path / "w", "--timeout", "60", *common, "--json")
    assert done.code == 0, done.err
    answer = json.loads(done.out)
    assert answer["state"] == "succeeded"
    assert answer["saved"] is True
    assert [Path(f["path"]).name for f in answer["files"]] == [f"{rid}-0.png"]
    assert (tmp_path / "w" / f"{rid}-0.png").stat().st_size == answer["files"][0]["size"]


def test_result_out_downloads_and_is_repeatable(
    cli: Any, sim: SimProcess, key_file: Path, tmp_path: Path
) -> None:
    common = ["--base-url", sim.url, "--api-key-file", key_file]
    rid = request_id_of(cli("run", WAN, "-i", "prompt=again", *common).err)
    for _ in range(2):  # the same file twice is no clash
        done = cli("result", rid, "--out", tmp_path / "r", *common)
        assert done.code == 0, done.err
        assert done.out.strip().startswith(sim.url)
    assert [p.name for p in (tmp_path / "r").iterdir()] == [f"{rid}-0.png"]


def test_wait_timeout_names_the_command_that_waits_again(key_file: Path, tmp_path: Path) -> None:
    sim = SimProcess("--time-scale", "5", key=CANARY)
    try:
        common = ["--base-url", sim.url, "--api-key-file", str(key_file)]
        rid = subprocess.run(
            [sys.executable, *CLI, "submit", WAN, "-i", "prompt=slow", *common],
            capture_output=True, text=True, timeout=30,
        ).stdout.strip()  # fmt: skip
        out = tmp_path / "o"
        process = cli_process("wait", rid, "--timeout", "0.5", "--out", out, *common)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 6
        assert f"request {rid} did not finish within 0.5 s; it goes on" in err
        assert hinted(err, "to wait for it again, run: ") == [
            "runcomfy", "wait", rid, "--out", str(out), *common,
        ]  # fmt: skip
        unfinished = cli_process("result", rid, "--out", out, *common)
        _, err = unfinished.communicate(timeout=30)
        assert unfinished.returncode == 6
        assert "nothing to save yet" in err
        assert hinted(err, "run: ")[:3] == ["runcomfy", "wait", rid]
    finally:
        sim.stop()


def test_a_request_id_nobody_knows_is_named_in_the_error(
    cli: Any, sim: SimProcess, key_file: Path
) -> None:
    for command in ("status", "result", "wait"):
        done = cli(command, "no-such-rid", "--base-url", sim.url, "--api-key-file", key_file)
        assert done.code == 5
        assert "no-such-rid" in done.err


def interrupted_run(sim: SimProcess, key_file: Path, until: str) -> tuple[str, str, int]:
    """Start `runcomfy run`, SIGINT it once its job reads `until` in the ledger."""
    process = cli_process(
        "run", WAN, "-i", "prompt=interrupt me", "--base-url", sim.url, "--api-key-file", key_file
    )
    errors = lines_of(process.stderr)
    try:
        rid = request_id_of("".join(wait_for(errors, "submitted request")))
        deadline = time.monotonic() + 20
        while job(sim, rid)["state"] != until:
            assert time.monotonic() < deadline, job(sim, rid)
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:  # a failed check: leave no process behind
            process.kill()
            process.wait()
    assert process.stdout is not None
    process.stdout.close()
    err = []
    while (line := errors.get(timeout=30)) != "":  # to the end of the stream
        err.append(line)
    return rid, "".join(err), process.returncode


def test_ctrl_c_during_run_cancels_a_queued_request_and_says_so(key_file: Path) -> None:
    sim = SimProcess("--time-scale", "5", "--concurrency", "1", key=CANARY)
    try:
        common = ["--base-url", sim.url, "--api-key-file", str(key_file)]
        subprocess.run(
            [sys.executable, *CLI, "submit", WAN, "-i", "prompt=first", *common],
            capture_output=True, timeout=30, check=True,
        )  # fmt: skip
        rid, err, code = interrupted_run(sim, key_file, "in_queue")
        assert code == 130
        assert f"request {rid} was cancelled while queued" in err
        assert "Traceback" not in err
        assert job(sim, rid)["state"] == "cancelled"
        assert job(sim, rid)["charged"] == 0
    finally:
        sim.stop()


def test_ctrl_c_during_run_of_a_running_request_says_it_goes_on_and_is_billed(
    key_file: Path,
) -> None:
    sim = SimProcess("--time-scale", "5", key=CANARY)
    try:
        rid, err, code = interrupted_run(sim, key_file, "in_progress")
        assert code == 130
        assert f"request {rid} was already running: it goes on and is billed" in err
        assert hinted(err, "to wait for it again, run: ")[:3] == ["runcomfy", "wait", rid]
        assert job(sim, rid)["state"] in ("in_progress", "succeeded")
    finally:
        sim.stop()
