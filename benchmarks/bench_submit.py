"""The submit path alone: N concurrent `client.submit()` vs raw aiohttp posting the same bodies.

No engine and no polls (run times of 600 s: nothing finishes), so the figure is the CPU a
submit costs the client: validation, encoding, limiter, retry budget, telemetry hooks,
transport. Runs both `--rounds` times against one simulator in its own process;
`--profile FILE` writes a cProfile of the SDK's last round.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
from _common import KEY, WAN, SimSpec, header, simulator, verdict

import runcomfy_async as rc


def inputs(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"prompt": f"benchmark image {i}"}


async def sdk(url: str, n: int, connections: int, profile: cProfile.Profile | None) -> float:
    async with rc.Client(KEY, base_url=url, max_connections=connections, run_times=False) as client:
        cpu = time.process_time()
        if profile is not None:
            profile.enable()
        await asyncio.gather(*(client.submit(WAN, body) for body in inputs(n)))
        if profile is not None:
            profile.disable()
        return time.process_time() - cpu


async def raw(url: str, n: int, connections: int) -> float:
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: dict[str, Any]) -> None:
            headers = {"Authorization": f"Bearer {KEY}"}
            async with session.post(f"{url}/v1/models/{WAN}", json=body, headers=headers) as r:
                await r.json()

        cpu = time.process_time()
        await asyncio.gather(*(one(body) for body in inputs(n)))
        return time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", default=None, help="write a cProfile of the SDK here")
    args = parser.parse_args()
    n = args.requests
    ratios = []
    with simulator(SimSpec(models={WAN: (600.0, 600.0)})) as sim:
        header(f"Submit path: {n} concurrent submits, {args.connections} connections")
        for round_ in range(args.rounds):
            last = round_ == args.rounds - 1
            profile = cProfile.Profile() if args.profile and last else None
            raw_cpu = asyncio.run(raw(sim.url, n, args.connections))
            sdk_cpu = asyncio.run(sdk(sim.url, n, args.connections, profile))
            ratios.append(sdk_cpu / raw_cpu)
            print(
                f"round {round_ + 1}: client CPU per submit: sdk {1e3 * sdk_cpu / n:.3f} ms, "
                f"raw {1e3 * raw_cpu / n:.3f} ms ({sdk_cpu / raw_cpu:.2f}x)"
                + (" (profiled)" if profile is not None else "")
            )
            if profile is not None:
                profile.dump_stats(args.profile)
    best = min(ratios)
    print(f"target: CPU per submit <= 1.1x raw (best round {best:.2f}x): {verdict(best <= 1.1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
