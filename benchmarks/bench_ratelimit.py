"""Rate limits: a batch against a simulator admitting N submits/s (429 for the rest, with a
Retry-After or, as RunComfy documents, none). The SDK's client.map, the same with the pace
law it had before (CUBIC-like), and raw aiohttp retrying each 429 after its Retry-After (with
none: after up to 0.5 s), in turn on one simulator per setting."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import sys
import time
from typing import Any

import aiohttp
from _common import WAN, SimSpec, header, ledger, reset, simulator, table, verdict
from _cubic_pace import CubicRate

import runcomfy_async as rc
from runcomfy_async import _transport
from runcomfy_async._limiter import AdaptiveRate

CONTENDERS = ("sdk", "sdk-cubic", "raw")


async def sdk_batch(url: str, inputs: int, in_flight: int, law: Any) -> dict[str, Any]:
    saved = _transport.AdaptiveRate
    _transport.AdaptiveRate = law  # the transport builds its pace from this name
    try:
        async with rc.Client("bench-key", base_url=url, validate=False) as client:
            prompts = [(WAN, {"prompt": f"p{i}"}) for i in range(inputs)]
            items = [item async for item in client.map(prompts, max_in_flight=in_flight)]
    finally:
        _transport.AdaptiveRate = saved
    return {"failed": sum(1 for item in items if not item.ok)}


async def raw_batch(url: str, inputs: int, in_flight: int) -> dict[str, Any]:
    """Submits only, each retried after its Retry-After (plus a little jitter), or with none
    after up to 0.5 s, until taken."""
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
                        told = r.headers.get("Retry-After")
                    if told is None:
                        await asyncio.sleep(rng.uniform(0, 0.5))
                    else:
                        wait = float(told)
                        await asyncio.sleep(wait + rng.uniform(0, 0.1 * wait + 0.05))

        await asyncio.gather(*(one(i) for i in range(inputs)))
    return {"failed": failed}


def measure(kind: str, url: str, inputs: int, in_flight: int) -> dict[str, Any]:
    time.sleep(1.0)  # the bucket refills while idle: each contender starts on a full one
    reset(url)
    started = time.monotonic()
    if kind == "raw":
        outcome = asyncio.run(raw_batch(url, inputs, in_flight))
    else:
        law = AdaptiveRate if kind == "sdk" else CubicRate
        outcome = asyncio.run(sdk_batch(url, inputs, in_flight, law))
    wall = time.monotonic() - started
    book = ledger(url)
    created = sorted(job["created_at"] for job in book["jobs"])
    span = created[-1] - created[0]
    rate = (len(created) - 1) / span if span > 0 else float("inf")
    submits = int(book["calls"].get("submit", 0))
    return {**outcome, "rate": rate, "jobs": len(created), "submits": submits, "wall": wall}


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    low, high = min(values), max(values)
    return (
        fmt.format(low)
        if fmt.format(low) == fmt.format(high)
        else f"{fmt.format(low)}-{fmt.format(high)}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", type=float, nargs="+", default=[5.0, 20.0, 50.0])
    parser.add_argument(
        "--bursts",
        type=float,
        nargs="+",
        default=[0.0, 0.25],
        help="seconds of submits the bucket holds (0: exactly one token)",
    )
    parser.add_argument(
        "--retry-after",
        choices=("yes", "no"),
        nargs="+",
        default=["yes", "no"],
        help="whether a 429 carries Retry-After (RunComfy documents none)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="inputs = N x this (at least 40)"
    )
    parser.add_argument("--in-flight", type=int, default=300)
    args = parser.parse_args()
    rows, met = [], True
    for told, burst, n in itertools.product(args.retry_after, args.bursts, args.rates):
        inputs = max(40, round(n * args.seconds))
        tokens = max(1.0, burst * n)
        spec = SimSpec(
            models={WAN: (0.5, 1.0)},
            submit_rate=n,
            submit_burst=tokens,
            retry_after=told == "yes",
        )
        got: dict[str, list[dict[str, Any]]] = {kind: [] for kind in CONTENDERS}
        with simulator(spec) as process:
            for run in range(args.runs):
                order = CONTENDERS[run % 3 :] + CONTENDERS[: run % 3]  # share the noise
                for kind in order:
                    print(
                        f"... {kind} N={n:g}/s burst={tokens:g} Retry-After {told} run {run + 1}",
                        file=sys.stderr,
                        flush=True,
                    )
                    got[kind].append(measure(kind, process.url, inputs, args.in_flight))
        raw_median = statistics.median(r["rate"] for r in got["raw"])
        for kind in CONTENDERS:
            runs = got[kind]
            ratios = [r["rate"] / n for r in runs]
            complete = all(r["failed"] == 0 and r["jobs"] == inputs for r in runs)
            ok = min(ratios) >= 0.8 and complete
            if kind == "sdk":
                met = met and ok
            rows.append(
                [
                    f"{kind} N={n:g}/s {'1 token' if tokens == 1 else f'{tokens:g} tokens'}"
                    f"{'' if told == 'yes' else ', no Retry-After'}",
                    spread(ratios),
                    f"{statistics.median(r['rate'] for r in runs) / raw_median:.2f}",
                    sum(r["failed"] for r in runs),
                    spread([r["submits"] / inputs for r in runs]),
                    spread([r["wall"] for r in runs], "{:.1f}"),
                    verdict(ok) if kind != "raw" else "",
                ]
            )
    header(
        f"Rate limits: N x {args.seconds:g} s of inputs (at least 40), {args.in_flight} in "
        f"flight, {args.runs} runs each (ranges), against a simulator admitting N submits/s "
        "(a token bucket holding one token or 0.25 s of submits) and answering 429 to the "
        "rest, with Retry-After or without"
    )
    print(
        table(
            [
                "contender",
                "admitted / N",
                "median / raw",
                "failed",
                "submits per input",
                "wall (s)",
                "every run >= 0.8 N",
            ],
            rows,
        )
    )
    print(
        "\nsdk: this SDK's client.map; sdk-cubic: the same with the pace law before #11.7's "
        "fix (benchmarks/_cubic_pace.py); raw: aiohttp, each 429 retried after its Retry-After "
        "(none: up to 0.5 s)"
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
