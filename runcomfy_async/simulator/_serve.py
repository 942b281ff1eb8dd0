"""The command line: `python -m runcomfy_async.simulator` serves until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable

import msgspec

from ._config import ALTERNATIVE_STATE_WORDS, Quirks, SimulatorConfig
from ._faults import FaultRule, parse_rules
from ._simulator import Simulator

API_KEY_ENV = "RUNCOMFY_SIMULATOR_API_KEY"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to `parser` (shared with the `runcomfy simulator` CLI)."""
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    add("--port", type=int, default=8000, help="port, 0 for any free one (default: %(default)s)")
    add("--time-scale", type=float, default=1.0, help="multiplies run times and queue delay")
    add("--queue-delay", type=float, default=0.5, help="seconds before a job may start")
    add("--concurrency", type=int, default=None, help="jobs running at once (default: no cap)")
    add("--failure-rate", type=float, default=0.0, help="share of runs that fail, 0..1")
    add("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    add("--balance", type=float, default=None, help="account credit in USD (default: no cap)")
    add("--output-ttl", type=float, default=None, help="seconds outputs stay downloadable")
    add("--files-base-url", default=None, help="base URL written in output file URLs")
    add("--not-ready", choices=("status", "400005"), default="status")
    add("--failed-status", choices=("completed", "failed"), default="completed")
    add("--submit-style", choices=("full", "minimal"), default="full")
    add("--errors-as-200", action="store_true", help="answer API errors as HTTP 200")
    add("--submit-rate", type=float, default=None, help="submits admitted per second (429 else)")
    add("--submit-burst", type=float, default=1.0, help="submits admitted at once (default: 1)")
    add(
        "--no-retry-after",
        action="store_true",
        help="answer rate-limited submits with no Retry-After header",
    )
    add(
        "--fetch-inputs",
        action="store_true",
        help="read every file input of a submit (URL or data: URI) as RunComfy does",
    )
    add("--fresh-404", type=float, default=0.0, help="seconds a new request_id answers 404")
    add(
        "--unknown-model",
        choices=("400001", "404"),
        default="400001",
        help="answer to an unknown model id: HTTP 400 400001 (the docs) or HTTP 404",
    )
    add(
        "--cancel-style",
        choices=("cancelled", "requested"),
        default="cancelled",
        help="a queued request's cancel: `cancelled` at once, or `cancellation_requested`",
    )
    add("--cancel-delay", type=float, default=1.0, help="seconds a requested cancel takes")
    add(
        "--state-word",
        action="append",
        default=[],
        metavar="WORD=OTHER",
        help="answer OTHER for a state word, e.g. in_queue=pending (repeatable)",
    )
    add(
        "--alternative-state-words",
        action="store_true",
        help="answer pending, processing and canceled (words RunComfy's clients accept)",
    )
    add(
        "--fault",
        action="append",
        default=[],
        metavar="JSON",
        help='a fault rule, e.g. \'{"action": "status", "status_code": 503, "times": 2}\'',
    )
    add("--access-log", action="store_true", help="log every call (tokens are never logged)")


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """A SimulatorConfig from parsed options; the API key comes from $RUNCOMFY_SIMULATOR_API_KEY."""
    words: dict[str, str] = dict(ALTERNATIVE_STATE_WORDS) if args.alternative_state_words else {}
    for text in args.state_word:
        word, sep, other = text.partition("=")
        if not sep:
            raise ValueError(f"--state-word {text!r}: expected WORD=OTHER")
        words[word.strip()] = other.strip()
    faults: list[FaultRule] = []
    for text in args.fault:
        try:
            faults.extend(parse_rules(msgspec.json.decode(text)))
        except (msgspec.DecodeError, ValueError) as exc:
            raise ValueError(f"--fault {text!r}: {exc}") from exc
    return SimulatorConfig(
        time_scale=args.time_scale,
        queue_delay=args.queue_delay,
        concurrency=args.concurrency,
        failure_rate=args.failure_rate,
        seed=args.seed,
        quirks=Quirks(
            not_ready=args.not_ready,
            failed_status=args.failed_status,
            errors_as_200=args.errors_as_200,
            submit_style=args.submit_style,
            fresh_404_seconds=args.fresh_404,
            unknown_model=args.unknown_model,
            cancel_style=args.cancel_style,
            cancel_delay=args.cancel_delay,
            state_words=words,
        ),
        faults=tuple(faults),
        api_key=os.environ.get(API_KEY_ENV) or None,
        balance_usd=args.balance,
        output_ttl=args.output_ttl,
        files_base_url=args.files_base_url,
        submit_rate=args.submit_rate,
        submit_burst=args.submit_burst,
        submit_retry_after=not args.no_retry_after,
        fetch_inputs=args.fetch_inputs,
        host=args.host,
        port=args.port,
    )


async def serve(
    config: SimulatorConfig,
    *,
    access_log: bool = False,
    ready: Callable[[Simulator], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; `ready` is called once the URL is known."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # e.g. Windows
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    try:
        async with Simulator(config, access_log=access_log) as sim:
            if ready is not None:
                ready(sim)
            await stop.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def _announce(sim: Simulator) -> None:
    """The URL first (one line scripts can read), then how to point the CLI and SDK at it."""
    if sim.config.api_key is None:
        key, which = "any", "Any API key works against it"
    else:  # never printed: the user set it, and knows where
        key = f'"${API_KEY_ENV}"'
        which = f"Only the key in ${API_KEY_ENV} works against it"
    lines = [
        f"runcomfy simulator: {sim.url}",
        f"  {which}. Point the runcomfy CLI and the SDK at it with:",
        "",
        f"    export RUNCOMFY_BASE_URL={sim.url} RUNCOMFY_API_KEY={key}",
        "",
        f"  or in Python: rc.Client({key!r}, base_url={sim.url!r}). Ctrl-C stops it.",
    ]
    if sim.config.api_key is not None:
        lines[-1] = f"  or in Python: rc.Client(key, base_url={sim.url!r}). Ctrl-C stops it."
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None, *, prog: str | None = None) -> int:
    """Parse `argv`, print one line with the URL, serve until interrupted; the exit status."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m runcomfy_async.simulator",
        description="Serve a faithful local simulator of the RunComfy Model API.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.access_log:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        asyncio.run(serve(config, access_log=args.access_log, ready=_announce))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # e.g. the port is taken
        print(
            f"runcomfy simulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 1
    return 0
