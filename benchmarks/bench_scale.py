"""Scale: 10,000 concurrent requests in one process with client.map(); results, errors, RSS."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from _common import (
    WAN,
    Run,
    SimSpec,
    header,
    mib,
    ratio_targets,
    run_contender,
    standard_rows,
    table,
    verdict,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000, help="requests in the batch")
    parser.add_argument(
        "--run-time", type=float, nargs=2, default=(5.0, 10.0), metavar=("LO", "HI")
    )
    parser.add_argument("--connections", type=int, default=100, help="pool size of each client")
    parser.add_argument(
        "--no-raw",
        dest="raw",
        action="store_false",
        help="skip the raw aiohttp loop (10k loops polling every --interval s: heavy)",
    )
    parser.add_argument("--interval", type=float, default=0.1, help="raw loop poll interval (s)")
    parser.add_argument(
        "--journal",
        action="store_true",
        help="also run the SDK with a SQLite journal (a fresh file), to price its writes",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=600.0, help="per contender (s)")
    args = parser.parse_args()
    n = args.requests
    sim = SimSpec(models={WAN: tuple(args.run_time)}, queue_delay=0.0, seed=args.seed)
    common = {"mix": {WAN: n}, "max_in_flight": n, "connections": args.connections}
    runs: list[Run] = [
        run_contender("sdk map", sim, {"kind": "sdk_map", **common}, timeout=args.timeout)
    ]
    if args.journal:
        journal = os.path.join(tempfile.mkdtemp(prefix="bench-journal-"), "batch.sqlite")
        spec = {"kind": "sdk_map", "journal": journal, **common}
        runs.append(run_contender("sdk map + journal", sim, spec, timeout=args.timeout))
    if args.raw:
        spec = {"kind": "raw_poll", "interval": args.interval, **common}
        runs.append(run_contender(f"raw loop {args.interval:g}s", sim, spec, timeout=args.timeout))
    header(
        f"Scale: {n} concurrent requests, run time uniform "
        f"{args.run_time[0]:g}-{args.run_time[1]:g} s, no queueing; max_in_flight={n}, "
        f"{args.connections} connections per client"
    )
    print(table(["metric", *(run.name for run in runs)], standard_rows(runs, n)))
    if not args.raw:
        print("(raw aiohttp loop not run: --no-raw)")
    print()
    sdk = runs[0]
    ok, errors = len(sdk.worker["received"]), sdk.worker["errors"]
    rss = mib(sdk.worker["rss_peak_kb"])
    print("targets (SDK):")
    print(f"  results = {ok}/{n}  (target: all): {verdict(ok == n)}")
    print(f"  errors = {errors}  (target: 0): {verdict(errors == 0)}")
    if errors:
        print(f"  first errors: {sdk.worker['error_sample']}")
    print(f"  peak RSS = {rss:.1f} MiB  (target <= 200 MB): {verdict(rss * 1.048576 <= 200)}")
    if args.journal:
        journaled = runs[1]
        w, w0 = journaled.worker["wall"], sdk.worker["wall"]
        cost = 1000 * (journaled.worker["cpu"] - sdk.worker["cpu"]) / n
        print(f"  journal: {cost:.3f} ms of client CPU per input (journaled minus plain)")
        print(
            f"  journaled wall = {w:.2f} s vs {w0:.2f} s ({w / w0:.2f}x; target <= 1.15x): "
            f"{verdict(w <= 1.15 * w0)}"
        )
    if args.raw:
        print()
        ratio_targets(sdk, runs[-1], wall=1.05, rss=0.5)
    return 0 if ok == n and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
