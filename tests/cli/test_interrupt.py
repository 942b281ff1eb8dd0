"""Ctrl-C during `runcomfy batch`: queued requests cancelled, resume command, exit 130."""

from __future__ import annotations

import queue
import shlex
import signal
import time
from pathlib import Path

from tests.cli.conftest import CANARY, WAN, SimProcess, cli_process, lines_of


def wait_for(lines: queue.Queue[str], text: str, timeout: float = 15.0) -> list[str]:
    """Lines read until one containing `text` (AssertionError after `timeout` s)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if text in line:
            return seen
        if line == "":
            break
    raise AssertionError(f"{text!r} never came; got {seen}")


def test_ctrl_c_cancels_queued_requests_and_prints_the_resume_command(
    key_file: Path, tmp_path: Path
) -> None:
    sim = SimProcess("--time-scale", "1", "--concurrency", "1", key=CANARY)
    try:
        prompts = tmp_path / "p.txt"
        prompts.write_text("".join(f"prompt {n}\n" for n in range(4)), encoding="utf-8")
        args = ["batch", WAN, str(prompts), "--out", str(tmp_path / "out")]
        args += ["--base-url", sim.url, "--api-key-file", str(key_file)]
        process = cli_process(*args)
        errors = lines_of(process.stderr)
        wait_for(errors, "runcomfy batch: ")  # the first progress line
        time.sleep(1.0)  # the submits have landed; one job runs, three wait in the queue
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
        assert process.stdout is not None
        with process.stdout:
            out = process.stdout.read()
        err = "".join(wait_for(errors, "to resume, run:"))
        assert process.returncode == 130
        assert "Traceback" not in err
        assert CANARY not in out + err
        resume = err.split("to resume, run: ", 1)[1].splitlines()[0]
        assert shlex.split(resume) == ["runcomfy", *args]
        assert "interrupted after 0 of 4 inputs" in err
        jobs = sim.ledger()["jobs"]
        states = sorted(job["state"] for job in jobs)
        assert len(jobs) == 4
        assert states.count("cancelled") == 3, states
        assert "in_queue" not in states
    finally:
        sim.stop()


def test_a_second_ctrl_c_exits_at_once(key_file: Path, tmp_path: Path) -> None:
    slow_cancel = '{"action": "latency", "endpoint": "cancel", "seconds": 10}'
    sim = SimProcess("--time-scale", "1", "--concurrency", "1", "--fault", slow_cancel, key=CANARY)
    try:
        prompts = tmp_path / "p.txt"
        prompts.write_text("one\ntwo\nthree\n", encoding="utf-8")
        process = cli_process(
            "batch", WAN, prompts, "--out", tmp_path / "out",
            "--base-url", sim.url, "--api-key-file", key_file,
        )  # fmt: skip
        errors = lines_of(process.stderr)
        wait_for(errors, "runcomfy batch: ")
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        wait_for(errors, "interrupted: cancelling")  # now stuck on the slow cancels
        time.sleep(0.3)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 130
        assert process.stdout is not None
        process.stdout.close()
        assert time.monotonic() - sent < 2.0
        wait_for(errors, "exiting without cleanup")
    finally:
        sim.stop()
