"""The client side of each benchmark, run in a process of its own: `_contenders.py SPEC_JSON`."""

# Each contender measures wall time, CPU time (time.process_time) and RSS around its work
# only (opening and closing the client or session are outside), records time.monotonic() as
# each request's result arrives, and prints one JSON line. The raw contenders import aiohttp
# only, so their RSS carries nothing of the SDK.

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import aiohttp

WAN = "wan-ai/wan-2-2/text-to-image"
RUNWAY = "runwayml/runway-gen-3-alpha/turbo/image-to-video"
TERMINAL = frozenset({"completed", "succeeded", "failed", "cancelled"})
KEY = "rk-bench-5f0c2a9e7d1b4c3a8e6f9d2b"  # a real key's length: the SDK scrubs answers of it
HEADERS = {"Authorization": f"Bearer {KEY}", "Accept": "application/json"}
Spec = dict[str, Any]
Work = Callable[[], Awaitable[dict[str, Any]]]


def inputs_of(mix: dict[str, int]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(model_id, inputs) pairs, the models interleaved round-robin: `mix` is model -> count."""
    left = dict(mix)
    index = 0
    while any(left.values()):
        for model_id in list(left):
            if left[model_id] <= 0:
                continue
            left[model_id] -= 1
            index += 1
            if model_id == RUNWAY:
                yield (
                    model_id,
                    {
                        "promptText": f"benchmark clip {index}",
                        "promptImage": "https://example.com/frame.png",
                    },
                )
            else:
                yield model_id, {"prompt": f"benchmark image {index}"}


def rss_kb() -> int:
    """Current resident set size of this process, in KiB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


async def clock_offset(url: str, samples: int = 7) -> dict[str, float]:
    """Simulator clock minus this process's time.monotonic(), from the fastest of `samples`
    GET /_sim/ledger round trips (the ledger is empty at this point, so the answer is small)."""
    best: tuple[float, float] | None = None
    async with aiohttp.ClientSession() as session:
        for _ in range(samples):
            before = time.monotonic()
            async with session.get(f"{url}/_sim/ledger") as response:
                now = float((await response.json())["now"])
            after = time.monotonic()
            rtt = after - before
            if best is None or rtt < best[1]:
                best = (now - (before + after) / 2, rtt)
    assert best is not None
    return {"offset": best[0], "rtt": best[1]}


async def measured(spec: Spec, work: Work) -> dict[str, Any]:
    """Run `work` between readings of the clocks and RSS; merge them into its answer."""
    clock = await clock_offset(spec["url"])
    rss_before = rss_kb()
    profile = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
    start, cpu_start = time.monotonic(), time.process_time()
    if profile is not None:
        profile.enable()
    answer = await work()
    if profile is not None:
        profile.disable()
        profile.dump_stats(f"{os.environ['BENCH_PROFILE']}.{spec['kind']}")
    cpu = time.process_time() - cpu_start
    wall = time.monotonic() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        **answer,
        "start": start,
        "wall": wall,
        "cpu": cpu,
        "rss_before_kb": rss_before,
        "rss_peak_kb": peak,
        "clock": clock,
    }


# ---------------------------------------------------------------------- fan-out


async def sdk_map(spec: Spec) -> dict[str, Any]:
    """client.map() over the inputs; a PollPolicy from spec["poll"] if given, the run-times
    cache file spec["run_times"] if given (none otherwise). With
    spec["warmup"] (model -> count), the client first runs that batch unmeasured so that it
    has learnt the models' run times, then resets the simulator's ledger."""
    import runcomfy_async as rc

    policy = rc.PollPolicy(**spec["poll"]) if spec.get("poll") else None
    received: dict[str, float] = {}
    errors: list[str] = []
    async with rc.Client(
        KEY,
        base_url=spec["url"],
        poll=policy,
        max_connections=spec["connections"],
        run_times=spec.get("run_times", False),  # a cache file only where the spec says
    ) as client:
        if spec.get("warmup"):
            async with client.map(inputs_of(spec["warmup"]), max_in_flight=10_000) as batch:
                async for item in batch:
                    if not item.ok:
                        raise RuntimeError(f"warm-up request failed: {item.error!r}")
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{spec['url']}/_sim/reset") as response,
            ):
                response.raise_for_status()

        async def work() -> dict[str, Any]:
            batch = client.map(
                inputs_of(spec["mix"]),
                max_in_flight=spec["max_in_flight"],
                journal=spec.get("journal"),
            )
            async with batch:
                async for item in batch:
                    now = time.monotonic()
                    if item.ok and item.request_id is not None:
                        received[item.request_id] = now
                    else:
                        errors.append(repr(item.error))
            return {"received": received, "errors": len(errors), "error_sample": errors[:3]}

        return await measured(spec, work)


async def raw_poll(spec: Spec) -> dict[str, Any]:
    """The peer approach: per request, submit, GET /status every `interval` s until it is
    terminal, then GET /result; at most `max_in_flight` requests at once."""
    url, interval = spec["url"], float(spec["interval"])
    received: dict[str, float] = {}
    errors: list[str] = []
    slots = asyncio.Semaphore(spec["max_in_flight"])
    connector = aiohttp.TCPConnector(limit=spec["connections"])
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(model_id: str, inputs: dict[str, Any]) -> None:
            async with slots:
                async with session.post(
                    f"{url}/v1/models/{model_id}", json=inputs, headers=HEADERS
                ) as response:
                    response.raise_for_status()
                    rid = (await response.json())["request_id"]
                while True:
                    async with session.get(
                        f"{url}/v1/requests/{rid}/status", headers=HEADERS
                    ) as response:
                        response.raise_for_status()
                        state = (await response.json())["status"]
                    if state in TERMINAL:
                        break
                    await asyncio.sleep(interval)
                async with session.get(
                    f"{url}/v1/requests/{rid}/result", headers=HEADERS
                ) as response:
                    response.raise_for_status()
                    body = await response.json()
                now = time.monotonic()
                if body.get("status") == "succeeded":
                    received[rid] = now
                else:
                    errors.append(f"{rid}: {body.get('status')} {body.get('error')}")

        async def work() -> dict[str, Any]:
            tasks = [one(model_id, inputs) for model_id, inputs in inputs_of(spec["mix"])]
            for outcome in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    errors.append(repr(outcome))
            return {"received": received, "errors": len(errors), "error_sample": errors[:3]}

        return await measured(spec, work)


# ---------------------------------------------------------------------- status throughput


async def _spread(callers: int, calls: int, call: Callable[[int], Awaitable[None]]) -> None:
    """`calls` awaits of `call(caller)`, shared as evenly as possible by `callers` tasks."""

    async def caller(index: int, count: int) -> None:
        for _ in range(count):
            await call(index)

    share, extra = divmod(calls, callers)
    await asyncio.gather(*(caller(i, share + (i < extra)) for i in range(callers)))


async def sdk_status(spec: Spec) -> dict[str, Any]:
    """client.status() from `callers` tasks on one client (one connection pool)."""
    import runcomfy_async as rc

    async with rc.Client(
        KEY,
        base_url=spec["url"],
        max_connections=spec["connections"],
        telemetry=_telemetry() if spec.get("telemetry") else False,
    ) as client:
        ids = [
            (await client.submit(model_id, inputs)).request_id
            for model_id, inputs in inputs_of({WAN: spec["callers"]})
        ]

        async def call(index: int) -> None:
            await client.status(ids[index])

        async def work() -> dict[str, Any]:
            await _spread(spec["callers"], spec["calls"], call)
            return {"calls": spec["calls"]}

        return await measured(spec, work)


def _telemetry() -> Any:
    """OpenTelemetry as a service runs it: the SDK's batch span processor (to an exporter
    that drops what it is given) and a metric reader."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from runcomfy_async.otel import OpenTelemetry

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return OpenTelemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)


async def sync_status(spec: Spec) -> dict[str, Any]:
    """SyncClient.status() from `callers` threads on one SyncClient (one connection pool)."""
    from concurrent.futures import ThreadPoolExecutor

    import runcomfy_async as rc

    with rc.SyncClient(KEY, base_url=spec["url"], max_connections=spec["connections"]) as client:
        ids = [
            client.submit(model_id, inputs).request_id
            for model_id, inputs in inputs_of({WAN: spec["callers"]})
        ]
        share, extra = divmod(spec["calls"], spec["callers"])

        def caller(index: int) -> None:
            for _ in range(share + (index < extra)):
                client.status(ids[index])

        async def work() -> dict[str, Any]:
            with ThreadPoolExecutor(spec["callers"]) as pool:
                list(pool.map(caller, range(spec["callers"])))
            return {"calls": spec["calls"]}

        return await measured(spec, work)


async def raw_status(spec: Spec) -> dict[str, Any]:
    """GET /status with aiohttp and `response.json()` from `callers` tasks on one session."""
    url = spec["url"]
    connector = aiohttp.TCPConnector(limit=spec["connections"])
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        ids = []
        for model_id, inputs in inputs_of({WAN: spec["callers"]}):
            async with session.post(
                f"{url}/v1/models/{model_id}", json=inputs, headers=HEADERS
            ) as response:
                ids.append((await response.json())["request_id"])

        async def call(index: int) -> None:
            async with session.get(
                f"{url}/v1/requests/{ids[index]}/status", headers=HEADERS
            ) as response:
                response.raise_for_status()
                if not (await response.json())["status"]:  # read it, as a caller would
                    raise RuntimeError("a status answer without a state")

        async def work() -> dict[str, Any]:
            await _spread(spec["callers"], spec["calls"], call)
            return {"calls": spec["calls"]}

        return await measured(spec, work)


CONTENDERS: dict[str, Callable[[Spec], Coroutine[Any, Any, dict[str, Any]]]] = {
    "sdk_map": sdk_map,
    "raw_poll": raw_poll,
    "sdk_status": sdk_status,
    "raw_status": raw_status,
    "sync_status": sync_status,
}


def main() -> None:
    spec: Spec = json.loads(sys.argv[1])
    answer: dict[str, Any] = asyncio.run(CONTENDERS[spec["kind"]](spec))
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
