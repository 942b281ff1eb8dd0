"""Rate limits: a batch against a simulator admitting N submits/s (429 + Retry-After for the
rest). The SDK's client.map vs raw aiohttp retrying each 429 after its Retry-After."""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from typing import Any

import aiohttp
from _common import WAN, SimSpec, header, ledger, reset, simulator, table, verdict

import runcomfy_async as rc


async def sdk_batch(url: str, inputs: int, in_flight: int) -> dict[str, Any]:
    async with rc.Client("bench-key", base_url=url, validate=False) as client:
        prompts = [(WAN, {"prompt": f"p{i}"}) for i in range(inputs)]
        items = [item async for item in client.map(prompts, max_in_flight=in_flight)]
    return {"failed": sum(1 for item in items if not item.ok)}


async def raw_batch(url: str, inputs: int, in_flight: int) -> dict[str, Any]:
    """Submits only, each retried after its Retry-After (plus a little jitter) until taken."""
    rng, slots, failed = random.Random(1), asyncio.Semaphore(in_flight), 0
    headers = {"Authorization": "Bearer bench-key"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(i: int) -> None:
            async with slots:
                while True:
                    async with session.post(
                        f"{url}/v1/models/{WAN}", json={"prompt": f"p{i}"}
                    ) as r:
                        await r.read()
                        if r.status != 429:
                            return
                        wait = float(r.headers.get("Retry-After", "1"))
                    await asyncio.sleep(wait + rng.uniform(0, 0.1 * wait + 0.05))

        await asyncio.gather(*(one(i) for i in range(inputs)))
    return {"failed": failed}


def measure(kind: str, n: float, inputs: int, in_flight: int, burst: float) -> dict[str, Any]:
    spec = SimSpec(models={WAN: (0.5, 1.0)}, submit_rate=n, submit_burst=max(1.0, burst * n))
    print(f"... {kind} at N={n:g}/s", file=sys.stderr, flush=True)
    with simulator(spec) as process:
        reset(process.url)
        run = sdk_batch if kind == "sdk" else raw_batch
        started = time.monotonic()
        outcome = asyncio.run(run(process.url, inputs, in_flight))
        wall = time.monotonic() - started
        book = ledger(process.url)
    created = sorted(job["created_at"] for job in book["jobs"])
    span = created[-1] - created[0]
    rate = (len(created) - 1) / span if span > 0 else float("inf")
    submits = int(book["calls"].get("submit", 0))
    return {**outcome, "rate": rate, "jobs": len(created), "submits": submits, "wall": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", type=float, nargs="+", default=[20.0, 50.0])
    parser.add_argument("--inputs", type=int, default=300)
    parser.add_argument("--in-flight", type=int, default=300)
    parser.add_argument(
        "--burst", type=float, default=0.0, help="seconds of submits the bucket holds (0: one)"
    )
    args = parser.parse_args()
    rows, met = [], True
    for n in args.rates:
        for kind in ("sdk", "raw"):
            got = measure(kind, n, args.inputs, args.in_flight, args.burst)
            ok = got["rate"] >= 0.8 * n and got["failed"] == 0 and got["jobs"] == args.inputs
            if kind == "sdk":
                met = met and ok
            rows.append(
                [
                    f"{kind} N={n:g}/s",
                    f"{got['rate']:.1f}",
                    f"{got['rate'] / n:.2f}",
                    got["jobs"],
                    got["failed"],
                    f"{got['submits'] / args.inputs:.2f}",
                    f"{got['wall']:.1f}",
                    verdict(ok) if kind == "sdk" else "",
                ]
            )
    header(
        f"Rate limits: {args.inputs} inputs, {args.in_flight} in flight, against a simulator "
        f"admitting N submits/s (token bucket holding {args.burst:g} s of submits, at least "
        "one) and answering 429 + Retry-After to the rest"
    )
    print(
        table(
            [
                "contender",
                "admitted/s",
                "/ N",
                "jobs",
                "failed",
                "submits per input",
                "wall (s)",
                "target >= 0.8 N",
            ],
            rows,
        )
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
