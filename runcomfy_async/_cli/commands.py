"""The `runcomfy` command line: the client, the single-request commands, and main()."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec

from .._client import Client
from .._config import KEY_ENV_VARS, Secret
from .._errors import InvalidInputError, NotFoundError, RunComfyError, UnknownModelError
from .._inputs import encode_inputs
from .arguments import build_parser
from .batch_status import run_batch_status
from .inputs import input_schema_of, parse_inputs
from .models import describe_model, list_models
from .output import (
    EXIT_INTERRUPTED,
    CommandError,
    destination,
    error,
    exit_code,
    leaf_error,
    print_json,
    result_json,
    warn,
)
from .wait import EXIT_TIMEOUT, again, deliver, submitted, wait_for

__all__ = ["main"]

# ---------------------------------------------------------------- the client


def read_key(args: argparse.Namespace) -> Secret | None:
    """The key from --api-key-file; None leaves it to the Client (environment)."""
    if args.simulate:
        return Secret("simulated")  # too short to scrub: the simulator's words stay
    if args.api_key_file:
        try:
            with open(args.api_key_file, encoding="utf-8") as file:
                key = file.readline().strip()
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise CommandError(
                f"cannot read --api-key-file {args.api_key_file}: {reason}"
            ) from None
        if not key:
            raise CommandError(f"--api-key-file {args.api_key_file} has an empty first line")
        return Secret(key)
    if not any(os.environ.get(name, "").strip() for name in KEY_ENV_VARS):
        raise CommandError("no API key: set RUNCOMFY_API_KEY, or pass --simulate to try it locally")
    return None


@asynccontextmanager
async def open_client(args: argparse.Namespace) -> AsyncIterator[Client]:
    """A Client on RunComfy, on --base-url, or (--simulate) on a simulator in this loop."""
    key = args.api_key.reveal() if args.api_key is not None else None
    if not args.simulate:
        async with Client(key, base_url=args.base_url, uploads=args.uploads) as client:
            yield client
        return
    from ..simulator import Simulator, SimulatorConfig

    async with (
        # A seed of its own: request_ids never repeat across runs (journals, file names).
        Simulator(SimulatorConfig(time_scale=0.05, seed=secrets.randbits(63))) as sim,
        Client(key, base_url=sim.url, uploads=args.uploads) as client,
    ):
        yield client


# ---------------------------------------------------------------- commands


async def read_inputs(args: argparse.Namespace, client: Client) -> dict[str, Any]:
    """The inputs of `-i` and `--input-json`, typed by the model's catalog schema (an unknown
    model id is refused here, with the closest ids), and checked before any submit."""
    catalog = None
    try:
        catalog = (await client.model_info(args.model_id)).input_schema
    except (UnknownModelError, InvalidInputError):
        raise
    except RunComfyError:  # an outage: the submit's own check logs it and goes on
        pass
    schema = input_schema_of(args.model_id, catalog)
    inputs = parse_inputs(args.input, args.input_json, schema)
    encode_inputs(args.model_id, inputs)
    return inputs


async def cmd_run(args: argparse.Namespace) -> int:
    """Submit, print the request_id (stderr) at once, wait, print and save the outputs."""
    out = destination(args.out) if args.out else None  # refused before paying
    started = time.monotonic()
    async with open_client(args) as client:
        inputs = await read_inputs(args, client)
        request = await client.submit(args.model_id, inputs)
        timeout = args.timeout
        if timeout is not None:  # --timeout covers the submit and the wait
            timeout = max(timeout - (time.monotonic() - started), 1e-3)
        rid = request.request_id
        result = await wait_for(args, client, rid, timeout=timeout, out=out, announce=True)
        return await deliver(args, client, result, out)


async def cmd_wait(args: argparse.Namespace) -> int:
    """Wait for an earlier request; print and save its outputs as `run` does."""
    out = destination(args.out) if args.out else None
    async with open_client(args) as client:
        result = await wait_for(args, client, args.request_id, timeout=args.timeout, out=out)
        return await deliver(args, client, result, out)


def answer(args: argparse.Namespace, data: Any, text: str) -> int:
    """Print `data` as JSON (--json) or `text`; exit status 0."""
    if args.json:
        print_json(data)
    else:
        print(text)
    return 0


async def cmd_submit(args: argparse.Namespace) -> int:
    async with open_client(args) as client:
        inputs = await read_inputs(args, client)
        request = await client.submit(args.model_id, inputs)
        submitted(request.request_id)
    data = {"request_id": request.request_id, "model_id": args.model_id}
    return answer(args, data, request.request_id)


async def cmd_status(args: argparse.Namespace) -> int:
    async with open_client(args) as client:
        status = await client.status(args.request_id)
    where = f" (queue position {status.queue_position})" if status.queue_position else ""
    return answer(args, msgspec.to_builtins(status), f"{status.state.value}{where}")


async def cmd_result(args: argparse.Namespace) -> int:
    """Output URLs on success (saved with --out), else the state; a failed or cancelled request
    exits 1, and one not finished yet has nothing to save (--out): exit 6."""
    out = destination(args.out) if args.out else None
    async with open_client(args) as client:
        result = await client.result(args.request_id)
        if result.succeeded:
            return await deliver(args, client, result, out)
    answer(args, result_json(result), result.state.value)
    if result.state.is_terminal:
        detail = f": {result.error}" if result.error is not None else ""
        error(f"request {result.request_id} ended {result.state.value}{detail}")
        return 1
    if out is not None:
        raise CommandError(
            f"request {result.request_id} is {result.state.value}: nothing to save yet",
            EXIT_TIMEOUT,
            hint=f"to wait for it and save, run: {again(args, 'wait', result.request_id, out)}",
        )
    return 0


async def cmd_cancel(args: argparse.Namespace) -> int:
    async with open_client(args) as client:
        outcome = await client.cancel(args.request_id)
    return answer(args, msgspec.to_builtins(outcome), outcome.outcome)


async def cmd_models(args: argparse.Namespace) -> int:
    if args.models_command == "list":
        return await list_models(args, open_client)
    async with open_client(args) as client:
        info = await client.model_info(args.model_id)
    if args.models_command == "info":
        return answer(args, msgspec.to_builtins(info), describe_model(info))
    from .codegen import generate_model_module, write_model_module

    try:
        source = generate_model_module(info, class_name=args.class_name, in_package=False)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.out is None:
        sys.stdout.write(source)
        return 0
    try:
        write_model_module(source, Path(args.out), overwrite=args.force)
    except FileExistsError:
        raise CommandError(f"{args.out} exists: pass --force to replace it") from None
    print(f"wrote {args.out}")
    return 0


async def cmd_batch(args: argparse.Namespace) -> int:
    from .batch import run_batch

    return await run_batch(args, args.argv, open_client)


COMMANDS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "run": cmd_run,
    "submit": cmd_submit,
    "status": cmd_status,
    "result": cmd_result,
    "wait": cmd_wait,
    "cancel": cmd_cancel,
    "batch": cmd_batch,
    "batch-status": run_batch_status,
    "models": cmd_models,
}

#: Commands that name an earlier request (nothing to find under --simulate).
LOOKUPS = frozenset({"status", "result", "wait", "cancel"})


def _quiet_sdk_logs() -> None:
    """The command line reports outcomes itself (counts, one-line pointers to the manifest):
    the SDK's warnings would repeat them as a dump of ids, so only its errors are shown."""
    sdk = logging.getLogger("runcomfy_async")
    if not any(isinstance(handler, _ErrorsToStderr) for handler in sdk.handlers):
        sdk.addHandler(_ErrorsToStderr(logging.ERROR))


class _ErrorsToStderr(logging.Handler):
    """One line per SDK error on whatever sys.stderr is at the time (it may be replaced)."""

    def emit(self, record: logging.LogRecord) -> None:
        warn(record.getMessage())


def scrub(text: str, key: Secret | None) -> str:
    """`text` without any key this command could be using, in any form (Secret.scrub): the
    one from --api-key-file and those in the environment."""
    for name in KEY_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            text = Secret(value).scrub(text)
    return key.scrub(text) if key is not None else text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `runcomfy` command; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["simulator"]:
        from ..simulator import main as simulator_main

        try:
            return simulator_main(arguments[1:], prog="runcomfy simulator")
        except SystemExit as exc:  # its --help, or a usage error it reported
            return exc.code if isinstance(exc.code, int) else 2
    try:
        args = build_parser().parse_args(arguments)
    except SystemExit as exc:  # --help, --version, or a usage error argparse reported
        return exc.code if isinstance(exc.code, int) else 2
    args.argv = arguments
    _quiet_sdk_logs()
    try:
        if args.simulate and args.base_url:
            raise CommandError("--simulate and --base-url exclude each other")
        args.api_key = None if args.command == "batch-status" else read_key(args)  # a Secret
        return asyncio.run(COMMANDS[args.command](args))
    except KeyboardInterrupt:  # before a command's own Ctrl-C handling (e.g. mid-submit)
        if args.command in ("run", "submit") and not args.simulate:
            warn(
                "interrupted before RunComfy answered: if the submit had left, a request may "
                "exist (and be billed); check your RunComfy dashboard"
            )
        else:
            warn("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # one line on stderr, never a traceback
        leaf = leaf_error(exc)
        if not isinstance(leaf, CommandError | RunComfyError | OSError | ValueError):
            raise  # a bug: its traceback is what a report needs
        message = str(leaf)
        if isinstance(leaf, OSError) and not isinstance(leaf, RunComfyError):  # not our timeouts
            message = f"cannot use {leaf.filename or 'a file'}: {leaf.strerror or leaf}"
        message = scrub(message, getattr(args, "api_key", None))  # defence in depth
        if args.simulate and isinstance(leaf, NotFoundError) and args.command in LOOKUPS:
            message += " (--simulate starts an empty simulator: there is nothing to look up)"
        error(message or type(leaf).__name__)
        if isinstance(leaf, CommandError) and leaf.hint:
            warn(leaf.hint)
        return exit_code(leaf)


if __name__ == "__main__":
    raise SystemExit(main())
