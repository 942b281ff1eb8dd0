"""`runcomfy batch`: lazy input files, the cost estimate, the run, its manifest and Ctrl-C."""

from __future__ import annotations

import argparse
import json
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .._client import Client
from .._cost import CostEstimate, estimate_cost
from .._download import sanitize
from .._files import from_json
from .._inputs import encode_inputs
from .._items import Numbered
from .._journal import Entry, JournalRow, Keys, read_journal, will_submit
from .._journals import is_postgres, open_journal
from .._store import is_store_url, open_store
from .._wire import ModelInfo
from .gallery import write_gallery
from .interrupt import catch_ctrl_c
from .manifest import skipped_row, word, write_manifest
from .output import EXIT_INTERRUPTED, CommandError, usd, warn, writable_folder
from .progress import ProgressDisplay, Tally, print_summary

__all__ = ["InputFile", "run_batch"]

OpenClient = Callable[[argparse.Namespace], AbstractAsyncContextManager[Client]]

JSONL_SUFFIXES = frozenset({".jsonl", ".json", ".ndjson"})


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


@dataclass(frozen=True, slots=True)
class InputLine:
    """One input line of a file: `index` counts input lines (invalid ones too, not comments
    or blank lines), `line` is its line number in the file (every line counted, from 1).
    `inputs` is None for a line that is skipped, and `reason` says why."""

    index: int
    line: int
    inputs: dict[str, Any] | None
    reason: str | None = None


@dataclass
class InputFile:
    """One input per line: a prompt (text file) or a JSON object (JSONL), read lazily.

    Blank lines and lines starting with `#` are no inputs; bad lines are reported with their
    line number, counted in `skipped`, and not sent.
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
        for entry in self.lines(report=report):
            if entry.inputs is not None:
                yield entry.inputs

    def lines(self, *, report: bool) -> Iterator[InputLine]:
        """Every input line, valid or not, in file order (bad ones reported if asked)."""
        self.skipped = 0
        index = 0
        with self.path.open("rb") as file:
            for number, raw in enumerate(file, 1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
                    if not line or line.startswith("#"):
                        continue
                    entry = InputLine(index, number, self._parse(line))
                except ValueError as exc:  # bad UTF-8, bad JSON, InvalidInputError
                    self.skipped += 1
                    reason = str(exc) if not isinstance(exc, UnicodeError) else "not UTF-8"
                    if report:
                        warn(f"{self.path}:{number}: skipped: {reason}")
                    entry = InputLine(index, number, None, reason)
                index += 1
                yield entry

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
            inputs = from_json(inputs, self.path.parent)  # {"$file": "beach.png"}
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


def state_folder(url: str) -> Path:
    """Where a batch writing to object store `url` keeps its journal, manifest and gallery
    by default: runcomfy-state/<bucket>/<prefix> under the current folder, so the same
    command run again from the same place resumes."""
    bucket, _, prefix = url.split("://", 1)[1].partition("/")
    parts = [sanitize(part) for part in (bucket, *prefix.split("/")) if sanitize(part)]
    return Path("runcomfy-state", *parts)


def _prepare(source: Path, out: Path) -> Path:
    """Check the input file exists and the output folder can be written; its absolute path."""
    if not source.is_file():
        raise CommandError(f"no such input file: {source}")
    return writable_folder(out)


@dataclass
class Plan:
    """What a run of the input file will do, from one pass over it and the journal."""

    keys: list[str] = field(default_factory=list)  # this run's inputs' journal keys, in order
    skipped: list[dict[str, Any]] = field(default_factory=list)  # manifest rows
    submitting: int = 0


def _plan(
    source: InputFile, info: ModelInfo, rows: list[JournalRow], args: argparse.Namespace
) -> tuple[Plan, CostEstimate]:
    """The keys of the inputs, and the estimate of what THIS run submits (journal rules)."""
    states = {row.key: row.state for row in rows}
    plan, keys = Plan(), Keys()

    def submitted() -> Iterator[dict[str, Any]]:
        for entry in source.lines(report=True):
            if entry.inputs is None:
                plan.skipped.append(
                    skipped_row(args.model_id, entry.index, entry.line, entry.reason or "")
                )
                continue
            key = keys.key(*encode_inputs(args.model_id, entry.inputs))
            plan.keys.append(key)
            state = states.get(key)
            if will_submit(
                state, retry_failed=args.retry_failed, resubmit_unknown=args.resubmit_unknown
            ):
                yield entry.inputs

    estimate = estimate_cost(info, submitted())  # one pass; keeps only the keys
    plan.submitting = estimate.inputs
    return plan, estimate


def _budget(
    plan: Plan, estimate: CostEstimate, spent: float | None, max_cost: float | None
) -> None:
    """Print what this run will submit and cost; refuse (CommandError) above `max_cost` USD."""
    count, unit = len(plan.keys), estimate.unit or "unit"
    cost = 0.0 if plan.submitting == 0 else estimate.usd  # nothing to send costs nothing
    head = f"{count} inputs, {plan.submitting} to submit"
    held = f"; the journal holds {usd(spent)} already spent" if spent else ""
    if cost is None:
        warn(f"{head}; estimated cost unavailable (price unit {unit!r}){held}")
    else:
        price = usd(estimate.price_usd or 0.0)
        warn(f"{head}; estimated cost {usd(cost)} ({price} per {unit}){held}")
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


async def _forget_lost_simulator(journal: Path, rows: list[JournalRow]) -> list[JournalRow]:
    """--simulate: the in-process simulator of an earlier run died with it, so its requests
    can be neither found nor paid for: mark them not sent, to be submitted again."""
    lost = {row.key for row in rows if row.state in (Entry.TRACKED, Entry.SENDING, Entry.UNKNOWN)}
    if not lost:
        return rows
    why = "the simulator of an earlier --simulate run is gone: submitted again"
    held = await open_journal(journal)
    try:
        for key in lost:
            await held.rejected(key, why)
    finally:
        await held.close()
    warn(
        f"--simulate: {len(lost)} requests of an earlier run were in its simulator, which is "
        "gone; they are submitted again (a simulation costs nothing)"
    )
    return read_journal(journal)


async def read_rows(journal: Path | str, batch: str | None) -> list[JournalRow]:
    """What a journal holds: a SQLite file, or batch `batch` of a postgresql:// journal."""
    if isinstance(journal, str):
        from .._pgjournal import read_pg_journal

        return await read_pg_journal(journal, batch)
    return read_journal(journal)


def journal_spec(args: argparse.Namespace, out: Path) -> Path | str:
    """--journal as the batch takes it: a postgresql:// URL (with --batch NAME), or a file."""
    if args.journal and is_postgres(args.journal):
        if not args.batch:
            raise CommandError("a postgresql:// --journal needs --batch NAME (the shared batch)")
        if args.simulate:
            raise CommandError(
                "--simulate runs a simulator inside this process: a shared postgresql:// "
                "batch needs one service for all its workers (--base-url)"
            )
        return str(args.journal)
    if args.batch:
        raise CommandError("--batch NAME names a batch of a postgresql:// --journal")
    return Path(args.journal) if args.journal else out / "journal.sqlite"


async def run_batch(args: argparse.Namespace, argv: Sequence[str], open_client: OpenClient) -> int:
    """Run `runcomfy batch`; the exit status."""
    source_path = Path(args.file)
    download_to: str | Path
    if is_store_url(args.out):  # outputs to a bucket; the batch's own state stays here
        open_store(args.out)  # a bad URL or a missing [storage] extra: refused now
        out = _prepare(source_path, Path(args.state) if args.state else state_folder(args.out))
        download_to = args.out
        warn(f"outputs go to {args.out}; journal, manifest and gallery to {out}")
    else:
        out = download_to = _prepare(source_path, Path(args.out))
    journal = journal_spec(args, out)
    shown: Path | str = journal
    if isinstance(journal, str):
        from .._pgjournal import redact

        shown = f"{redact(journal)} (batch {args.batch})"
    manifest = out / "manifest.jsonl"
    # an unusable journal is refused before anything else
    rows = await read_rows(journal, args.batch)
    if args.simulate and isinstance(journal, Path):
        rows = await _forget_lost_simulator(journal, rows)
    done_before = {row.key for row in rows if row.state.finished}
    spent = sum(row.spent for row in rows)
    async with open_client(args) as client:
        info = await client.model_info(args.model_id)
        source = InputFile.open(source_path, args.model_id, info)
        plan, estimate = _plan(source, info, rows, args)
        count = len(plan.keys)
        if count == 0:
            raise CommandError(f"no inputs in {source_path} ({source.skipped} lines skipped)")
        _budget(plan, estimate, spent, args.max_cost)

        tally, started = Tally(), time.monotonic()
        # map() takes rc.Numbered (its annotation does not say so yet: hence Any)
        numbered: Iterator[Any] = (
            Numbered((args.model_id, entry.inputs), entry.index, entry.line)
            for entry in source.lines(report=False)
            if entry.inputs is not None
        )
        batch = client.map(
            numbered,
            max_in_flight=args.max_in_flight,
            timeout=args.timeout,
            journal=journal,
            batch=args.batch,
            resubmit_unknown=args.resubmit_unknown,
            retry_failed=args.retry_failed,
            download_to=download_to,
            preflight=args.preflight,
            **({"name_template": args.name_template} if args.name_template else {}),
        )
        await batch.open()  # a journal another run holds is refused before any progress
        display = ProgressDisplay.for_stderr(count, tally)
        ctrl_c = catch_ctrl_c(
            "interrupted: cancelling the queued requests (Ctrl-C again to quit at once)"
        )
        with ctrl_c as interrupts:
            try:
                async with batch:
                    with interrupts.scope:
                        async with anyio.create_task_group() as group:
                            group.start_soon(display.run, batch.progress)
                            async for item in batch:
                                tally.record(item)
                            group.cancel_scope.cancel()
            finally:
                display.finish(batch.progress)
                with anyio.CancelScope(shield=True):  # also when entering it failed
                    await batch.aclose()
                final = await read_rows(journal, args.batch)
                write_manifest(manifest, final, plan.skipped, resumed=done_before)
                gallery = write_gallery(
                    out, manifest, model_id=args.model_id, wall=time.monotonic() - started
                )
        finished_early = tally.done
        tally.settle(plan.keys, {row.key: word(row) for row in final})
        print_summary(tally, len(plan.skipped), time.monotonic() - started, out, manifest, shown)
        print(f"  gallery: {gallery}", flush=True)
        if interrupts.count:
            warn(
                f"interrupted after {finished_early} of {count} inputs: {tally.cancelled} queued "
                f"requests cancelled, {tally.running} running ones go on (billed): their "
                f'request_ids are in {manifest} (state "running")'
            )
            warn("to resume, run: " + shlex.join(["runcomfy", *argv]))
            return EXIT_INTERRUPTED
    return 0 if tally.succeeded == count and not plan.skipped else 1
