"""Journal overhead per input: PostgreSQL with 1, 2 and 4 worker processes vs SQLite with one.

Each input goes through what a batch writes for it: claim (marked sending, a slot taken),
tracked (request_id), finished. Requests take no time here, so the figures are the
journal's own cost. Every worker reads all the inputs, as `runcomfy batch` workers do: it
sends those it claims first and replays the others (waiting while another worker holds
one). The PostgreSQL server is a throwaway one on loopback (tests/pgserver.py), fsync on.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runcomfy_async._journal import Entry, Journal  # noqa: E402

MODEL = "wan-ai/wan-2-2/text-to-image"


def body(i: int) -> bytes:
    return b'{"prompt": "fox %d"}' % i


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _work(journal: Any, n: int, window: int) -> tuple[int, list[float], float]:
    """Run n inputs through `journal`, `window` at a time as a batch does: (inputs this
    worker sent, their claim latencies in s, wall in s)."""
    sent, latencies = 0, []
    slots = asyncio.Semaphore(window)

    async def one(i: int) -> None:
        nonlocal sent
        key = f"k{i}"
        try:
            before = time.perf_counter()
            row = await _maybe(
                journal.claim(
                    key, i, None, MODEL, body(i), retry_failed=False, resubmit_unknown=False
                )
            )
            if row.send:
                latencies.append(time.perf_counter() - before)
                await _maybe(journal.tracked(key, f"req-{i}"))
                await _maybe(
                    journal.finished(key, Entry.SUCCEEDED, outputs={"i": i}, error=None, cost=0.01)
                )
                sent += 1
        finally:
            slots.release()

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for i in range(n):
            await slots.acquire()
            group.create_task(one(i))
    return sent, latencies, time.perf_counter() - started


def _pg_worker(dsn: str, batch: str, n: int, cap: int, window: int, out: Any, go: Any) -> None:
    from runcomfy_async._pgjournal import open_journal

    async def main() -> tuple[int, list[float], float]:
        journal = await open_journal(dsn, batch)
        await journal.join(max_in_flight=cap, saves_files=False)
        go.wait()
        try:
            return await _work(journal, n, window)
        finally:
            await journal.close()

    out.put(asyncio.run(main()))


def run_pg(dsn: str, workers: int, n: int, cap: int, window: int) -> dict[str, float]:
    batch = f"bench-{uuid.uuid4().hex[:8]}"
    ctx = multiprocessing.get_context("spawn")
    out, go = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_pg_worker, args=(dsn, batch, n, cap, window, out, go))
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    time.sleep(1.0)  # every worker connected and joined
    started = time.perf_counter()
    go.set()
    results = [out.get(timeout=600) for _ in procs]
    wall = time.perf_counter() - started
    for proc in procs:
        proc.join()
    sent = sum(result[0] for result in results)
    assert sent == n, f"{sent} sends for {n} inputs"
    latencies = [latency for result in results for latency in result[1]]
    return summary(n, wall, latencies)


def run_sqlite(n: int, window: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        journal = Journal(os.path.join(folder, "journal.sqlite"))
        try:
            sent, latencies, wall = asyncio.run(_work(journal, n, window))
        finally:
            asyncio.run(_maybe(journal.close()))
    assert sent == n
    return summary(n, wall, latencies)


def summary(n: int, wall: float, latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100)
    return {"rate": n / wall, "p50": cuts[49] * 1000, "p99": cuts[98] * 1000, "wall": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inputs", type=int, default=2000, help="inputs per contender")
    parser.add_argument("--cap", type=int, default=64, help="max_in_flight of the batch")
    parser.add_argument("--window", type=int, default=64, help="inputs a worker reads ahead")
    args = parser.parse_args()
    from tests.pgserver import running

    sqlite = run_sqlite(args.inputs, args.window)
    rows = [("SQLite, 1 process", sqlite)]
    with running(fsync=True) as server:
        for workers in (1, 2, 4):
            rows.append(
                (
                    f"PostgreSQL, {workers} workers",
                    run_pg(server.dsn(), workers, args.inputs, args.cap, args.window),
                )
            )
    print(
        f"Journal overhead: {args.inputs} inputs (claim + tracked + finished each), "
        f"max_in_flight {args.cap}, {os.cpu_count()} cores"
    )
    print(f"{'contender':<26}{'inputs/s':>10}{'vs SQLite':>11}{'claim p50 ms':>14}{'p99 ms':>9}")
    for name, figures in rows:
        ratio = figures["rate"] / sqlite["rate"]
        print(
            f"{name:<26}{figures['rate']:>10.0f}{ratio:>10.2f}x"
            f"{figures['p50']:>14.2f}{figures['p99']:>9.2f}"
        )
    print(
        "\ncommand: python benchmarks/bench_journal.py "
        f"--inputs {args.inputs} --cap {args.cap} --window {args.window}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
