"""Helpers of the CLI tests: a simulator process, the CLI in-process and as a process."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runcomfy_async._cli import main

WAN = "wan-ai/wan-2-2/text-to-image"
RUNWAY = "runwayml/runway-gen-3-alpha/turbo/image-to-video"
CANARY = "rc-cli-canary-91d4e07b2c6a"  # the only key the shared simulator accepts
CLI = ["-c", "from runcomfy_async._cli import main; raise SystemExit(main())"]


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


class SimProcess:
    """`python -m runcomfy_async.simulator` on a free port, and its ledger."""

    def __init__(self, *options: str, key: str | None = None) -> None:
        env = dict(os.environ)
        if key is not None:
            env["RUNCOMFY_SIMULATOR_API_KEY"] = key
        command = [sys.executable, "-m", "runcomfy_async.simulator", "--port", "0", *options]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("runcomfy simulator: "), line
        self.url = line.split(": ", 1)[1].strip()

    def ledger(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_sim/ledger", timeout=10) as answer:
            data: dict[str, Any] = json.load(answer)
            return data

    def submits(self) -> int:
        return int(self.ledger()["calls"].get("submit", 0))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(scope="session")
def sim() -> Iterator[SimProcess]:
    """A fast simulator shared by the tests; it accepts only CANARY as the key."""
    process = SimProcess("--time-scale", "0.05", key=CANARY)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key.txt"
    path.write_text(f"{CANARY}\nsecond line is ignored\n", encoding="utf-8")
    return path


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    """Run `runcomfy ARGS...` in this process; an Outcome. The canary never shows."""

    def run(*args: str | Path) -> Outcome:
        capsys.readouterr()
        code = main([str(arg) for arg in args])
        captured = capsys.readouterr()
        outcome = Outcome(code, captured.out, captured.err)
        assert CANARY not in outcome.text
        assert "Traceback" not in outcome.text
        return outcome

    return run


def cli_process(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`runcomfy ARGS...` as a process of its own, stdout and stderr piped."""
    return subprocess.Popen(
        [sys.executable, *CLI, *(str(arg) for arg in args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env if env is not None else dict(os.environ),
    )


def lines_of(stream: Any) -> queue.Queue[str]:
    """A queue fed with the stream's lines by a thread (so a test can wait with a timeout)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        with stream:
            for line in stream:
                lines.put(line)
        lines.put("")  # end of stream

    threading.Thread(target=pump, daemon=True).start()
    return lines


def manifest(out: Path) -> list[dict[str, Any]]:
    with (out / "manifest.jsonl").open(encoding="utf-8") as file:
        return [json.loads(line) for line in file]
