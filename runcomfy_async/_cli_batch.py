"""`runcomfy batch`: lazy input files, the cost estimate, the run, its manifest and Ctrl-C."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio

from ._cli_interrupt import catch_ctrl_c
from ._cli_output import (
    EXIT_INTERRUPTED,
    CommandError,
    ProgressDisplay,
    Tally,
    print_summary,
    usd,
    warn,
    writable_folder,
)
from ._client import Client
from ._cost import CostEstimate, estimate_cost
from ._errors import RequestCancelledError, SubmissionUnknownError
from ._inputs import encode_inputs
from ._items import Item
from ._wire import ModelInfo

__all__ = ["InputFile", "run_batch"]

OpenClient = Callable[[argparse.Namespace], AbstractAsyncContextManager[Client]]

JSONL_SUFFIXES = frozenset({".jsonl", ".json", ".ndjson"})


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


@dataclass
class InputFile:
    """One input per line: a prompt (text file) or a JSON object (JSONL), read lazily.

    Blank lines and lines starting with `#` are skipped; bad lines are reported with their
    line number, counted in `skipped`, and left out.
    """

    path: Path
    model_id: str
    prompt_field: str | None  # None: a JSONL file of input objects
    skipped: int = 0

    @classmethod
    def open(cls, path: Path, model_id: str, info: ModelInfo) -> InputFile:
        jsonl = path.suffix.lower() in JSONL_SUFFIXES or _starts_with_object(path)
        return cls(path, model_id, None if jsonl else prompt_field(info))

    def read(self, *, report: bool) -> Iterator[dict[str, Any]]:
        """Each valid input, in file order; bad lines are counted (and reported if asked)."""
        self.skipped = 0
        with self.path.open("rb") as file:
            for number, raw in enumerate(file, 1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
                    if not line or line.startswith("#"):
                        continue
                    yield self._parse(line)
                except ValueError as exc:  # bad UTF-8, bad JSON, InvalidInputError
                    self.skipped += 1
                    if report:
                        reason = str(exc) if not isinstance(exc, UnicodeError) else "not UTF-8"
                        warn(f"{self.path}:{number}: skipped: {reason}")

    def _parse(self, line: str) -> dict[str, Any]:
        if self.prompt_field is not None:
            inputs: Any = {self.prompt_field: line}
        else:
            try:
                inputs = json.loads(line, parse_constant=_no_constants)
            except ValueError as exc:
                raise ValueError(f"not valid JSON ({exc})") from None
            if not isinstance(inputs, dict):
                raise ValueError("not a JSON object of inputs")
        encode_inputs(self.model_id, inputs)  # the typed model's rules, before any call
        checked: dict[str, Any] = inputs
        return checked


def _starts_with_object(path: Path) -> bool:
    """True when the first line with content starts with `{` (a JSONL file)."""
    with path.open("rb") as file:
        for raw in file:
            line = raw.strip().removeprefix(b"\xef\xbb\xbf")
            if line and not line.startswith(b"#"):
                return line.startswith(b"{")
    return False


def prompt_field(info: ModelInfo) -> str:
    """The field a text file's lines fill: the model's one required string input."""
    schema = info.input_schema or {}
    properties: dict[str, Any] = schema.get("properties") or {}
    required = [str(name) for name in schema.get("required") or ()]
    if len(required) > 1:
        raise CommandError(
            f"{info.model_id} requires {', '.join(required)}: a text file gives one field per "
            "line, so use a JSONL file with one input object per line"
        )
    if required:
        name = required[0]
    else:  # nothing required: `prompt`, else the first text field
        texts = [key for key, spec in properties.items() if (spec or {}).get("type") == "string"]
        name = "prompt" if "prompt" in properties or not texts else texts[0]
    if (properties.get(name) or {}).get("type", "string") != "string":
        raise CommandError(f"{info.model_id}: {name!r} is not text, so use a JSONL file of inputs")
    return name


def outcome(item: Item) -> str:
    """The summary's word for an item: succeeded, failed, cancelled or unknown."""
    if item.error is None:
        return "succeeded"
    if isinstance(item.error, SubmissionUnknownError):
        return "unknown"
    if isinstance(item.error, RequestCancelledError):
        return "cancelled"
    return "failed"


def manifest_line(item: Item, out: Path) -> dict[str, Any]:
    """The manifest's record of an item; file paths are relative to the manifest's folder."""
    files = [
        {"path": os.path.relpath(f.path, out), "size": f.size, "sha256": f.sha256}
        for f in item.files
    ]
    _, inputs = item.input
    return {
        "index": item.index,
        "key": str(item.key),
        "input": inputs,
        "request_id": item.request_id,
        "state": outcome(item),
        "error": str(item.error) if item.error is not None else None,
        "cost": item.result.cost if item.result is not None else None,
        "files": files,
        "resumed": item.resumed,
    }


def _prepare(source: Path, out: Path) -> Path:
    """Check the input file exists and the output folder can be written; its absolute path."""
    if not source.is_file():
        raise CommandError(f"no such input file: {source}")
    return writable_folder(out)


def _budget(estimate: CostEstimate, max_cost: float | None) -> None:
    """Print the catalog estimate; refuse (CommandError) above `max_cost` USD."""
    cost, count, unit = estimate.usd, estimate.inputs, estimate.unit or "unit"
    if cost is None:
        warn(f"{count} inputs; estimated cost unavailable (price unit {unit!r})")
    else:
        price = usd(estimate.price_usd or 0.0)
        warn(f"{count} inputs; estimated cost {usd(cost)} ({price} per {unit})")
    if max_cost is None:
        return
    if cost is None:
        raise CommandError(
            "--max-cost cannot be checked without an estimate: nothing was submitted"
        )
    if cost > max_cost:
        raise CommandError(
            f"estimated cost {usd(cost)} is above --max-cost {usd(max_cost)}: nothing was submitted"
        )


async def run_batch(args: argparse.Namespace, argv: Sequence[str], open_client: OpenClient) -> int:
    """Run `runcomfy batch`; the exit status."""
    source_path = Path(args.file)
    out = _prepare(source_path, Path(args.out))
    journal = Path(args.journal) if args.journal else out / "journal.sqlite"
    manifest = out / "manifest.jsonl"
    async with open_client(args) as client:
        info = await client.model_info(args.model_id)
        source = InputFile.open(source_path, args.model_id, info)
        cost = estimate_cost(info, source.read(report=True))  # one pass; keeps nothing
        count = cost.inputs
        if count == 0:
            raise CommandError(f"no inputs in {source_path} ({source.skipped} lines skipped)")
        skipped = source.skipped
        _budget(cost, args.max_cost)

        tally, started = Tally(), time.monotonic()
        batch = client.map(
            ((args.model_id, inputs) for inputs in source.read(report=False)),
            max_in_flight=args.max_in_flight,
            timeout=args.timeout,
            journal=journal,
            resubmit_unknown=args.resubmit_unknown,
            download_to=out,
            preflight=args.preflight,
        )
        display = ProgressDisplay.for_stderr(count, tally)
        ctrl_c = catch_ctrl_c(
            "interrupted: cancelling the queued requests (Ctrl-C again to quit at once)"
        )
        with manifest.open("w", encoding="utf-8") as sink, ctrl_c as interrupts:
            try:
                async with batch:
                    with interrupts.scope:
                        async with anyio.create_task_group() as group:
                            group.start_soon(display.run, batch.progress)
                            async for item in batch:
                                _record(item, tally, sink, out)
                            group.cancel_scope.cancel()
            finally:
                display.finish(batch.progress)
                with anyio.CancelScope(shield=True):  # also when entering it failed
                    await batch.aclose()
        print_summary(tally, skipped, time.monotonic() - started, out, manifest, journal)
        if interrupts.count:
            warn(
                f"interrupted after {tally.done} of {count} inputs: queued requests cancelled, "
                f"{len(batch.unfinished)} running ones go on; the journal keeps their request_ids"
            )
            warn("to resume, run: " + shlex.join(["runcomfy", *argv]))
            return EXIT_INTERRUPTED
    return 0 if tally.succeeded == count and not skipped else 1


def _record(item: Item, tally: Tally, sink: IO[str], out: Path) -> None:
    cost = item.result.cost if item.result is not None else None
    tally.add(outcome(item), resumed=item.resumed, cost=cost)
    if item.result is not None and item.error is not None:
        tally.downloads_failed += 1
    sink.write(json.dumps(manifest_line(item, out), ensure_ascii=False) + "\n")
    sink.flush()
