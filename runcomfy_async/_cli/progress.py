"""What `runcomfy batch` shows as it runs and ends: the tally, the live progress, the summary."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from .._items import Item, Outcome, Progress
from .output import duration, one_line, usd

__all__ = ["ProgressDisplay", "Tally", "print_summary"]

TTY_INTERVAL = 0.1  # seconds between redraws of the progress bar (at most 10 a second)
PLAIN_INTERVAL = 5.0  # seconds between progress lines when stderr is not a terminal
BAR_WIDTH = 20
FAILURES_SHOWN = 5  # failure reasons the summary prints (all are in the manifest)


@dataclass
class Tally:
    """Counts of a batch's inputs by outcome, as the summary reports them: from the items of
    this run, then (settle()) from the journal for inputs the run ended without an item."""

    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    unknown: int = 0
    running: int = 0  # left running when the batch ended early: it goes on, billed
    not_sent: int = 0
    resumed: int = 0
    downloads_failed: int = 0
    cost: float = 0.0
    priced: bool = False  # some item carried a cost
    failures: list[str] = field(default_factory=list)  # the first few reasons
    seen: set[str] = field(default_factory=set)  # keys of the items received

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.cancelled + self.unknown

    def add(self, outcome: str, *, resumed: bool, cost: float | None) -> None:
        setattr(self, outcome.replace(" ", "_"), getattr(self, outcome.replace(" ", "_")) + 1)
        self.resumed += resumed
        if cost is not None:
            self.cost += cost
            self.priced = True

    def record(self, item: Item) -> None:
        """Count an item of the batch, by its Outcome (the summary's word for it)."""
        outcome = Outcome.of(item.error)
        self.seen.add(str(item.key))
        self.add(outcome, resumed=item.resumed, cost=item.result.cost if item.result else None)
        if item.result is not None and item.error is not None:
            self.downloads_failed += 1
        shown = len(self.failures) < FAILURES_SHOWN
        if item.error is not None and outcome is not Outcome.CANCELLED and shown:
            where = f"line {item.line}" if item.line is not None else f"input {item.index}"
            self.failures.append(f"{where}: {item.error}")

    def settle(self, keys: Iterable[str], words: Mapping[str, str]) -> None:
        """Count the inputs (journal keys) that got no item: `words` is the journal's word
        for each key (its state); one it never took was not sent."""
        for key in keys:
            if key not in self.seen:
                self.seen.add(key)
                self.add(words.get(key, "not sent"), resumed=False, cost=None)


class ProgressDisplay:
    """Live batch progress on stderr: a line redrawn in place on a terminal (cut to its width,
    so it never wraps), else a plain line every few seconds. `total` is the number of inputs;
    `tally` counts resumed items (left out of the rate) and the cost so far."""

    def __init__(
        self,
        total: int,
        tally: Tally,
        *,
        tty: bool,
        clock: Callable[[], float],
        width: Callable[[], int] = lambda: 100,
    ) -> None:
        self.total = total
        self.tally = tally
        self.tty = tty
        self._clock = clock
        self._width = width
        self._started = clock()
        self._shown = ""

    @classmethod
    def for_stderr(cls, total: int, tally: Tally) -> ProgressDisplay:
        isatty = getattr(sys.stderr, "isatty", None)
        tty = bool(isatty and isatty())
        return cls(total, tally, tty=tty, clock=time.monotonic, width=_stderr_width)

    async def run(self, progress: Progress) -> None:
        """Redraw until cancelled."""
        interval = TTY_INTERVAL if self.tty else PLAIN_INTERVAL
        while True:
            self.draw(progress)
            await anyio.sleep(interval)

    def draw(self, progress: Progress) -> None:
        text = self.text(progress)
        if text == self._shown:
            return
        self._shown = text
        if self.tty:
            sys.stderr.write(f"\r{text}\x1b[K")
            sys.stderr.flush()
        else:
            print(f"runcomfy batch: {text}", file=sys.stderr, flush=True)

    def finish(self, progress: Progress) -> None:
        """The last state, and a line break after the bar."""
        self.draw(progress)
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()

    def text(self, progress: Progress) -> str:
        done = progress.done
        unread = max(self.total - progress.read, 0)  # not read yet: pending to the user too
        states = [
            ("pending", "pend", progress.pending + unread),
            ("queued", "queue", progress.submitted + progress.queued),
            ("running", "run", progress.running),
            ("succeeded", "ok", progress.succeeded),
            ("failed", "fail", progress.failed),
        ]
        if progress.cancelled:
            states.append(("cancelled", "cxl", progress.cancelled))
        if progress.unfinished:
            states.append(("left running", "left", progress.unfinished))
        elapsed = max(self._clock() - self._started, 1e-9)
        live = max(done - self.tally.resumed, 0)
        rate = live / elapsed * 60.0  # items per minute, finished in this run
        left = max(self.total - done, 0)
        eta = duration(left / rate * 60.0) if rate > 0 else "?"
        cost = usd(self.tally.cost)
        if not self.tty:
            counts = ", ".join(f"{word} {n}" for word, _, n in states)
            return f"{done}/{self.total} done ({counts}), {rate:.1f}/min, ETA {eta}, cost {cost}"
        filled = BAR_WIDTH * done // self.total if self.total else BAR_WIDTH
        bar = "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "] "
        tail = f"{rate:.1f}/min ETA {eta} | cost {cost}"
        long = " ".join(f"{word} {n}" for word, _, n in states)
        short = " ".join(f"{word} {n}" for _, word, n in states)
        room = max(self._width() - 1, 20)  # the last column would wrap on some terminals
        for line in (
            f"{bar}{done}/{self.total} | {long} | {tail}",
            f"{done}/{self.total} | {long} | {tail}",
            f"{done}/{self.total} {short} | {tail}",
        ):
            if len(line) <= room:
                return line
        return line[:room]


def _stderr_width() -> int:
    """Columns of the terminal stderr writes to ($COLUMNS wins), else 100."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns or 100
    except (OSError, ValueError, AttributeError):
        return 100


def print_summary(
    tally: Tally, skipped: int, wall: float, out: Path, manifest: Path, journal: Path | str
) -> None:
    """The end-of-batch summary, on stdout."""
    t = tally
    counts = f"{t.succeeded} succeeded, {t.failed} failed, {t.cancelled} cancelled"
    total = t.done + t.running + t.not_sent
    head = f"runcomfy batch: {total} inputs: {counts}, {t.unknown} unknown"
    lines = [head + f", {t.running} still running, {t.not_sent} not sent"]
    if skipped:
        lines.append(f"  skipped lines: {skipped} (reported above with their line numbers)")
    if t.downloads_failed:
        lines.append(f"  downloads failed: {t.downloads_failed} (counted as failed)")
    if t.resumed:
        lines.append(f"  resumed from the journal: {t.resumed}")
    if t.failures:
        shown = len(t.failures)
        more = f"first {shown}; " if t.failed + t.unknown > shown else ""
        lines.append(f"  failures ({more}all in the manifest):")
        lines += [f"    {one_line(reason)[:300]}" for reason in t.failures]
    if t.running:
        lines.append(
            f"  still running: {t.running} requests go on (billed); their request_ids are in "
            'the manifest (state "running"); a rerun re-attaches to them'
        )
    if t.unknown:
        lines.append(
            "  unknown: submits whose outcome is unknown were not resent; check your RunComfy "
            "dashboard, or rerun with --resubmit-unknown"
        )
    if t.failed:
        lines.append("  failed: a rerun keeps them failed; --retry-failed submits them again")
    lines += [
        f"  cost: {usd(t.cost) if t.priced else 'not reported'}",
        f"  wall time: {duration(wall)}",
        f"  files: {out}",
        f"  manifest: {manifest}",
        f"  journal: {journal}",
    ]
    print("\n".join(lines), flush=True)
