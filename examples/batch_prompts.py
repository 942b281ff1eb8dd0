"""Hundreds of prompts through client.map, with live progress, a journal and downloads.

    python examples/batch_prompts.py [COUNT]

Run it again (or after a Ctrl-C) and it resumes from out/batch/journal.sqlite: prompts that
finished come back `resumed`, nothing is paid for twice, and only what is left is sent.
"""

import sys
import time
from pathlib import Path

import anyio
from _backend import connect

import runcomfy_async as rc
from runcomfy_async import models


async def main(prompts: list[str], count: int) -> None:
    # Each prompt of the file again and again, each time with another seed: `count` distinct
    # inputs (the journal knows an input by its content, so no two may be the same).
    inputs = [
        models.Wan22TextToImage(prompt=prompts[n % len(prompts)], seed=n) for n in range(count)
    ]
    shown = 0.0

    def show(change: rc.Change) -> None:  # called on every state change: print twice a second
        nonlocal shown
        if time.monotonic() - shown >= 0.5:
            shown = time.monotonic()
            p = batch.progress
            line = (
                f"{p.done}/{count} done: {p.queued} queued, {p.running} running, {p.failed} failed"
            )
            print(f"\r{line}", end="", file=sys.stderr, flush=True)

    async with connect(time_scale=0.1) as client:
        batch = client.map(
            inputs, journal="out/batch/journal.sqlite", download_to="out/batch", on_change=show
        )
        resumed = 0
        async with batch:  # leaving early (Ctrl-C) cancels what is still queued
            async for item in batch:
                resumed += item.resumed  # finished in an earlier run: read from the journal
                if not item.ok:
                    print(f"\ninput {item.index} failed: {item.error}", file=sys.stderr)
    p = batch.progress
    print(f"\n{p.succeeded} succeeded, {p.failed} failed, {resumed} resumed; files in out/batch/")
    print("Run it again and it resumes from out/batch/journal.sqlite: nothing is sent twice.")


if __name__ == "__main__":
    Path("out/batch").mkdir(parents=True, exist_ok=True)
    text = Path(__file__).with_name("prompts.txt").read_text(encoding="utf-8")
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    anyio.run(main, prompts, int(sys.argv[1]) if len(sys.argv) > 1 else 300)
