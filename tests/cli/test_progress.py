"""The batch progress display: redrawn in place on a terminal (a real pty), never wider than
it; plain lines when stderr is not a terminal. Counts by state, rate, ETA, cost so far."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

from tests.cli.conftest import CLI, WAN

FRAME = re.compile(r"\r([^\r\n]*?)\x1b\[K")
COUNTS = re.compile(r"(pending|pend|queued|queue|running|run|succeeded|ok|failed|fail) (\d+)")


def batch_in_pty(tmp_path: Path, columns: int) -> tuple[int, str, str]:
    """`runcomfy batch … --simulate` with stderr on a pty `columns` wide: (exit, stderr, out)."""
    source = tmp_path / "prompts.txt"
    source.write_text("".join(f"a fox, take {n}\n" for n in range(6)), encoding="utf-8")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    command = [sys.executable, *CLI, "batch", WAN, str(source), "--out", str(tmp_path / "out")]
    process = subprocess.Popen(
        [*command, "--simulate"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the process closed its end of the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert process.stdout is not None
    out = process.stdout.read().decode()
    process.stdout.close()
    return process.wait(timeout=60), seen.decode(), out


def test_on_a_terminal_the_progress_is_redrawn_in_place_within_its_width(tmp_path: Path) -> None:
    code, err, out = batch_in_pty(tmp_path, columns=80)
    assert code == 0, err
    frames = FRAME.findall(err)
    assert len(frames) >= 2
    assert all(len(frame) < 80 for frame in frames)  # never wraps: \r returns to its start
    assert "runcomfy batch: 0/6 done" not in err  # no plain lines on a terminal
    for frame in frames:
        counts = dict(COUNTS.findall(frame))
        assert sum(int(n) for n in counts.values()) == 6, frame  # every input in one state
        assert "/min ETA " in frame
        assert "cost $" in frame
    assert frames[0].startswith("0/6 ")
    assert frames[-1].startswith("6/6 ")
    last = dict(COUNTS.findall(frames[-1]))
    assert last.get("ok", last.get("succeeded")) == "6"
    [cost] = re.findall(r"  cost: (\$[\d.,]+)", out)
    assert frames[-1].endswith(f"cost {cost}")  # the cost so far ends at the summary's
    assert err.index(frames[-1]) < len(err) - len(frames[-1])  # a line break after it


def test_a_wide_terminal_gets_the_bar_and_every_word(tmp_path: Path) -> None:
    code, err, _ = batch_in_pty(tmp_path, columns=200)
    assert code == 0, err
    frames = FRAME.findall(err)
    assert frames[-1].startswith("[####################] 6/6 | pending 0 queued 0 running 0 ")
    assert "succeeded 6 failed 0 | " in frames[-1]


def test_without_a_terminal_progress_is_plain_lines(tmp_path: Path) -> None:
    source = tmp_path / "prompts.txt"
    source.write_text("a fox\nan owl\n", encoding="utf-8")
    command = [sys.executable, *CLI, "batch", WAN, str(source), "--out", str(tmp_path / "out")]
    done = subprocess.run(
        [*command, "--simulate"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    assert "\x1b[" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if " done (" in line]
    assert lines[0].startswith("runcomfy batch: 0/2 done (pending ")
    assert lines[-1].startswith("runcomfy batch: 2/2 done (pending 0, queued 0, running 0, ")
    assert lines[-1].endswith(", cost $0.0800")
