"""The cost of the issue-17 integrations on status throughput: the async Client, the same
with OpenTelemetry on (batch span processor, metric reader), SyncClient from threads, and a
raw aiohttp loop doing the same calls, each against the simulator in a process of its own."""

from __future__ import annotations

import argparse
import sys

from _common import WAN, Run, SimSpec, header, mib, run_contender, table, verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--callers", type=int, default=16, help="concurrent callers")
    parser.add_argument("--calls", type=int, default=5_000, help="status calls in all")
    parser.add_argument("--connections", type=int, default=100, help="pool size of each client")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0, help="per contender (s)")
    args = parser.parse_args()
    sim = SimSpec(models={WAN: (3600.0, 3600.0)}, queue_delay=0.0, seed=args.seed)
    common = {"callers": args.callers, "calls": args.calls, "connections": args.connections}
    specs = {
        "raw aiohttp": {"kind": "raw_status"},
        "Client": {"kind": "sdk_status"},
        "Client + otel": {"kind": "sdk_status", "telemetry": True},
        "SyncClient, threads": {"kind": "sync_status"},
    }
    runs = [
        run_contender(name, sim, {**spec, **common}, timeout=args.timeout)
        for name, spec in specs.items()
    ]
    header(
        f"Status throughput: {args.calls} GET /status calls from {args.callers} concurrent "
        f"callers (tasks, or threads for SyncClient) on one pool of {args.connections}"
    )
    raw = runs[0]
    rows: list[list[object]] = [
        ["status calls seen by the simulator", *(run.calls["status"] for run in runs)],
        ["wall (s)", *(f"{run.worker['wall']:.2f}" for run in runs)],
        ["calls/s", *(f"{rate(run):.0f}" for run in runs)],
        ["calls/s ratio to raw", *(f"{rate(run) / rate(raw):.2f}" for run in runs)],
        ["client CPU per call (us)", *(f"{cpu_per_call(run):.0f}" for run in runs)],
        ["peak RSS (MiB)", *(f"{mib(run.worker['rss_peak_kb']):.1f}" for run in runs)],
    ]
    print(table(["metric", *(run.name for run in runs)], rows))
    print()
    client, traced, sync = runs[1:]
    print("targets:")
    facade = rate(sync) / rate(client)
    print(f"  SyncClient / Client calls/s = {facade:.2f} (target >= 0.5): {verdict(facade >= 0.5)}")
    extra = cpu_per_call(traced) - cpu_per_call(client)
    print(f"  OpenTelemetry's client CPU per call: +{extra:.0f} us (figure, no target: the")
    print("  OpenTelemetry SDK's span and metric work; RunComfy's calls take 50-500 ms each)")
    return 0


def rate(run: Run) -> float:
    return float(run.worker["calls"]) / float(run.worker["wall"])


def cpu_per_call(run: Run) -> float:
    return 1e6 * float(run.worker["cpu"]) / float(run.worker["calls"])


if __name__ == "__main__":
    sys.exit(main())
