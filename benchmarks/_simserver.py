"""Serve the RunComfy simulator in its own process with per-model run times (for benchmarks)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from runcomfy_async.simulator import ModelProfile, Simulator, SimulatorConfig, serve


def _model(text: str) -> tuple[str, tuple[float, float]]:
    """`MODEL_ID=LO,HI` (run time range in seconds, before time scaling)."""
    model_id, _, span = text.partition("=")
    low, _, high = span.partition(",")
    return model_id, (float(low), float(high or low))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=_model, action="append", required=True, metavar="ID=LO,HI")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--queue-delay", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--submit-rate", type=float, default=None)
    parser.add_argument("--submit-burst", type=float, default=1.0)
    parser.add_argument("--no-retry-after", action="store_true")
    args = parser.parse_args()
    config = SimulatorConfig(
        models={model_id: ModelProfile(run_time=span) for model_id, span in args.model},
        time_scale=args.time_scale,
        queue_delay=args.queue_delay,
        concurrency=args.concurrency,
        seed=args.seed,
        submit_rate=args.submit_rate,
        submit_burst=args.submit_burst,
        submit_retry_after=not args.no_retry_after,
        port=0,
    )

    def ready(sim: Simulator) -> None:
        print(f"runcomfy simulator: {sim.url}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, ready=ready))


if __name__ == "__main__":
    main()
