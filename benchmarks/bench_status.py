"""Status throughput: client.status() vs raw aiohttp GET /status, same callers, same calls."""

from __future__ import annotations

import argparse
import sys

from _common import WAN, Run, SimSpec, header, mib, run_contender, table, verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--callers", type=int, default=64, help="concurrent calling tasks")
    parser.add_argument("--calls", type=int, default=20_000, help="status calls in all")
    parser.add_argument("--connections", type=int, default=100, help="pool size of each client")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0, help="per contender (s)")
    args = parser.parse_args()
    # Requests that stay in progress for the whole run: every answer is the same size.
    sim = SimSpec(models={WAN: (3600.0, 3600.0)}, queue_delay=0.0, seed=args.seed)
    common = {"callers": args.callers, "calls": args.calls, "connections": args.connections}
    sdk = run_contender("sdk status()", sim, {"kind": "sdk_status", **common}, timeout=args.timeout)
    raw = run_contender("raw aiohttp", sim, {"kind": "raw_status", **common}, timeout=args.timeout)
    header(
        f"Status throughput: {args.calls} GET /status calls from {args.callers} concurrent "
        f"callers on one connection pool ({args.connections} connections), one request each"
    )
    rows: list[list[object]] = [
        ["status calls seen by the simulator", *(run.calls["status"] for run in (sdk, raw))],
        ["wall (s)", *(f"{run.worker['wall']:.2f}" for run in (sdk, raw))],
        ["calls/s", *(f"{rate(run):.0f}" for run in (sdk, raw))],
        ["client CPU (s)", *(f"{run.worker['cpu']:.2f}" for run in (sdk, raw))],
        ["client CPU per call (us)", *(f"{cpu_per_call(run):.0f}" for run in (sdk, raw))],
        ["client CPU busy (% of wall)", *(f"{busy(run):.0f}" for run in (sdk, raw))],
        ["simulator CPU (s)", *(f"{run.sim_cpu:.2f}" for run in (sdk, raw))],
        ["peak RSS (MiB)", *(f"{mib(run.worker['rss_peak_kb']):.1f}" for run in (sdk, raw))],
    ]
    print(table(["metric", sdk.name, raw.name], rows))
    print()
    ratio = rate(sdk) / rate(raw)
    print("targets (SDK):")
    print(f"  calls/s ratio sdk / raw = {ratio:.2f}  (target >= 0.8): {verdict(ratio >= 0.8)}")
    print(f"  client CPU per call ratio sdk / raw = {cpu_per_call(sdk) / cpu_per_call(raw):.2f}")
    return 0


def rate(run: Run) -> float:
    return float(run.worker["calls"]) / float(run.worker["wall"])


def cpu_per_call(run: Run) -> float:
    return 1e6 * float(run.worker["cpu"]) / float(run.worker["calls"])


def busy(run: Run) -> float:
    return 100 * float(run.worker["cpu"]) / float(run.worker["wall"])


if __name__ == "__main__":
    sys.exit(main())
